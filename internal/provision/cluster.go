package provision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/boot"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// profileCache keeps the profiles read during one decision consistent and
// read once.
type profileCache map[string]*model.BootProfile

func (pc profileCache) get(ctx context.Context, st store.Store, name string) (*model.BootProfile, error) {
	if p, ok := pc[name]; ok {
		if p == nil {
			return nil, store.ErrNotFound
		}
		return p, nil
	}
	p, err := st.GetProfile(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		pc[name] = nil
	}
	if err != nil {
		return nil, err
	}
	pc[name] = p
	return p, nil
}

// clusterOfMachine returns the machine's cluster, or nil when it has none
// (or the cluster is gone: the machine then stands alone).
func (r *Reconciler) clusterOfMachine(ctx context.Context, m *model.Machine) (*model.Cluster, error) {
	if m.Cluster == "" {
		return nil, nil
	}
	c, err := r.st.GetCluster(ctx, m.Cluster)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return c, err
}

// roleOf is the machine's role in c: the cluster's member list wins over
// the machine's own record (which the API keeps in step).
func roleOf(c *model.Cluster, m *model.Machine) string {
	for _, mem := range c.Members {
		if mem.Machine == m.Name {
			return mem.Role
		}
	}
	return m.Role
}

// targetFor computes what m should be installed with: its cluster role's
// profile (else its own), that profile's version and the params hash.
func (r *Reconciler) targetFor(ctx context.Context, m *model.Machine, c *model.Cluster, pc profileCache) (target, error) {
	name := m.BootProfile
	var clusterParams map[string]string
	if c != nil {
		role := roleOf(c, m)
		for _, cr := range c.Roles {
			if cr.Name == role && cr.BootProfile != "" {
				name = cr.BootProfile
			}
		}
		clusterParams = c.Params
	}
	if name == "" {
		return target{Problem: "no boot profile: set boot_profile on the machine or on its cluster role"}, nil
	}
	p, err := pc.get(ctx, r.st, name)
	if errors.Is(err, store.ErrNotFound) {
		return target{Profile: name, Problem: fmt.Sprintf("boot profile %q does not exist", name)}, nil
	}
	if err != nil {
		return target{}, err
	}
	t := target{Profile: p.Name, Version: p.Version, ParamsHash: paramsHash(p.Params, clusterParams, m.Params)}
	if len(p.Snippets) > 0 {
		site, err := siteSnippets(ctx, r.st)
		if err != nil {
			return target{}, err
		}
		if t.Snippets = boot.SnippetVersions(p, site); len(t.Snippets) > 0 {
			t.ParamsHash = foldHash(t.ParamsHash, t.Snippets)
		}
	}
	site, err := r.st.GetSite(ctx)
	if err != nil {
		return target{}, err
	}
	if in := model.SiteAndSecrets(site, p, c, m); in != nil {
		t.ParamsHash = foldHash(t.ParamsHash, in)
	}
	return t, nil
}

func siteSnippets(ctx context.Context, st store.Store) (map[string]*model.Template, error) {
	ts, err := st.ListTemplates(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*model.Template, len(ts))
	for _, t := range ts {
		out[t.Name] = t
	}
	return out, nil
}

// foldHash folds more of what a machine renders into its params hash:
// the site snippets' versions, the site params it sees, its secret params'
// revisions. Changing one re-provisions the machines whose installs used
// it, as a params change does. Callers fold only what exists, so a
// machine without any of it keeps the params hash alone, as before these
// existed.
func foldHash(params string, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings and numbers always marshal
	}
	sum := sha256.Sum256(append([]byte(params+"\x00"), b...))
	return hex.EncodeToString(sum[:])
}

// paramsHash fingerprints the params that feed rendering. The layers are
// hashed separately rather than merged, so the hash does not depend on the
// boot edge's precedence rules: any change in any layer counts.
func paramsHash(profile, cluster, machine map[string]string) string {
	norm := func(p map[string]string) map[string]string {
		if p == nil {
			return map[string]string{}
		}
		return p
	}
	// json.Marshal sorts map keys, so equal params give equal bytes.
	b, err := json.Marshal([]map[string]string{norm(profile), norm(cluster), norm(machine)})
	if err != nil {
		panic(err) // a map of strings always marshals
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// gateFor decides whether cluster member m may start a run now.
func (r *Reconciler) gateFor(ctx context.Context, m *model.Machine, c *model.Cluster, pc profileCache) (gate, error) {
	idx := map[string]int{}
	for i, cr := range c.Roles {
		idx[cr.Name] = i
	}
	role := roleOf(c, m)
	k, ok := idx[role]
	if !ok {
		return gate{Reason: fmt.Sprintf("member %s has role %q, which cluster %s does not define", m.Name, role, c.Name)}, nil
	}
	reprovision := m.Status.Phase == model.PhaseProvisioned
	maxOut := c.Rollout.MaxUnavailable
	if maxOut <= 0 {
		maxOut = 1
	}
	out := 0
	for _, mem := range c.Members {
		if mem.Machine == m.Name {
			continue
		}
		ri, known := idx[mem.Role]
		peer, err := r.st.GetMachine(ctx, mem.Machine)
		if errors.Is(err, store.ErrNotFound) {
			if known && ri < k {
				return gate{Reason: fmt.Sprintf("waiting for role %s: member %s is not registered", mem.Role, mem.Machine)}, nil
			}
			continue
		}
		if err != nil {
			return gate{}, err
		}
		if known && ri < k {
			ready, err := r.memberReady(ctx, peer, c, pc)
			if err != nil {
				return gate{}, err
			}
			if !ready {
				return gate{Reason: fmt.Sprintf("waiting for role %s: member %s is %s", mem.Role, mem.Machine, phaseString(peer))}, nil
			}
		}
		if reprovision {
			if peer.Status.Phase == model.PhaseFailed {
				return gate{Reason: fmt.Sprintf("rollout paused: member %s failed", mem.Machine)}, nil
			}
			if mem.Role == role && peer.Status.Phase != model.PhaseProvisioned {
				out++
			}
		}
	}
	if reprovision && out >= maxOut {
		return gate{Reason: fmt.Sprintf("rollout of role %s: %d member(s) out, max_unavailable %d", role, out, maxOut)}, nil
	}
	return gate{Open: true}, nil
}

// memberReady: provisioned with its current target.
func (r *Reconciler) memberReady(ctx context.Context, m *model.Machine, c *model.Cluster, pc profileCache) (bool, error) {
	if m.Status.Phase != model.PhaseProvisioned {
		return false, nil
	}
	t, err := r.targetFor(ctx, m, c, pc)
	if err != nil {
		return false, err
	}
	return t.same(m.Status.ProvisionedProfile, m.Status.ProvisionedProfileVersion, m.Status.ProvisionedParamsHash), nil
}

func phaseString(m *model.Machine) string {
	s := string(m.Status.Phase)
	if s == "" {
		s = string(model.PhaseRegistering)
	}
	if m.Status.Step != "" {
		s += "/" + string(m.Status.Step)
	}
	return s
}

// reconcileCluster refreshes the cluster's status from its members and
// wakes the members, whose gates depend on each other.
func (r *Reconciler) reconcileCluster(ctx context.Context, name string) {
	c, err := r.st.GetCluster(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		// The lock only orders members of a cluster that exists; a cluster
		// created again under the name starts with a new one, so the map
		// does not grow with every cluster ever seen.
		r.mu.Lock()
		delete(r.clusterLocks, name)
		r.mu.Unlock()
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("reading cluster failed", "cluster", name, "err", err)
			r.q.addAfter(clusterKeyPrefix+name, r.cfg.RetryBase)
		}
		return
	}
	st, waiting, err := r.clusterStatus(ctx, c)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("computing cluster status failed", "cluster", name, "err", err)
			r.q.addAfter(clusterKeyPrefix+name, r.cfg.RetryBase)
		}
		return
	}
	if st != c.Status {
		_, err := r.st.UpdateCluster(ctx, name, func(x *model.Cluster) (bool, error) {
			x.Status = st
			return false, nil
		})
		if err != nil && !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
			r.log.Error("writing cluster status failed", "cluster", name, "err", err)
		}
	}
	r.mu.Lock()
	for _, mem := range c.Members {
		r.stateOf(mem.Machine).cluster = name
	}
	r.mu.Unlock()
	// Members that are not done may be waiting on a gate this change
	// opened; the others have nothing to start.
	for _, name := range waiting {
		r.q.add(name)
	}
}

// clusterStatus computes the cluster's status and lists the members not
// (yet) provisioned with their current target.
func (r *Reconciler) clusterStatus(ctx context.Context, c *model.Cluster) (model.ClusterStatus, []string, error) {
	pc := profileCache{}
	type roleCount struct{ ready, total int }
	counts := map[string]*roleCount{}
	for _, cr := range c.Roles {
		counts[cr.Name] = &roleCount{}
	}
	var failed, waiting []string
	total, ready := 0, 0
	for _, mem := range c.Members {
		rc := counts[mem.Role]
		if rc == nil {
			rc = &roleCount{}
			counts[mem.Role] = rc
		}
		rc.total++
		total++
		m, err := r.st.GetMachine(ctx, mem.Machine)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return model.ClusterStatus{}, nil, err
		}
		if m.Status.Phase == model.PhaseFailed {
			waiting = append(waiting, m.Name)
			failed = append(failed, fmt.Sprintf("member %s (role %s) failed: %s", m.Name, mem.Role, truncate(m.Status.LastError, 200)))
			continue
		}
		ok, err := r.memberReady(ctx, m, c, pc)
		if err != nil {
			return model.ClusterStatus{}, nil, err
		}
		if ok && m.State == model.StateProvisioned {
			rc.ready++
			ready++
		} else {
			waiting = append(waiting, m.Name)
		}
	}
	switch phase := model.ClusterPhaseOf(total, len(failed), ready); phase {
	case api.ClusterPending:
		return model.ClusterStatus{Phase: string(phase), Message: "the cluster has no members"}, waiting, nil
	case api.ClusterPaused:
		return model.ClusterStatus{Phase: string(phase), Message: "rollout paused: " + strings.Join(failed, "; ")}, waiting, nil
	case api.ClusterReady:
		return model.ClusterStatus{Phase: string(phase), Message: fmt.Sprintf("all %d members provisioned", total)}, waiting, nil
	}
	for _, cr := range c.Roles {
		rc := counts[cr.Name]
		if rc.ready < rc.total {
			return model.ClusterStatus{Phase: string(api.ClusterConverging), ActiveRole: cr.Name,
				Message: fmt.Sprintf("role %s: %d of %d members provisioned (max_unavailable %d)", cr.Name, rc.ready, rc.total, max(c.Rollout.MaxUnavailable, 1))}, waiting, nil
		}
	}
	return model.ClusterStatus{Phase: string(api.ClusterConverging), Message: fmt.Sprintf("%d of %d members provisioned; some members have roles the cluster does not define", ready, total)}, waiting, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
