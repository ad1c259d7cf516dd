package apiserver

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/boot"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// errUnchanged aborts a store write that would change nothing, so watchers
// are not woken for it.
var errUnchanged = errors.New("unchanged")

func (s *Server) listMachines(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	phase, state := api.MachinePhase(q.Get(api.QueryPhase)), api.DesiredState(q.Get(api.QueryState))
	if phase != "" && !slices.Contains(api.MachinePhases, phase) {
		return badRequest(api.QueryPhase, "phase %q is not one of %s", phase, strings.Join(api.Strings(api.MachinePhases), ", "))
	}
	if state != "" && !slices.Contains(api.DesiredStates, state) {
		return badRequest(api.QueryState, "state %q is not one of %s", state, strings.Join(api.Strings(api.DesiredStates), ", "))
	}
	cluster, role := q.Get(api.QueryCluster), q.Get(api.QueryRole)
	wait, _, err := parseLongPoll(r)
	if err != nil {
		return err
	}
	notETag := q.Get(api.QueryIfNoneMatch)
	var out api.MachineList
	poll := func() (bool, error) {
		ms, err := s.store.ListMachines(r.Context())
		if err != nil {
			return false, fmt.Errorf("listing machines: %w", err)
		}
		slices.SortFunc(ms, func(a, b *model.Machine) int { return strings.Compare(a.Name, b.Name) })
		out = api.MachineList{Items: []api.Machine{}}
		h := fnv.New64a()
		for _, m := range ms {
			if (cluster != "" && m.Cluster != cluster) || (role != "" && m.Role != role) ||
				(phase != "" && api.MachinePhase(m.Status.Phase) != phase) || (state != "" && api.DesiredState(m.State) != state) {
				continue
			}
			out.Items = append(out.Items, machineToAPI(m))
			fmt.Fprintf(h, "%s\x00%d\x00", m.Name, m.Revision)
		}
		out.ETag = strconv.FormatUint(h.Sum64(), 16)
		return out.ETag != notETag, nil
	}
	relevant := func(c store.Change) bool { return c.Kind == store.KindMachine }
	if done, err := s.longPoll(r.Context(), wait, listSettle, relevant, poll); err != nil || !done {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// listSettle gathers a busy fleet's changes into one re-list: a rollout
// writes many machines a second, and each re-list reads them all.
const listSettle = time.Second

func (s *Server) getMachine(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	wait, after, err := parseLongPoll(r)
	if err != nil {
		return err
	}
	var m *model.Machine
	poll := func() (bool, error) {
		var err error
		if m, err = s.store.GetMachine(r.Context(), name); err != nil {
			return false, storeError(err, "machine", name)
		}
		return m.Revision > after, nil
	}
	relevant := func(c store.Change) bool { return c.Kind == store.KindMachine && c.Name == name }
	if done, err := s.longPoll(r.Context(), wait, 0, relevant, poll); err != nil || !done {
		return err
	}
	out := machineToAPI(m)
	// Only here, not in lists: it reads the machine's profile, cluster
	// and the site.
	out.EffectiveParams, out.ParamSources, out.EffectiveSecretParams, err = boot.EffectiveParams(r.Context(), s.store, m)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) createMachine(w http.ResponseWriter, r *http.Request) error {
	var req api.MachineRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	holder, err := leaseHolder(r)
	if err != nil {
		return err
	}
	s.specMu.Lock()
	defer s.specMu.Unlock()
	v, err := s.validateMachine(r.Context(), &req, nil)
	if err != nil {
		return err
	}
	m := &model.Machine{Name: req.Name, Status: model.Status{Phase: model.PhaseRegistering}}
	applyMachineSpec(m, v)
	if err := s.dryRun(r.Context(), "params", []*model.Machine{m}, boot.Proposed{Machine: m}); err != nil {
		return err
	}
	if holder != "" {
		m.Lease = &model.Lease{Holder: holder, ExpiresAt: s.now().Add(s.leaseFor)}
	}
	created, err := s.store.CreateMachine(r.Context(), m)
	if errors.Is(err, store.ErrExists) {
		// Another run that registered it a moment ago still holds it: say
		// who, rather than advising an import that would collide with it.
		if existing, gerr := s.store.GetMachine(r.Context(), req.Name); gerr == nil {
			if lerr := s.checkLease(existing, holder); lerr != nil {
				return lerr
			}
		}
	}
	if err != nil {
		return storeError(err, "machine", req.Name)
	}
	s.specEvent(r.Context(), created, "machine created")
	w.Header().Set("Location", api.PathMachines+"/"+created.Name)
	writeJSON(w, http.StatusCreated, machineToAPI(created))
	return nil
}

func (s *Server) updateMachine(w http.ResponseWriter, r *http.Request) error {
	var req api.MachineRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	holder, err := leaseHolder(r)
	if err != nil {
		return err
	}
	name, err := nameFor(req.Name, r.PathValue("name"))
	if err != nil {
		return err
	}
	req.Name = name
	s.specMu.Lock()
	defer s.specMu.Unlock()
	existing, err := s.store.GetMachine(r.Context(), name)
	if err != nil {
		return storeError(err, "machine", name)
	}
	v, err := s.validateMachine(r.Context(), &req, existing)
	if err != nil {
		return err
	}
	proposed := *existing
	applyMachineSpec(&proposed, v)
	if err := s.dryRun(r.Context(), "params", []*model.Machine{&proposed}, boot.Proposed{Machine: &proposed}); err != nil {
		return err
	}
	specChanged, retry := false, false
	updated, err := s.store.UpdateMachine(r.Context(), name, func(m *model.Machine) (bool, error) {
		if !m.DeletionRequested.IsZero() {
			return false, conflict("", "machine %q is being deleted; wait until it is gone and create it again", name)
		}
		if req.Version != 0 && req.Version != m.Version {
			return false, staleVersion("machine", name, req.Version, m.Version)
		}
		if err := s.takeLease(m, holder); err != nil {
			return false, err
		}
		before := machineSpec(m)
		applyMachineSpec(m, v)
		specChanged = !reflect.DeepEqual(before, machineSpec(m))
		// Writing the desired state of a failed machine asks for it again,
		// and of one whose BMC refused or did not answer, to check it now:
		// the new spec version is the reconciler's signal. A cluster
		// member is retried by a write of its cluster, which orders it.
		bmcDown := m.Status.BMCStatus == model.BMCStatusAuthFailed || m.Status.BMCStatus == model.BMCStatusUnreachable
		retry = (m.Status.Phase == model.PhaseFailed && m.Cluster == "") || bmcDown
		// A write is the operator accepting the hardware as it now is.
		accept := m.Status.Inventory != nil && m.Status.Inventory.Fingerprint != "" && m.Status.AcceptedFingerprint != m.Status.Inventory.Fingerprint
		if accept {
			m.Status.AcceptedFingerprint = m.Status.Inventory.Fingerprint
		}
		if !specChanged && !retry && !accept && holder == "" {
			return false, errUnchanged
		}
		return specChanged || retry, nil
	})
	if errors.Is(err, errUnchanged) {
		updated, err = s.store.GetMachine(r.Context(), name)
	}
	if err != nil {
		return storeError(err, "machine", name)
	}
	switch {
	case specChanged:
		s.specEvent(r.Context(), updated, "machine spec updated")
	case retry:
		s.specEvent(r.Context(), updated, "desired state asked for again after a failure or a BMC error; retrying")
	}
	writeJSON(w, http.StatusOK, machineToAPI(updated))
	return nil
}

// machineSpec is the part of a machine an operator writes, normalised so an
// empty map and a missing one compare equal.
func machineSpec(m *model.Machine) any {
	params, macs := m.Params, m.MACs
	if len(params) == 0 {
		params = nil
	}
	if len(macs) == 0 {
		macs = nil
	}
	return struct {
		BMC         model.BMC
		MACs        []string
		BootProfile string
		Params      map[string]string
		State       model.DesiredState
		BootMode    model.BootMode
		RootDevice  *model.RootDeviceHints
		Adopt       bool
		Secrets     uint64
	}{m.BMC, slices.Clone(macs), m.BootProfile, maps.Clone(params), m.State, m.BootMode, m.RootDevice, m.Adopt, m.SecretsRevision}
}

func (s *Server) deleteMachine(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	force := false
	if v := r.URL.Query().Get(api.QueryForce); v != "" {
		var err error
		if force, err = strconv.ParseBool(v); err != nil {
			return badRequest("force", "force must be true or false, not %q", v)
		}
	}
	holder, err := leaseHolder(r)
	if err != nil {
		return err
	}
	s.specMu.Lock()
	defer s.specMu.Unlock()
	pre, err := s.store.GetMachine(r.Context(), name)
	if err != nil {
		return storeError(err, "machine", name)
	}
	cluster, err := s.memberOf(r.Context(), pre)
	if err != nil {
		return err
	}
	inCluster := func(m *model.Machine) error {
		// A claim memberOf found stale (pre.Cluster, not listed there) does
		// not block; any other does.
		if m.Cluster != "" && (cluster != "" || m.Cluster != pre.Cluster) {
			return conflict("", "machine %q is a member of cluster %q; remove it from the cluster first", name, m.Cluster)
		}
		return nil
	}
	if force {
		err := s.store.DeleteMachine(r.Context(), name, func(m *model.Machine) error {
			if err := inCluster(m); err != nil {
				return err
			}
			return s.checkLease(m, holder)
		})
		if err != nil {
			return storeError(err, "machine", name)
		}
		s.log.Info("machine deleted at once (force)", "machine", name)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	requested := false
	updated, err := s.store.UpdateMachine(r.Context(), name, func(m *model.Machine) (bool, error) {
		if err := inCluster(m); err != nil {
			return false, err
		}
		if err := s.takeLease(m, holder); err != nil {
			return false, err
		}
		if !m.DeletionRequested.IsZero() {
			if m.Status.Phase == model.PhaseFailed && m.Status.CleanPending != "" {
				// The clean run of this deletion failed and the machine waits:
				// a DELETE asks again, and the reconciler retries the clean.
				m.DeletionRequested = s.now().UTC()
				requested = true
				return true, nil
			}
			if holder == "" {
				return false, errUnchanged
			}
			return false, nil // the lease renewal is the only change
		}
		m.DeletionRequested = s.now().UTC()
		requested = true
		return true, nil
	})
	if errors.Is(err, errUnchanged) {
		updated, err = s.store.GetMachine(r.Context(), name)
	}
	if err != nil {
		return storeError(err, "machine", name)
	}
	if requested {
		s.specEvent(r.Context(), updated, "deletion requested")
	}
	writeJSON(w, http.StatusAccepted, machineToAPI(updated))
	return nil
}

func (s *Server) machineAction(w http.ResponseWriter, r *http.Request) error {
	name, action := r.PathValue("name"), api.Action(r.PathValue("action"))
	if !slices.Contains(api.ActionNames, action) {
		return badRequest("action", "unknown action %q; actions are %s", action, strings.Join(api.Strings(api.ActionNames), ", "))
	}
	if s.actions == nil {
		return &apiError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable,
			message: "machine actions are unavailable: this agent runs without a reconciler"}
	}
	holder, err := leaseHolder(r)
	if err != nil {
		return err
	}
	if holder != "" {
		// The lease also keeps two runs from interleaving power actions.
		_, err = s.store.UpdateMachine(r.Context(), name, func(m *model.Machine) (bool, error) {
			return false, s.takeLease(m, holder)
		})
	} else {
		_, err = s.store.GetMachine(r.Context(), name)
	}
	if err != nil {
		return storeError(err, "machine", name)
	}
	if err := s.actions.MachineAction(r.Context(), name, string(action)); err != nil {
		switch {
		case errors.Is(err, store.ErrNotFound):
			return notFound("machine", name)
		case errors.Is(err, api.ErrActionRejected), errors.Is(err, store.ErrConflict):
			return &apiError{status: http.StatusConflict, code: api.CodeConflict, field: "action", message: err.Error(), cause: err}
		}
		// Anything else is the action failing on the way (a BMC refusing or
		// timing out): the reconciler words it for operators, as it does
		// for last_error, so the caller gets its text.
		s.log.Warn("machine action failed", "machine", name, "action", action, "err", err)
		return &apiError{status: http.StatusBadGateway, code: CodeActionFailed, field: "action",
			message: fmt.Sprintf("%s on machine %q failed: %v", action, name, err)}
	}
	m, err := s.store.GetMachine(r.Context(), name)
	if err != nil {
		return storeError(err, "machine", name)
	}
	writeJSON(w, http.StatusAccepted, api.ActionResponse{Machine: machineToAPI(m), Action: action})
	return nil
}

// leaseHolder reads HeaderLeaseHolder ("" when absent).
func leaseHolder(r *http.Request) (string, error) {
	h := strings.TrimSpace(r.Header.Get(api.HeaderLeaseHolder))
	if len(h) > 200 || strings.IndexFunc(h, func(c rune) bool { return !unicode.IsPrint(c) }) >= 0 {
		return "", badRequest(api.HeaderLeaseHolder, "%s must be at most 200 printable characters", api.HeaderLeaseHolder)
	}
	return h, nil
}

// checkLease refuses a write by holder while another holder's lease is live.
// Writes without a holder are not checked: the lease is an agreement between
// writers that take one.
func (s *Server) checkLease(m *model.Machine, holder string) error {
	if holder == "" || m.Lease == nil || m.Lease.Holder == holder || !s.now().Before(m.Lease.ExpiresAt) {
		return nil
	}
	e := conflict(api.HeaderLeaseHolder, "machine %q is leased by %q until %s; another run is changing it; retry after that run ends or the lease expires",
		m.Name, m.Lease.Holder, m.Lease.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z"))
	e.code = api.CodeLeaseHeld
	return e
}

// takeLease checks the lease and then takes or renews it for holder.
func (s *Server) takeLease(m *model.Machine, holder string) error {
	if err := s.checkLease(m, holder); err != nil {
		return err
	}
	if holder != "" {
		m.Lease = &model.Lease{Holder: holder, ExpiresAt: s.now().Add(s.leaseFor).UTC()}
	}
	return nil
}

// renewLease extends the caller's lease (or takes a free or expired one)
// without touching the spec, so a writer waiting tens of minutes for a
// machine to provision keeps other writers out the whole time.
func (s *Server) renewLease(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	holder, err := requiredLeaseHolder(r, "renewing")
	if err != nil {
		return err
	}
	var lease model.Lease
	_, err = s.store.UpdateMachine(r.Context(), name, func(m *model.Machine) (bool, error) {
		if err := s.takeLease(m, holder); err != nil {
			return false, err
		}
		lease = *m.Lease
		return false, nil
	})
	if err != nil {
		return storeError(err, "machine", name)
	}
	writeJSON(w, http.StatusOK, api.Lease{Holder: lease.Holder, ExpiresAt: lease.ExpiresAt.UTC(), DurationSeconds: s.leaseFor.Seconds()})
	return nil
}

// releaseLease ends the caller's lease at once, so a finished run frees the
// machine instead of holding it until the lease runs out. Only the holder
// may release a live lease; a machine without one (or whose lease expired)
// has nothing to release.
func (s *Server) releaseLease(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	holder, err := requiredLeaseHolder(r, "releasing")
	if err != nil {
		return err
	}
	_, err = s.store.UpdateMachine(r.Context(), name, func(m *model.Machine) (bool, error) {
		if m.Lease == nil {
			return false, errUnchanged
		}
		if m.Lease.Holder != holder {
			if err := s.checkLease(m, holder); err != nil {
				return false, err
			}
			return false, errUnchanged // another holder's lease, already expired
		}
		m.Lease = nil
		return false, nil
	})
	if errors.Is(err, errUnchanged) {
		err = nil
	}
	if err != nil {
		return storeError(err, "machine", name)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// requiredLeaseHolder reads HeaderLeaseHolder for the lease routes, which
// act on a holder's lease and so cannot do without one.
func requiredLeaseHolder(r *http.Request, doing string) (string, error) {
	holder, err := leaseHolder(r)
	if err == nil && holder == "" {
		err = badRequest(api.HeaderLeaseHolder, "%s a lease needs the %s header naming the holder", doing, api.HeaderLeaseHolder)
	}
	return holder, err
}

// specEvent records a spec change in the machine's event log. It is
// best-effort: the write itself succeeded.
func (s *Server) specEvent(ctx context.Context, m *model.Machine, what string) {
	_, err := s.store.AppendEvent(ctx, model.Event{
		Machine: m.Name, Type: model.EventSpecChanged, Phase: m.Status.Phase,
		Message: fmt.Sprintf("%s (version %d)", what, m.Version),
		Data:    map[string]string{"version": strconv.FormatUint(m.Version, 10)},
	})
	if err != nil {
		s.log.Warn("recording spec event", "machine", m.Name, "err", err)
	}
	if !strings.HasPrefix(strings.ToLower(m.BMC.Endpoint), "http://") || !m.DeletionRequested.IsZero() {
		return
	}
	_, err = s.store.AppendEvent(ctx, model.Event{
		Machine: m.Name, Type: model.EventBMCInsecure, Phase: m.Status.Phase,
		Message: "the BMC endpoint is plain http: its username and password cross the network in the clear on every Redfish login; use https",
	})
	if err != nil {
		s.log.Warn("recording bmc_insecure event", "machine", m.Name, "err", err)
	}
}
