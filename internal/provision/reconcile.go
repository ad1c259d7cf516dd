package provision

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/bmc"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// errStale aborts a status write whose decision was made on a machine that
// has moved on (a callback, a signal-driven step, an operator action).
var errStale = errors.New("machine changed since it was read")

// slotFallback is how soon a machine waiting for a max-active slot looks
// again by itself (plus jitter up to as much again). A released slot wakes
// the oldest waiter at once; this only bounds the wait when that wake went
// to a machine that no longer needed the slot.
const slotFallback = 5 * time.Second

func (r *Reconciler) reconcileMachine(ctx context.Context, name string) {
	l := r.machineLock(name)
	l.Lock()
	defer l.Unlock()

	m, err := r.st.GetMachine(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		r.forget(name)
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("reading machine failed", "machine", name, "err", err)
			r.q.addAfter(name, r.cfg.RetryBase)
		}
		return
	}
	r.mu.Lock()
	r.clusterOf[name] = m.Cluster
	wait := r.notBefore[name].Sub(r.cfg.Now())
	r.mu.Unlock()
	if wait > 0 {
		r.q.addAfter(name, wait)
		return
	}

	v, err := r.view(ctx, m)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("reading machine context failed", "machine", name, "err", err)
			r.q.addAfter(name, r.cfg.RetryBase)
		}
		return
	}
	p := decide(v)
	if m.Cluster != "" && p.Op == opTransition {
		r.transitionInCluster(ctx, m.Cluster, name)
		return
	}
	r.log.Debug("reconcile", "machine", name, "phase", m.Status.Phase, "step", m.Status.Step, "op", p.Op, "reason", p.Reason)
	r.execute(ctx, v, p)
}

// transitionInCluster decides and carries out a cluster member's status
// transition under the cluster lock, on a fresh read. Run starts (and
// completions, see setBoot) of the members are ordered by that lock, so the
// role order and the rollout bound hold even with many workers. The events
// show it too: a member's completion event is written before another can
// see it completed. Anything but a transition on the fresh read (a BMC
// step) is left to a new pass, outside the lock.
func (r *Reconciler) transitionInCluster(ctx context.Context, cluster, name string) {
	cl := r.clusterLock(cluster)
	cl.Lock()
	defer cl.Unlock()
	m, err := r.st.GetMachine(ctx, name)
	if err != nil {
		r.q.add(name)
		return
	}
	v, err := r.view(ctx, m)
	if err != nil {
		r.q.addAfter(name, r.cfg.RetryBase)
		return
	}
	p := decide(v)
	if p.Op != opTransition {
		r.q.add(name)
		return
	}
	r.log.Debug("reconcile", "machine", name, "phase", m.Status.Phase, "step", m.Status.Step, "op", p.Op, "reason", p.Reason)
	r.execute(ctx, v, p)
}

// view gathers what decide needs: the effective target, the cluster gate
// and the wipe profile.
func (r *Reconciler) view(ctx context.Context, m *model.Machine) (view, error) {
	r.mu.Lock()
	polled := r.lastPoll[m.Name]
	r.mu.Unlock()
	v := view{M: m, Now: r.cfg.Now(), Timeouts: r.cfg.Timeouts, StallWarning: r.cfg.BootStallWarning,
		PollEvery: r.cfg.PowerPollInterval, LastPolled: polled, Gate: gate{Open: true}, InventoryEvery: r.cfg.InventoryInterval}
	c, err := r.clusterOfMachine(ctx, m)
	if err != nil {
		return v, err
	}
	pc := profileCache{}
	if v.Target, err = r.targetFor(ctx, m, c, pc); err != nil {
		return v, err
	}
	if m.Run.Serving() {
		p, err := pc.get(ctx, r.st, m.Run.Profile)
		switch {
		case m.Run.Clean != "":
			v.Boot = cleanPlan
		case errors.Is(err, store.ErrNotFound):
			v.Boot = unknownPlan
		case err != nil:
			return v, err
		default:
			v.Boot = planOf(p)
		}
	}
	if c != nil && m.State == model.StateProvisioned && mayStartRun(m, v.Target) {
		if v.Gate, err = r.gateFor(ctx, m, c, pc); err != nil {
			return v, err
		}
	}
	if m.Status.CleanPending != "" {
		if err := r.cleanView(ctx, m, pc, &v); err != nil {
			return v, err
		}
	}
	if m.Status.Phase == model.PhaseProvisioned && m.Status.ProvisionedProfile != "" {
		p, err := pc.get(ctx, r.st, m.Status.ProvisionedProfile)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return v, err
		}
		if p != nil && p.WipeProfile != "" {
			w, err := pc.get(ctx, r.st, p.WipeProfile)
			switch {
			case errors.Is(err, store.ErrNotFound):
				v.WipeProblem = fmt.Sprintf("wipe profile %q named by boot profile %q does not exist", p.WipeProfile, p.Name)
			case err != nil:
				return v, err
			default:
				v.Wipe, v.WipeVersion = w.Name, w.Version
			}
		}
	}
	return v, nil
}

// cleanView fills in the clean run a machine whose disk holds a config
// drive needs: with the profile of its last run (the deploy, or a clean
// that failed), at that profile's current wipe level.
func (r *Reconciler) cleanView(ctx context.Context, m *model.Machine, pc profileCache, v *view) error {
	name := m.Status.ProvisionedProfile
	if m.Run != nil {
		name = m.Run.Profile
	}
	p, err := pc.get(ctx, r.st, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		v.CleanProblem = fmt.Sprintf("boot profile %q, whose image the disk holds, does not exist, and the clean run that removes the image's "+
			"config drive boots with it (its root device hints find the disk): create the profile again, or delete the machine with force_destroy to skip the clean", name)
		return nil
	case err != nil:
		return err
	}
	v.Clean = target{Profile: p.Name, Version: p.Version, Clean: m.Status.CleanPending}
	if p.Image != nil {
		v.Clean.Clean = orDefault(p.Image.Wipe, model.WipeConfigDrive)
	}
	return nil
}

// mayStartRun reports whether decide could start a run for m toward t,
// the only decision the cluster gate affects; the gate (which reads every
// member) is computed only then.
func mayStartRun(m *model.Machine, t target) bool {
	st := m.Status
	switch st.Phase {
	case model.PhaseAvailable, model.PhaseOff:
		return true
	case model.PhaseProvisioned:
		return !t.same(st.ProvisionedProfile, st.ProvisionedProfileVersion, st.ProvisionedParamsHash)
	case model.PhaseProvisioning:
		return m.Run != nil && m.Run.CallbackAt.IsZero() && !t.same(m.Run.Profile, m.Run.ProfileVersion, m.Run.ParamsHash)
	}
	return false
}

func (r *Reconciler) execute(ctx context.Context, v view, p plan) {
	m := v.M
	switch p.Op {
	case opWait:
		if p.After > 0 {
			r.q.addAfter(m.Name, p.After)
		}
	case opObserve:
		r.commit(ctx, m, func(x *model.Machine) { x.Status.LastError = "" })
	case opNote:
		if m.Status.LastError != p.Reason {
			r.commit(ctx, m, func(x *model.Machine) { x.Status.LastError = p.Reason },
				model.Event{Type: model.EventError, Message: p.Reason})
		}
	case opTransition:
		r.transition(ctx, m, p)
	case opInspect:
		r.inspect(ctx, m)
	case opSetBootPXE:
		r.setBoot(ctx, m, bmc.BootPXE)
	case opSetBootDisk:
		r.setBoot(ctx, m, bmc.BootDisk)
	case opPowerOn:
		r.powerOn(ctx, m)
	case opPowerOff:
		r.powerOff(ctx, m)
	case opPollPower:
		r.pollPower(ctx, m)
	case opStall:
		r.noteStall(ctx, m, p)
	case opRebootToOS:
		r.rebootToOS(ctx, m)
	case opForget:
		r.forgetDeleted(ctx, m, p.Reason)
	case opReinspect:
		r.reinspect(ctx, m)
	}
}

// rebootToOS boots the image the deploy ramdisk wrote: next boot from
// disk, then a power cycle, since the ramdisk stays up and waits for it.
// The deployed OS's callback ends the run.
func (r *Reconciler) rebootToOS(ctx context.Context, m *model.Machine) {
	if !r.bmcStep(ctx, m, "setting the next boot to disk for the deployed image", r.cfg.Timeouts.Finish, true, func(ctx context.Context) error {
		return r.bmc.SetBootOverride(ctx, m.BMC, bmc.BootDisk, false, redfishBootMode(m.BootMode))
	}) {
		return
	}
	const what = "power ForceRestart into the deployed image"
	var issued time.Time
	var lost error // the restart's outcome is unknown
	if !r.bmcStep(ctx, m, "power-cycling into the deployed image", r.cfg.Timeouts.PowerOn, true, func(ctx context.Context) error {
		issued = r.cfg.Now()
		err := r.bmc.Power(ctx, m.BMC, bmc.PowerForceRestart)
		switch bmc.OutcomeOf(err) {
		case bmc.PowerUnknown:
			// A second restart could cut short the first boot of the
			// deployed OS; the booting_os deadline covers one that never
			// happened.
			lost = err
			return nil
		case bmc.PowerNotDone:
			if ctx.Err() == nil {
				r.appendEvent(ctx, powerEvent(m, bmc.PowerForceRestart, bmc.PowerNotDone,
					what+": not carried out: "+describeBMCError(m.BMC.Endpoint, err, r.cfg.Timeouts.PowerOn), issued))
			}
		}
		return err
	}) {
		return
	}
	now := r.cfg.Now()
	lastError := ""
	if lost != nil {
		lastError = describeBMCError(m.BMC.Endpoint, lost, r.cfg.Timeouts.PowerOn) + "; waiting for the deployed OS instead"
		r.appendEvent(ctx, powerEvent(m, bmc.PowerForceRestart, bmc.PowerUnknown, what+": "+lastError, issued))
	} else {
		r.appendEvent(ctx, powerEvent(m, bmc.PowerForceRestart, bmc.PowerConfirmed, what, issued))
	}
	r.commit(ctx, m, func(x *model.Machine) {
		setPhase(x, x.Status.Phase, model.StepBootingOS, now)
		x.Status.LastError = lastError
		x.Run.StepDeadline = now.Add(r.cfg.Timeouts.Install)
	}, phaseEvent(m, m.Status.Phase, model.StepBootingOS, "booting the deployed image from disk; waiting for its OS to call back"))
}

// forgetDeleted removes a machine whose deletion needs no (or can get no)
// power-off, recording why in the agent's event log, which outlives the
// machine's own.
func (r *Reconciler) forgetDeleted(ctx context.Context, m *model.Machine, why string) {
	err := r.st.DeleteMachine(ctx, m.Name, func(x *model.Machine) error {
		if !samePlace(x, m) {
			return errStale
		}
		return nil
	})
	switch {
	case errors.Is(err, errStale):
		r.q.add(m.Name)
		return
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		if ctx.Err() == nil {
			r.log.Error("deleting machine failed", "machine", m.Name, "err", err)
			r.q.addAfter(m.Name, r.cfg.RetryBase)
		}
		return
	}
	r.appendEvent(ctx, model.Event{Type: model.EventPhaseChanged, Message: fmt.Sprintf("machine %s deleted: %s", m.Name, why),
		Data: map[string]string{"machine": m.Name}})
	r.log.Info("machine deleted", "machine", m.Name, "reason", why)
	r.forget(m.Name)
}

// readInventory reads the machine's inventory and stamps it with its read
// time and hardware fingerprint.
func (r *Reconciler) readInventory(ctx context.Context, c model.BMC) (*model.Inventory, error) {
	inv, err := r.bmc.Inventory(ctx, c)
	if err != nil {
		return nil, err
	}
	if inv == nil {
		inv = &model.Inventory{}
	}
	if inv.CollectedAt.IsZero() {
		inv.CollectedAt = r.cfg.Now()
	}
	inv.Fingerprint = inv.HardwareFingerprint()
	return inv, nil
}

// reinspect reads a settled machine's inventory again. A failure is not
// the machine's: it shows in bmc_status and last_error, and the read is
// tried again at the next period.
func (r *Reconciler) reinspect(ctx context.Context, m *model.Machine) {
	cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeouts.Inspect)
	inv, err := r.readInventory(cctx, m.BMC)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			r.met.bmcErrors.WithLabelValues("inventory").Inc()
			r.bmcUnhealthy(ctx, m, describeBMCError(m.BMC.Endpoint, err, r.cfg.Timeouts.Inspect)+" while re-reading the inventory", err)
		}
		return
	}
	_ = r.recordInventory(ctx, m, inv) // a stale write requeues the machine, which reads again when due
}

// recordInventory stores a re-read inventory; a hardware fingerprint
// other than the accepted one is recorded as an event (the API shows both).
func (r *Reconciler) recordInventory(ctx context.Context, m *model.Machine, inv *model.Inventory) error {
	_, err := r.commitErr(ctx, m, func(x *model.Machine) {
		x.Status.Inventory = inv
		if x.Status.AcceptedFingerprint == "" {
			x.Status.AcceptedFingerprint = inv.Fingerprint
		}
		setBMCStatus(x, model.BMCStatusOK, inv.CollectedAt)
	}, driftEvents(m, inv)...)
	return err
}

// driftEvents is the inventory_drift event for inv, once per new
// fingerprint that differs from the accepted one.
func driftEvents(m *model.Machine, inv *model.Inventory) []model.Event {
	acc := m.Status.AcceptedFingerprint
	if acc == "" || inv.Fingerprint == acc || (m.Status.Inventory != nil && m.Status.Inventory.Fingerprint == inv.Fingerprint) {
		return nil
	}
	return []model.Event{{Type: model.EventInventoryDrift,
		Message: fmt.Sprintf("hardware changed: fingerprint %s, accepted %s (%s)", inv.Fingerprint, acc, inventoryDiff(m.Status.Inventory, inv)),
		Data:    map[string]string{"fingerprint": inv.Fingerprint, "accepted": acc}}}
}

// recordBMCStatus writes bmc_status outside any step's commit: the call
// that tells it may be followed by a status write on another basis.
func (r *Reconciler) recordBMCStatus(ctx context.Context, name, status string) {
	now := r.cfg.Now()
	_, err := r.st.UpdateMachine(ctx, name, func(x *model.Machine) (bool, error) {
		if x.Status.BMCStatus == status {
			return false, errStale
		}
		setBMCStatus(x, status, now)
		return false, nil
	})
	if err != nil && !errors.Is(err, errStale) && !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
		r.log.Error("recording bmc_status failed", "machine", name, "err", err)
	}
}

// inventoryDiff names what changed between two inventories, for the
// drift event.
func inventoryDiff(a, b *model.Inventory) string {
	if a == nil {
		return "no earlier inventory"
	}
	var d []string
	if a.CPUs != b.CPUs || a.CPUCores != b.CPUCores || a.CPUThreads != b.CPUThreads || a.CPUModel != b.CPUModel {
		d = append(d, fmt.Sprintf("CPUs %d/%d cores → %d/%d cores", a.CPUs, a.CPUCores, b.CPUs, b.CPUCores))
	}
	if a.MemoryGiB != b.MemoryGiB {
		d = append(d, fmt.Sprintf("memory %g GiB → %g GiB", a.MemoryGiB, b.MemoryGiB))
	}
	if len(a.Disks) != len(b.Disks) {
		d = append(d, fmt.Sprintf("disks %d → %d", len(a.Disks), len(b.Disks)))
	}
	if len(a.NICs) != len(b.NICs) {
		d = append(d, fmt.Sprintf("NICs %d → %d", len(a.NICs), len(b.NICs)))
	}
	if len(d) == 0 {
		return "disk, NIC or accelerator details"
	}
	return strings.Join(d, ", ")
}

// setBMCStatus records how the BMC answered, keeping the time since when
// the status is unchanged.
func setBMCStatus(x *model.Machine, status string, now time.Time) {
	if x.Status.BMCStatus != status {
		x.Status.BMCStatus, x.Status.BMCStatusSince = status, now
	}
}

// bmcHealth classifies a BMC call's failure for bmc_status: a refused
// login or access, a BMC that does not answer, or ok for a BMC that
// answered with some other error.
func bmcHealth(err error) string {
	var be *bmc.Error
	if errors.As(err, &be) && (be.StatusCode == http.StatusUnauthorized || be.StatusCode == http.StatusForbidden) {
		return model.BMCStatusAuthFailed
	}
	var ne net.Error
	switch {
	case errors.Is(err, bmc.ErrUnsupported), errors.Is(err, bmc.ErrOverrideReverted):
		return model.BMCStatusOK
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne):
		return model.BMCStatusUnreachable
	case be != nil && be.StatusCode == 0:
		// No HTTP answer at all: refused connection, DNS, TLS.
		return model.BMCStatusUnreachable
	case be != nil && (be.StatusCode == http.StatusBadGateway || be.StatusCode == http.StatusServiceUnavailable || be.StatusCode == http.StatusGatewayTimeout):
		return model.BMCStatusUnreachable
	}
	return model.BMCStatusOK
}

// credentialsHint ends a message about a BMC that refuses the agent's
// login with what fixes it.
const credentialsHint = "; the BMC refuses the configured credentials: set the right bmc.password (with password_wo, bump password_wo_version) and apply"

// bmcUnhealthy records a failed BMC call of a settled machine (power poll,
// inventory re-read): bmc_status and last_error say what the BMC did, so
// the next plan shows it; the machine's phase is left alone. The write is
// skipped when it would change nothing, unless a spec version is waiting
// to be acknowledged.
func (r *Reconciler) bmcUnhealthy(ctx context.Context, m *model.Machine, msg string, err error) {
	health := bmcHealth(err)
	if health == model.BMCStatusAuthFailed {
		msg += credentialsHint
	}
	r.log.Warn("BMC call of a settled machine failed", "machine", m.Name, "err", msg)
	if m.Status.BMCStatus == health && m.Status.LastError == msg && m.Version <= m.Status.ObservedVersion {
		return
	}
	var evs []model.Event
	if m.Status.LastError != msg {
		evs = append(evs, model.Event{Type: model.EventError, Message: msg, Data: map[string]string{"bmc_status": health}})
	}
	now := r.cfg.Now()
	r.commit(ctx, m, func(x *model.Machine) {
		setBMCStatus(x, health, now)
		x.Status.LastError = msg
	}, evs...)
}

// noteStall writes, refreshes or (with an empty reason) clears the run's
// stall note, unless a boot step arrived since the decision: the note
// would describe a stall that is over.
func (r *Reconciler) noteStall(ctx context.Context, m *model.Machine, p plan) {
	now := r.cfg.Now()
	var evs []model.Event
	last := "none"
	if s, ok := m.Run.LastStep(); ok {
		last = string(s.Signal)
	}
	if p.NewStall {
		evs = append(evs, model.Event{Type: model.EventBootStalled, Message: p.Reason,
			Data: map[string]string{"run": m.Run.ID, "last_step": last, "since": p.StallOf.UTC().Format(time.RFC3339Nano)}})
	}
	_, err := r.commitIf(ctx, m, func(x *model.Machine) bool { return stallSince(x.Run).Equal(p.StallOf) }, func(x *model.Machine) {
		x.Status.LastError = p.Reason
		x.Run.StallNotedAt = time.Time{}
		if p.Reason != "" {
			x.Run.StallNotedAt = now
		}
	}, evs...)
	if err == nil && p.NewStall {
		r.met.bootStalls.WithLabelValues(last).Inc()
		r.log.Warn("boot stalled", "machine", m.Name, "run", m.Run.ID, "reason", p.Reason)
	}
}

// transition writes a status-only change: phase/step, run start or abort,
// deadline, failure. It is also how a plan's reasons become events.
func (r *Reconciler) transition(ctx context.Context, m *model.Machine, p plan) {
	now := r.cfg.Now()
	var run *model.Run
	if p.NewRun != nil {
		var err error
		if run, err = newRun(*p.NewRun, now); err != nil {
			r.log.Error("cannot start a run", "machine", m.Name, "err", err)
			r.q.addAfter(m.Name, r.cfg.RetryBase)
			return
		}
	}
	evs := []model.Event{phaseEvent(m, p.Phase, p.Step, p.Reason)}
	if run != nil {
		evs = append(evs, model.Event{Type: model.EventRunStarted, Phase: p.Phase, Step: p.Step,
			Message: fmt.Sprintf("run %s with profile %s v%d", run.ID, run.Profile, run.ProfileVersion),
			Data:    map[string]string{"run": run.ID, "profile": run.Profile, "profile_version": fmt.Sprint(run.ProfileVersion)}})
	}
	if p.Fail {
		evs = append(evs, model.Event{Type: model.EventError, Phase: p.Phase, Message: p.Reason})
	}
	_, ok := r.commit(ctx, m, func(x *model.Machine) {
		setPhase(x, p.Phase, p.Step, now)
		x.Status.LastError = ""
		if p.Fail {
			x.Status.LastError = p.Reason
		}
		if (p.AbortRun || run != nil || p.Fail) && x.Run != nil {
			// The old token dies with its run: the boot edge stops serving
			// the installer and a late callback is refused.
			x.Run.TokenUsed = true
		}
		if run != nil {
			x.Run = run
		}
		if t := p.Adopt; t != nil {
			x.Status.ProvisionedProfile, x.Status.ProvisionedProfileVersion, x.Status.ProvisionedParamsHash = t.Profile, t.Version, t.ParamsHash
			x.Status.ProvisionedAt = now
		}
		if x.Run != nil {
			if p.Attempt {
				x.Run.Attempts++
			}
			// Every step records its own deadline; the power steps set theirs
			// when they act (see powerOn), so entering one clears the last.
			x.Run.StepDeadline = p.Deadline
		}
	}, evs...)
	if ok {
		r.met.transitions.WithLabelValues(string(p.Phase), string(p.Step)).Inc()
		if run != nil {
			r.met.runs.Inc()
		}
		r.log.Info("machine transition", "machine", m.Name, "phase", p.Phase, "step", p.Step, "reason", p.Reason)
	}
}

func (r *Reconciler) inspect(ctx context.Context, m *model.Machine) {
	var inv *model.Inventory
	if !r.bmcStep(ctx, m, "reading the inventory", r.cfg.Timeouts.Inspect, false, func(ctx context.Context) (err error) {
		inv, err = r.readInventory(ctx, m.BMC)
		return err
	}) {
		return
	}
	now := r.cfg.Now()
	macs := m.MACs
	if len(macs) == 0 {
		macs = inventoryMACs(inv)
	}
	why := fmt.Sprintf("inventory read: %d NICs, %d disks, power %s", len(inv.NICs), len(inv.Disks), orDash(inv.PowerState))
	if len(m.MACs) == 0 && len(macs) > 0 {
		why += "; MACs from the inventory: " + strings.Join(macs, ", ")
	}
	apply := func(withMACs bool) func(x *model.Machine) {
		return func(x *model.Machine) {
			x.Status.Inventory = inv
			if x.Status.AcceptedFingerprint == "" {
				x.Status.AcceptedFingerprint = inv.Fingerprint
			}
			if inv.PowerState != "" {
				x.Status.PowerState = inv.PowerState
				x.Status.PowerCheckedAt = now
			}
			if withMACs && len(x.MACs) == 0 {
				// Discovered, not asked for: a status write, so the operator's
				// spec version does not move under a pending update.
				x.MACs = macs
			}
			setPhase(x, model.PhaseAvailable, model.StepNone, now)
			x.Status.LastError = ""
		}
	}
	if _, err := r.commitErr(ctx, m, apply(true), phaseEvent(m, model.PhaseAvailable, model.StepNone, why)); errors.Is(err, store.ErrMACInUse) {
		// Another machine claims a discovered MAC: keep the inventory and
		// say so; provisioning waits for macs to be set explicitly.
		r.commit(ctx, m, apply(false), phaseEvent(m, model.PhaseAvailable, model.StepNone,
			why+"; discovered MACs "+strings.Join(macs, ", ")+" are claimed by another machine, set macs explicitly"))
	}
}

func inventoryMACs(inv *model.Inventory) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range inv.NICs {
		mac, err := model.NormalizeMAC(n.MAC)
		if err != nil || seen[mac] {
			continue
		}
		seen[mac] = true
		out = append(out, mac)
	}
	return out
}

func (r *Reconciler) setBoot(ctx context.Context, m *model.Machine, t bmc.BootTarget) {
	if why := model.BootModeRefusal(m.BootMode, m.Status.Inventory); t == bmc.BootPXE && why != "" {
		r.transition(ctx, m, fail(why))
		return
	}
	what, timeout := "setting the boot override to network (PXE)", r.cfg.Timeouts.SetBoot
	if t == bmc.BootDisk {
		what, timeout = "setting the next boot to disk", r.cfg.Timeouts.Finish
	}
	if !r.bmcStep(ctx, m, what, timeout, true, func(ctx context.Context) error {
		return r.bmc.SetBootOverride(ctx, m.BMC, t, false, redfishBootMode(m.BootMode))
	}) {
		return
	}
	now := r.cfg.Now()
	r.appendEvent(ctx, model.Event{Machine: m.Name, Type: model.EventBootOverride, Phase: m.Status.Phase, Step: m.Status.Step,
		Message: "next boot: " + string(t) + " (once)", Data: map[string]string{"target": string(t), "persistent": "false", "run": m.Run.ID}})
	if t == bmc.BootPXE {
		// The inventory is read again before each power-on, so hardware
		// changed while the machine was off is seen; a failed read is no
		// reason to stop the run.
		evs := []model.Event{phaseEvent(m, m.Status.Phase, model.StepPoweringOn, "boot override set to PXE")}
		cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeouts.Inspect)
		inv, err := r.readInventory(cctx, m.BMC)
		cancel()
		if err != nil {
			r.log.Warn("re-reading the inventory before power-on failed", "machine", m.Name, "err", err)
		} else {
			evs = append(evs, driftEvents(m, inv)...)
		}
		r.commit(ctx, m, func(x *model.Machine) {
			setPhase(x, x.Status.Phase, model.StepPoweringOn, now)
			x.Status.LastError = ""
			x.Run.StepDeadline = time.Time{}
			if inv != nil {
				x.Status.Inventory = inv
			}
		}, evs...)
		return
	}
	run := m.Run
	if m.Cluster != "" {
		// Not held across the BMC call: a slow BMC must not stall the
		// cluster's other members.
		cl := r.clusterLock(m.Cluster)
		cl.Lock()
		defer cl.Unlock()
	}
	if _, ok := r.commit(ctx, m, func(x *model.Machine) {
		setPhase(x, model.PhaseProvisioned, model.StepNone, now)
		x.Status.LastError = ""
		x.Status.ProvisionedProfile = run.Profile
		x.Status.ProvisionedProfileVersion = run.ProfileVersion
		x.Status.ProvisionedParamsHash = run.ParamsHash
		x.Status.ProvisionedAt = now
		x.Status.PowerState = model.PowerOn
		x.Status.PowerCheckedAt = now
		x.Status.PowerDrift = false
	}, phaseEvent(m, model.PhaseProvisioned, model.StepNone,
		fmt.Sprintf("installed with %s v%d (run %s)", run.Profile, run.ProfileVersion, run.ID))); ok {
		r.met.transitions.WithLabelValues(string(model.PhaseProvisioned), "").Inc()
	}
}

func (r *Reconciler) powerOn(ctx context.Context, m *model.Machine) {
	var action bmc.PowerAction
	var issued time.Time
	var lost error // the action's outcome is unknown
	resumed := ""  // why the machine, found on, is not powered again
	if !r.bmcStep(ctx, m, "powering on", r.cfg.Timeouts.PowerOn, true, func(ctx context.Context) error {
		// A fresh read just before the only irreversible action: a signal
		// or callback that arrived since the pass began means the machine is
		// already booting and must not be cycled.
		cur, err := r.st.GetMachine(ctx, m.Name)
		if err != nil {
			return err
		}
		if !samePlace(cur, m) || bootSignalSeen(cur.Run) || !cur.Run.CallbackAt.IsZero() {
			return errStale
		}
		// The step's deadline is written before the power action, so it
		// also says "a power action may have been issued". When this agent
		// did not write it, an earlier agent did and may have crashed right
		// after powering on: a machine that is on now is left alone (if it
		// never PXE boots, the waiting_pxe deadline power-cycles it).
		r.mu.Lock()
		mine := r.powerIntent[m.Name] == m.Run.ID
		r.mu.Unlock()
		if !cur.Run.StepDeadline.IsZero() && !mine {
			ps, err := r.bmc.PowerState(ctx, m.BMC)
			if err != nil {
				return err
			}
			if ps == model.PowerOn {
				resumed = "power-on was issued before the agent restarted and the machine is on; waiting for the PXE request"
				return nil
			}
		}
		if cur.Run.StepDeadline.IsZero() {
			deadline := r.cfg.Now().Add(r.cfg.Timeouts.PowerOn)
			if _, err := r.st.UpdateMachine(ctx, m.Name, func(x *model.Machine) (bool, error) {
				if !samePlace(x, m) {
					return false, errStale
				}
				x.Run.StepDeadline = deadline
				return false, nil
			}); err != nil {
				return err
			}
		}
		r.mu.Lock()
		r.powerIntent[m.Name] = m.Run.ID
		r.mu.Unlock()
		ps, err := r.bmc.PowerState(ctx, m.BMC)
		if err != nil {
			return err
		}
		r.mu.Lock()
		late := r.onNotDone[m.Name] == m.Run.ID
		delete(r.onNotDone, m.Name)
		r.mu.Unlock()
		if late && ps == model.PowerOn {
			resumed = "the last power-on came in late and the machine is on now; waiting for the PXE request"
			return nil
		}
		action = bmc.PowerOn
		if ps == model.PowerOn {
			action = bmc.PowerForceRestart
		}
		issued = r.cfg.Now()
		err = r.bmc.Power(ctx, m.BMC, action)
		switch bmc.OutcomeOf(err) {
		case bmc.PowerUnknown:
			// Sending it again could cut short the boot it may have begun;
			// the waiting_pxe deadline power-cycles a machine that never
			// boots.
			lost = err
			return nil
		case bmc.PowerNotDone:
			if action == bmc.PowerOn {
				r.mu.Lock()
				r.onNotDone[m.Name] = m.Run.ID
				r.mu.Unlock()
			}
			if ctx.Err() == nil {
				r.appendEvent(ctx, powerEvent(m, action, bmc.PowerNotDone, "power "+string(action)+" to boot from the network: not carried out: "+
					describeBMCError(m.BMC.Endpoint, err, r.cfg.Timeouts.PowerOn), issued))
			}
		}
		return err
	}) {
		return
	}
	if resumed != "" {
		now := r.cfg.Now()
		r.commit(ctx, m, func(x *model.Machine) {
			setPhase(x, x.Status.Phase, model.StepWaitingPXE, now)
			x.Status.LastError = ""
			x.Status.PowerState = model.PowerOn
			x.Run.StepDeadline = now.Add(r.cfg.Timeouts.WaitPXE)
			x.Run.PoweredOnAt = now
		}, phaseEvent(m, m.Status.Phase, model.StepWaitingPXE, resumed))
		return
	}
	// The power action happened whatever the store says next: record it
	// first. The machine may already be calling back (the lab's simulated
	// machines are that fast), so the count goes on the run even when the
	// step has moved on.
	now := r.cfg.Now()
	// The event is recorded once the BMC confirms the new state, which a
	// slow BMC may do after the machine has already booted; issued_at says
	// when the action was sent.
	lastError := ""
	if lost != nil {
		lastError = describeBMCError(m.BMC.Endpoint, lost, r.cfg.Timeouts.PowerOn) + "; waiting for the PXE request instead"
		r.appendEvent(ctx, powerEvent(m, action, bmc.PowerUnknown, "power "+string(action)+" to boot from the network: "+lastError, issued))
	} else {
		r.appendEvent(ctx, powerEvent(m, action, bmc.PowerConfirmed, "power "+string(action)+" to boot from the network", issued))
	}
	moved := false
	wl := r.writeLock(m.Name)
	wl.Lock()
	defer wl.Unlock()
	_, err := r.st.UpdateMachine(ctx, m.Name, func(x *model.Machine) (bool, error) {
		if runID(x) != m.Run.ID {
			return false, errStale
		}
		x.Run.PowerOns++
		x.Run.PoweredOnAt = issued
		if lost == nil {
			x.Status.PowerState = model.PowerOn
			x.Status.PowerCheckedAt = now
		}
		if moved = samePlace(x, m); moved {
			setPhase(x, x.Status.Phase, model.StepWaitingPXE, now)
			x.Status.LastError = lastError
			x.Run.StepDeadline = now.Add(r.cfg.Timeouts.WaitPXE)
			if m.Version > x.Status.ObservedVersion {
				x.Status.ObservedVersion = m.Version
			}
		}
		return false, nil
	})
	if err != nil && !errors.Is(err, errStale) && ctx.Err() == nil {
		r.log.Error("recording power-on failed", "machine", m.Name, "err", err)
	}
	if moved && err == nil {
		why := "powered " + string(action) + "; waiting for the PXE request"
		if lost != nil {
			why = "power " + string(action) + " outcome unknown; waiting for the PXE request"
		}
		e := phaseEvent(m, m.Status.Phase, model.StepWaitingPXE, why)
		e.Machine = m.Name
		r.appendEvent(ctx, e)
	}
	r.q.add(m.Name)
}

func (r *Reconciler) powerOff(ctx context.Context, m *model.Machine) {
	const what = "power GracefulShutdown (forced off if it does not stop in time)"
	if !r.bmcStep(ctx, m, "powering off", r.cfg.Timeouts.PowerOff, true, func(ctx context.Context) error {
		issued := r.cfg.Now()
		err := r.bmc.Power(ctx, m.BMC, bmc.PowerGracefulShutdown)
		if err != nil && ctx.Err() == nil {
			// A shutdown sent again cannot cycle the machine: the next try
			// reads the power state first and is a no-op once it is off.
			o := bmc.OutcomeOf(err)
			r.appendEvent(ctx, powerEvent(m, bmc.PowerGracefulShutdown, o,
				what+": "+string(o)+": "+describeBMCError(m.BMC.Endpoint, err, r.cfg.Timeouts.PowerOff), issued))
		}
		return err
	}) {
		return
	}
	now := r.cfg.Now()
	r.appendEvent(ctx, powerEvent(m, bmc.PowerGracefulShutdown, bmc.PowerConfirmed, what, time.Time{}))
	if !m.DeletionRequested.IsZero() {
		err := r.st.DeleteMachine(ctx, m.Name, func(x *model.Machine) error {
			if x.DeletionRequested.IsZero() {
				return errStale
			}
			return nil
		})
		switch {
		case errors.Is(err, errStale):
			r.q.add(m.Name)
			return
		case err != nil && !errors.Is(err, store.ErrNotFound):
			if ctx.Err() == nil {
				r.log.Error("deleting machine after power-off failed", "machine", m.Name, "err", err)
				r.q.addAfter(m.Name, r.cfg.RetryBase)
			}
			return
		}
		r.appendEvent(ctx, model.Event{Type: model.EventPhaseChanged,
			Message: fmt.Sprintf("machine %s powered off and deleted", m.Name), Data: map[string]string{"machine": m.Name}})
		r.log.Info("machine deleted", "machine", m.Name)
		r.forget(m.Name)
		return
	}
	next, why := model.PhaseAvailable, "powered off; available"
	if m.State == model.StateOff {
		next, why = model.PhaseOff, "powered off"
	}
	r.commit(ctx, m, func(x *model.Machine) {
		setPhase(x, next, model.StepNone, now)
		x.Status.LastError = ""
		x.Status.PowerState = model.PowerOff
		x.Status.PowerCheckedAt = now
		x.Status.PowerDrift = false
		if x.Run != nil {
			x.Run.TokenUsed = true
		}
	}, phaseEvent(m, next, model.StepNone, why))
}

// powerEvent is the power_action event of one attempt: which action, its
// outcome (confirmed, not_done or unknown) and when it was sent.
func powerEvent(m *model.Machine, a bmc.PowerAction, o bmc.PowerOutcome, msg string, issued time.Time) model.Event {
	data := map[string]string{"action": string(a), "outcome": string(o)}
	if m.Run != nil {
		data["run"] = m.Run.ID
	}
	ev := model.Event{Machine: m.Name, Type: model.EventPowerAction, Phase: m.Status.Phase, Step: m.Status.Step, Message: msg, Data: data}
	if !issued.IsZero() {
		data["issued_at"] = issued.UTC().Format(time.RFC3339Nano)
		// Timed when the action was sent, with the step it was sent in, so
		// a reader ordering by time sees it before the boot it caused even
		// when the BMC confirmed after the callback.
		ev.Time = issued.UTC()
	}
	return ev
}

// recordPollEvery is how many drift polls may pass without a store write
// when nothing changed: power_checked_at stays roughly fresh without every
// poll of every machine costing a write (and waking every watcher).
const recordPollEvery = 10

// pollWait returns how long the machine must wait for its drift-poll slot,
// reserving one if it holds none; 0 means poll now (the slot is used up).
func (r *Reconciler) pollWait(name string, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	slot, held := r.pollSlot[name]
	if !held {
		slot = r.poll.reserve(now)
	}
	if slot.After(now) {
		r.pollSlot[name] = slot
		return slot.Sub(now)
	}
	delete(r.pollSlot, name)
	return 0
}

func (r *Reconciler) pollPower(ctx context.Context, m *model.Machine) {
	if wait := r.pollWait(m.Name, time.Now()); wait > 0 {
		r.q.addAfter(m.Name, wait)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeouts.Inspect)
	if m.Version > m.Status.ObservedVersion && m.Status.BMCStatus == model.BMCStatusAuthFailed {
		// The operator wrote the machine after the BMC refused the login:
		// try now, not when the login backoff ends.
		cctx = bmc.OperatorAsked(cctx)
	}
	ps, err := r.bmc.PowerState(cctx, m.BMC)
	cancel()
	now := r.cfg.Now()
	r.mu.Lock()
	r.lastPoll[m.Name] = now
	r.mu.Unlock()
	r.q.addAfter(m.Name, r.cfg.PowerPollInterval)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		// A failed drift poll is not a machine failure: bmc_status and
		// last_error say it, and the next interval looks again.
		r.met.bmcErrors.WithLabelValues("power_poll").Inc()
		r.bmcUnhealthy(ctx, m, describeBMCError(m.BMC.Endpoint, err, r.cfg.Timeouts.Inspect)+" while polling the power state", err)
		return
	}
	exp := expectedPower(m)
	drift := exp != "" && ps != exp
	recovered := m.Status.BMCStatus != model.BMCStatusOK
	if ps == m.Status.PowerState && drift == m.Status.PowerDrift && !recovered && m.Version <= m.Status.ObservedVersion &&
		now.Sub(m.Status.PowerCheckedAt) < recordPollEvery*r.cfg.PowerPollInterval {
		return
	}
	var evs []model.Event
	if drift != m.Status.PowerDrift {
		msg := fmt.Sprintf("power is %s, phase %s expects %s", ps, m.Status.Phase, exp)
		if !drift {
			msg = fmt.Sprintf("power is %s again, as phase %s expects", ps, m.Status.Phase)
		}
		evs = append(evs, model.Event{Type: model.EventPowerDrift, Message: msg,
			Data: map[string]string{"observed": ps, "expected": exp, "drift": fmt.Sprint(drift)}})
	}
	r.commit(ctx, m, func(x *model.Machine) {
		x.Status.PowerState = ps
		x.Status.PowerCheckedAt = now
		x.Status.PowerDrift = drift
		if recovered {
			setBMCStatus(x, model.BMCStatusOK, now)
			x.Status.LastError = ""
		}
	}, evs...)
}

// bmcStep runs one BMC call for the machine's current step, under the
// max-active limit when active is set. On failure it records the error,
// backs off and eventually fails the machine; it reports success.
func (r *Reconciler) bmcStep(ctx context.Context, m *model.Machine, what string, timeout time.Duration, active bool, call func(context.Context) error) bool {
	if active {
		select {
		case r.sem <- struct{}{}:
			r.met.activeSteps.Inc()
			r.mu.Lock()
			delete(r.slotWaiting, m.Name)
			r.mu.Unlock()
			defer func() {
				<-r.sem
				r.met.activeSteps.Dec()
				r.wakeSlotWaiter()
			}()
		default:
			r.waitForSlot(m.Name)
			return false
		}
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	err := call(cctx)
	cancel()
	if err == nil {
		r.mu.Lock()
		delete(r.failures, m.Name)
		delete(r.notBefore, m.Name)
		r.mu.Unlock()
		if m.Status.BMCStatus != model.BMCStatusOK {
			r.recordBMCStatus(ctx, m.Name, model.BMCStatusOK)
		}
		return true
	}
	if ctx.Err() != nil {
		return false // shutting down: the step is redone by the next agent
	}
	if errors.Is(err, errStale) {
		r.q.add(m.Name)
		return false
	}
	r.stepFailed(ctx, m, what, timeout, err)
	return false
}

// waitForSlot queues name for the next released max-active slot.
func (r *Reconciler) waitForSlot(name string) {
	r.mu.Lock()
	if !r.slotWaiting[name] {
		r.slotWaiting[name] = true
		r.slotWait = append(r.slotWait, name)
	}
	r.mu.Unlock()
	r.q.addAfter(name, slotFallback+rand.N(slotFallback))
}

// wakeSlotWaiter hands a released slot to the oldest machine still
// waiting for one. If another machine takes the slot first, the woken one
// queues again, and that machine's release wakes the next.
func (r *Reconciler) wakeSlotWaiter() {
	r.mu.Lock()
	for len(r.slotWait) > 0 {
		name := r.slotWait[0]
		r.slotWait = r.slotWait[1:]
		if r.slotWaiting[name] {
			delete(r.slotWaiting, name)
			r.mu.Unlock()
			r.q.add(name)
			return
		}
	}
	r.slotWait = nil // release the drained backing array
	r.mu.Unlock()
}

func (r *Reconciler) stepFailed(ctx context.Context, m *model.Machine, what string, timeout time.Duration, err error) {
	label := string(m.Status.Step)
	if label == "" {
		label = string(m.Status.Phase)
	}
	r.met.bmcErrors.WithLabelValues(label).Inc()
	key := fmt.Sprintf("%s/%s/%s", m.Status.Phase, m.Status.Step, runID(m))
	r.mu.Lock()
	f := r.failures[m.Name]
	if f.key != key {
		f = failure{key: key}
	}
	f.n++
	r.failures[m.Name] = f
	r.mu.Unlock()

	msg := describeBMCError(m.BMC.Endpoint, err, timeout) + " while " + what
	health := bmcHealth(err)
	if health == model.BMCStatusAuthFailed {
		msg += credentialsHint
	}
	if health != m.Status.BMCStatus {
		r.recordBMCStatus(ctx, m.Name, health)
	}
	retries := r.cfg.Timeouts.Retries
	// A full session table empties as sessions expire: waiting, however
	// long, beats failing a machine nothing is wrong with.
	waiting := errors.Is(err, bmc.ErrSessionLimit)
	if f.n > retries && !waiting {
		r.mu.Lock()
		delete(r.failures, m.Name)
		r.mu.Unlock()
		full := fmt.Sprintf("%s; retried %d times", msg, retries)
		r.log.Warn("BMC step failed for good", "machine", m.Name, "err", full)
		r.transition(ctx, m, fail(full))
		return
	}
	d := backoff(r.cfg.RetryBase, r.cfg.RetryMax, f.n)
	now := r.cfg.Now()
	r.mu.Lock()
	r.notBefore[m.Name] = now.Add(d)
	r.mu.Unlock()
	retryMsg := fmt.Sprintf("%s; retry %d of %d in %s", msg, f.n, retries, d.Round(time.Millisecond))
	if waiting {
		retryMsg = fmt.Sprintf("%s; waiting, try %d in %s", msg, f.n+1, d.Round(time.Millisecond))
	}
	r.log.Warn("BMC step failed; retrying", "machine", m.Name, "err", retryMsg)
	r.commit(ctx, m, func(x *model.Machine) { x.Status.LastError = retryMsg },
		model.Event{Type: model.EventError, Message: retryMsg})
	r.q.addAfter(m.Name, d)
}

// describeBMCError makes sure the message names the BMC (the bmc package's
// errors do; others get the endpoint, without any userinfo, prefixed).
func describeBMCError(endpoint string, err error, timeout time.Duration) string {
	s := err.Error()
	var be *bmc.Error
	if !errors.As(err, &be) {
		s = "BMC " + displayEndpoint(endpoint) + ": " + s
	}
	if errors.Is(err, context.DeadlineExceeded) {
		s += fmt.Sprintf(" (no answer within %s)", timeout)
	}
	return s
}

func displayEndpoint(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid endpoint)"
	}
	u.User = nil
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}

// backoff is exponential from base, capped at limit, with jitter in
// [d/2, d) so machines failing together do not retry together.
func backoff(base, limit time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	if d > limit {
		d = limit
	}
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half)
}

// commit writes fn's change when the stored machine is still where m was
// (same phase, step, run and spec), together with the events that explain
// it, in one transaction. It reports whether the write happened; a stale
// write requeues the machine.
func (r *Reconciler) commit(ctx context.Context, m *model.Machine, fn func(x *model.Machine), evs ...model.Event) (*model.Machine, bool) { //nolint:unparam // the written machine stays in the result while reconcile.go is restructured (issue 20)
	out, err := r.commitErr(ctx, m, fn, evs...)
	return out, err == nil
}

// commitErr is commit returning why a write did not happen.
func (r *Reconciler) commitErr(ctx context.Context, m *model.Machine, fn func(x *model.Machine), evs ...model.Event) (*model.Machine, error) {
	return r.commitIf(ctx, m, nil, fn, evs...)
}

// commitIf is commitErr for a write that is also void unless still holds
// on the stored machine (nil: no further condition).
func (r *Reconciler) commitIf(ctx context.Context, m *model.Machine, still func(x *model.Machine) bool, fn func(x *model.Machine), evs ...model.Event) (*model.Machine, error) {
	wl := r.writeLock(m.Name)
	wl.Lock()
	defer wl.Unlock()
	out, _, err := r.st.UpdateMachineRecording(ctx, m.Name, func(x *model.Machine) (bool, []model.Event, error) {
		if !samePlace(x, m) || (still != nil && !still(x)) {
			return false, nil, errStale
		}
		fn(x)
		if m.Version > x.Status.ObservedVersion {
			x.Status.ObservedVersion = m.Version
		}
		events := make([]model.Event, len(evs))
		for i, e := range evs {
			if e.Phase == "" {
				e.Phase, e.Step = x.Status.Phase, x.Status.Step
			}
			events[i] = e
		}
		return false, events, nil
	})
	switch {
	case err == nil:
	case errors.Is(err, errStale):
		r.q.add(m.Name)
		return nil, err
	case errors.Is(err, store.ErrNotFound):
		r.forget(m.Name)
		return nil, err
	default:
		if ctx.Err() == nil && !errors.Is(err, store.ErrMACInUse) {
			r.log.Error("writing machine status failed", "machine", m.Name, "err", err)
			r.q.addAfter(m.Name, r.cfg.RetryBase)
		}
		return nil, err
	}
	r.q.add(m.Name)
	return out, nil
}

// appendEvent records e. The write is not cancelled with ctx: an event
// describes something already done (a status write, a power action), and a
// shutdown in between must not erase the record of it.
func (r *Reconciler) appendEvent(ctx context.Context, e model.Event) {
	if _, err := r.st.AppendEvent(context.WithoutCancel(ctx), e); err != nil {
		r.log.Error("recording event failed", "machine", e.Machine, "type", e.Type, "err", err)
	}
}

// samePlace reports whether a stored machine is still at the point a
// decision was made on: same phase and step, same run (and token state),
// same spec version and deletion mark.
func samePlace(a, b *model.Machine) bool {
	return a.Status.Phase == b.Status.Phase && a.Status.Step == b.Status.Step &&
		runID(a) == runID(b) && tokenUsed(a) == tokenUsed(b) &&
		a.Version == b.Version && a.DeletionRequested.Equal(b.DeletionRequested)
}

func runID(m *model.Machine) string {
	if m.Run == nil {
		return ""
	}
	return m.Run.ID
}

func tokenUsed(m *model.Machine) bool { return m.Run != nil && m.Run.TokenUsed }

func setPhase(m *model.Machine, ph model.Phase, s model.Step, now time.Time) {
	if m.Status.Phase != ph {
		m.Status.PhaseSince = now
		// What the phase expects of the power changed: the next poll judges.
		m.Status.PowerDrift = false
	}
	m.Status.Phase, m.Status.Step = ph, s
}

func phaseEvent(m *model.Machine, ph model.Phase, s model.Step, why string) model.Event {
	from := string(m.Status.Phase)
	if m.Status.Step != "" {
		from += "/" + string(m.Status.Step)
	}
	d := map[string]string{"from": from}
	if id := runID(m); id != "" {
		d["run"] = id
	}
	return model.Event{Type: model.EventPhaseChanged, Phase: ph, Step: s, Message: why, Data: d}
}

func newRun(t target, now time.Time) (*model.Run, error) {
	id, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	tok, err := randomHex(32)
	if err != nil {
		return nil, err
	}
	return &model.Run{ID: id, Token: tok, Profile: t.Profile, ProfileVersion: t.Version, ParamsHash: t.ParamsHash, Snippets: t.Snippets, StartedAt: now, Clean: t.Clean}, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := cryptorand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// redfishBootMode is the BootSourceOverrideMode a machine's boot_mode asks
// for; unset keeps what the BMC reports.
func redfishBootMode(m model.BootMode) bmc.BootMode {
	switch m {
	case model.BootModeUEFI:
		return bmc.BootModeUEFI
	case model.BootModeLegacy:
		return bmc.BootModeLegacy
	}
	return bmc.BootModeKeep
}
