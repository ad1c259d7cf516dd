package provision

import (
	"context"
	"errors"
	"fmt"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/bmc"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

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
	s := r.stateOf(name)
	s.cluster = m.Cluster
	wait := s.notBefore.Sub(r.cfg.Now())
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
	polled := r.stateOf(m.Name).lastPoll
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
		r.inspect(ctx, m, p)
	case opSetBootPXE:
		r.setBoot(ctx, m, p, bmc.BootPXE)
	case opSetBootDisk:
		r.setBoot(ctx, m, p, bmc.BootDisk)
	case opPowerOn:
		r.powerOn(ctx, m, p)
	case opPowerOff:
		r.powerOff(ctx, m, p)
	case opPollPower:
		r.pollPower(ctx, m)
	case opStall:
		r.noteStall(ctx, m, p)
	case opRebootToOS:
		r.rebootToOS(ctx, m, p)
	case opForget:
		r.forgetDeleted(ctx, m, p.Reason)
	case opReinspect:
		r.reinspect(ctx, m)
	}
}
