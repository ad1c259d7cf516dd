package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/boot"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

func (s *Server) listClusters(w http.ResponseWriter, r *http.Request) error {
	cs, err := s.store.ListClusters(r.Context())
	if err != nil {
		return fmt.Errorf("listing clusters: %w", err)
	}
	ms, err := s.store.ListMachines(r.Context())
	if err != nil {
		return fmt.Errorf("listing machines: %w", err)
	}
	machines := make(map[string]*model.Machine, len(ms))
	for _, m := range ms {
		machines[m.Name] = m
	}
	slices.SortFunc(cs, func(a, b *model.Cluster) int { return strings.Compare(a.Name, b.Name) })
	out := api.ClusterList{Items: make([]api.Cluster, 0, len(cs))}
	for _, c := range cs {
		out.Items = append(out.Items, clusterToAPI(c, machines))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// clusterView reads a cluster and its members' machines.
func (s *Server) clusterView(ctx context.Context, name string) (*model.Cluster, api.Cluster, error) {
	c, err := s.store.GetCluster(ctx, name)
	if err != nil {
		return nil, api.Cluster{}, storeError(err, "cluster", name)
	}
	machines := map[string]*model.Machine{}
	for _, mem := range c.Members {
		m, err := s.store.GetMachine(ctx, mem.Machine)
		switch {
		case err == nil:
			machines[m.Name] = m
		case !errors.Is(err, store.ErrNotFound):
			return nil, api.Cluster{}, fmt.Errorf("reading member %q of cluster %q: %w", mem.Machine, name, err)
		}
	}
	return c, clusterToAPI(c, machines), nil
}

// getCluster long-polls like getMachine. A cluster's view is computed from
// its members, whose changes do not bump the cluster's revision, so the wait
// also ends when the computed view changes.
func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	wait, after, err := parseLongPoll(r)
	if err != nil {
		return err
	}
	var (
		c       *model.Cluster
		view    api.Cluster
		initial []byte
	)
	poll := func() (bool, error) {
		var err error
		if c, view, err = s.clusterView(r.Context(), name); err != nil {
			return false, err
		}
		fp, _ := json.Marshal(struct {
			M []api.ClusterMemberStatus
			P string
			E map[string][]string
		}{view.Members, string(view.Phase) + "\x00" + view.Message, view.Endpoints})
		if initial == nil {
			initial = fp
		}
		return c.Revision > after || string(fp) != string(initial), nil
	}
	relevant := func(ch store.Change) bool {
		if ch.Kind == store.KindCluster {
			return ch.Name == name
		}
		return ch.Kind == store.KindMachine && c != nil &&
			slices.ContainsFunc(c.Members, func(m model.ClusterMember) bool { return m.Machine == ch.Name })
	}
	if done, err := s.longPoll(r.Context(), wait, 0, relevant, poll); err != nil || !done {
		return err
	}
	writeJSON(w, http.StatusOK, view)
	return nil
}

func (s *Server) createCluster(w http.ResponseWriter, r *http.Request) error {
	var req api.ClusterRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	s.specMu.Lock()
	defer s.specMu.Unlock()
	machines, err := s.validateCluster(r.Context(), &req)
	if err != nil {
		return err
	}
	c := &model.Cluster{Name: req.Name}
	applyClusterSpec(c, &req)
	if err := s.dryRunMembers(r.Context(), c, machines); err != nil {
		return err
	}
	resetClusterStatus(c)
	created, err := s.store.CreateCluster(r.Context(), c)
	if err != nil {
		return storeError(err, "cluster", req.Name)
	}
	if err := s.syncMembers(r.Context(), created.Name, created.Members, nil, machines); err != nil {
		// Leave nothing half-made: release the machines and drop the cluster.
		s.releaseMembers(r.Context(), created.Name, created.Members)
		if derr := s.store.DeleteCluster(r.Context(), created.Name, nil); derr != nil {
			s.log.Error("removing cluster after a failed create", "cluster", created.Name, "err", derr)
		}
		return err
	}
	_, view, err := s.clusterView(r.Context(), created.Name)
	if err != nil {
		return err
	}
	w.Header().Set("Location", api.PathClusters+"/"+created.Name)
	writeJSON(w, http.StatusCreated, view)
	return nil
}

// dryRunMembers renders each member of proposed cluster c as a run would,
// with its role's profile and the cluster's params.
func (s *Server) dryRunMembers(ctx context.Context, c *model.Cluster, machines map[string]*model.Machine) error {
	ms := make([]*model.Machine, 0, len(c.Members))
	for _, mem := range c.Members {
		m := *machines[mem.Machine]
		m.Cluster, m.Role = c.Name, mem.Role
		ms = append(ms, &m)
	}
	return s.dryRun(ctx, "params", ms, boot.Proposed{Cluster: c})
}

func (s *Server) updateCluster(w http.ResponseWriter, r *http.Request) error {
	var req api.ClusterRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	name, err := nameFor(req.Name, r.PathValue("name"))
	if err != nil {
		return err
	}
	req.Name = name
	s.specMu.Lock()
	defer s.specMu.Unlock()
	existing, err := s.store.GetCluster(r.Context(), name)
	if err != nil {
		return storeError(err, "cluster", name)
	}
	machines, err := s.validateCluster(r.Context(), &req)
	if err != nil {
		return err
	}
	// The stored secret params stand unless the request replaces them.
	proposed := &model.Cluster{Name: name, SecretParams: existing.SecretParams, SecretsRevision: existing.SecretsRevision}
	applyClusterSpec(proposed, &req)
	if err := s.dryRunMembers(r.Context(), proposed, machines); err != nil {
		return err
	}
	var old []model.ClusterMember
	updated, err := s.store.UpdateCluster(r.Context(), name, func(c *model.Cluster) (bool, error) {
		if req.Version != 0 && req.Version != c.Version {
			return false, staleVersion("cluster", name, req.Version, c.Version)
		}
		old = slices.Clone(c.Members)
		applyClusterSpec(c, &req)
		resetClusterStatus(c)
		return true, nil
	})
	if err != nil {
		return storeError(err, "cluster", name)
	}
	if err := s.syncMembers(r.Context(), name, updated.Members, old, machines); err != nil {
		return err
	}
	_, view, err := s.clusterView(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, view)
	return nil
}

func (s *Server) deleteCluster(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	s.specMu.Lock()
	defer s.specMu.Unlock()
	c, err := s.store.GetCluster(r.Context(), name)
	if err != nil {
		return storeError(err, "cluster", name)
	}
	if err := s.store.DeleteCluster(r.Context(), name, nil); err != nil {
		return storeError(err, "cluster", name)
	}
	s.releaseMembers(r.Context(), name, c.Members)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// syncMembers sets Cluster/Role on the members (a status write: the
// machines' spec versions stay) and clears them on machines of old that are
// no longer members. A failed member's spec version is bumped: writing the
// cluster asks for its desired state again, and the member retries. validated holds the members as validateCluster read
// them: a stale claim it accepted may be overwritten, any other claim not.
func (s *Server) syncMembers(ctx context.Context, cluster string, members, old []model.ClusterMember, validated map[string]*model.Machine) error {
	keep := map[string]bool{}
	for _, mem := range members {
		keep[mem.Machine] = true
		updated, err := s.store.UpdateMachine(ctx, mem.Machine, func(m *model.Machine) (bool, error) {
			seen := ""
			if v := validated[m.Name]; v != nil {
				seen = v.Cluster
			}
			if m.Cluster != "" && m.Cluster != cluster && m.Cluster != seen {
				return false, conflict("members", "machine %q is already a member of cluster %q", m.Name, m.Cluster)
			}
			retry := m.Status.Phase == model.PhaseFailed && m.DeletionRequested.IsZero()
			if m.Cluster == cluster && m.Role == mem.Role && !retry {
				return false, errUnchanged
			}
			m.Cluster, m.Role = cluster, mem.Role
			return retry, nil
		})
		if err != nil && !errors.Is(err, errUnchanged) {
			return storeError(err, "machine", mem.Machine)
		}
		if err == nil && updated.Status.Phase == model.PhaseFailed {
			s.specEvent(ctx, updated, "cluster "+cluster+" written while the member had failed; retrying")
		}
	}
	var gone []model.ClusterMember
	for _, mem := range old {
		if !keep[mem.Machine] {
			gone = append(gone, mem)
		}
	}
	s.releaseMembers(ctx, cluster, gone)
	return nil
}

// releaseMembers clears Cluster/Role on machines that still point at
// cluster. A failure is logged, not returned: the cluster write it follows
// has happened. A machine left pointing at a cluster that no longer lists it
// is treated as free by memberOf, so the leftover blocks nothing.
func (s *Server) releaseMembers(ctx context.Context, cluster string, members []model.ClusterMember) {
	for _, mem := range members {
		_, err := s.store.UpdateMachine(ctx, mem.Machine, func(m *model.Machine) (bool, error) {
			if m.Cluster != cluster {
				return false, errUnchanged
			}
			m.Cluster, m.Role = "", ""
			return false, nil
		})
		if err != nil && !errors.Is(err, errUnchanged) && !errors.Is(err, store.ErrNotFound) {
			s.log.Error("clearing cluster membership", "cluster", cluster, "machine", mem.Machine, "err", err)
		}
	}
}

// memberOf returns the cluster m belongs to: m.Cluster, if that cluster
// exists and lists m; "" otherwise (a leftover claim).
func (s *Server) memberOf(ctx context.Context, m *model.Machine) (string, error) {
	if m.Cluster == "" {
		return "", nil
	}
	c, err := s.store.GetCluster(ctx, m.Cluster)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading cluster %q of machine %q: %w", m.Cluster, m.Name, err)
	}
	if slices.ContainsFunc(c.Members, func(mem model.ClusterMember) bool { return mem.Machine == m.Name }) {
		return c.Name, nil
	}
	return "", nil
}
