package provision

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/bmc"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

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

func (r *Reconciler) setBoot(ctx context.Context, m *model.Machine, p plan, t bmc.BootTarget) {
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
		evs := []model.Event{phaseEvent(m, p.Phase, p.Step, p.Reason)}
		cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeouts.Inspect)
		inv, err := r.readInventory(cctx, m.BMC)
		cancel()
		if err != nil {
			r.log.Warn("re-reading the inventory before power-on failed", "machine", m.Name, "err", err)
		} else {
			evs = append(evs, driftEvents(m, inv)...)
		}
		r.commit(ctx, m, func(x *model.Machine) {
			setPhase(x, p.Phase, p.Step, now)
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
		setPhase(x, p.Phase, p.Step, now)
		x.Status.LastError = ""
		x.Status.ProvisionedProfile = run.Profile
		x.Status.ProvisionedProfileVersion = run.ProfileVersion
		x.Status.ProvisionedParamsHash = run.ParamsHash
		x.Status.ProvisionedAt = now
		x.Status.PowerState = model.PowerOn
		x.Status.PowerCheckedAt = now
		x.Status.PowerDrift = false
	}, phaseEvent(m, p.Phase, p.Step, p.Reason)); ok {
		r.met.transitions.WithLabelValues(string(p.Phase), string(p.Step)).Inc()
	}
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
