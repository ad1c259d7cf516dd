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

// rebootToOS boots the image the deploy ramdisk wrote: next boot from
// disk, then a power cycle, since the ramdisk stays up and waits for it.
// The deployed OS's callback ends the run.
func (r *Reconciler) rebootToOS(ctx context.Context, m *model.Machine, p plan) {
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
		setPhase(x, p.Phase, p.Step, now)
		x.Status.LastError = lastError
		x.Run.StepDeadline = now.Add(r.cfg.Timeouts.Install)
	}, phaseEvent(m, p.Phase, p.Step, p.Reason))
}

func (r *Reconciler) powerOn(ctx context.Context, m *model.Machine, p plan) {
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
		mine := r.stateOf(m.Name).powerIntent == m.Run.ID
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
			if _, err := r.writeStatus(ctx, m.Name, statusWrite{lock: lockNone, guard: func(x *model.Machine) error {
				if !samePlace(x, m) {
					return errStale
				}
				return nil
			}, apply: func(x *model.Machine) (bool, []model.Event, error) {
				x.Run.StepDeadline = deadline
				return false, nil, nil
			}}); err != nil {
				return err
			}
		}
		r.mu.Lock()
		r.stateOf(m.Name).powerIntent = m.Run.ID
		r.mu.Unlock()
		ps, err := r.bmc.PowerState(ctx, m.BMC)
		if err != nil {
			return err
		}
		r.mu.Lock()
		s := r.stateOf(m.Name)
		late := s.onNotDone == m.Run.ID
		s.onNotDone = ""
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
				r.stateOf(m.Name).onNotDone = m.Run.ID
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
			setPhase(x, p.Phase, p.Step, now)
			x.Status.LastError = ""
			x.Status.PowerState = model.PowerOn
			x.Run.StepDeadline = now.Add(r.cfg.Timeouts.WaitPXE)
			x.Run.PoweredOnAt = now
		}, phaseEvent(m, p.Phase, p.Step, resumed))
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
	// The lock is held until the phase event below is recorded.
	_, err := r.writeStatus(ctx, m.Name, statusWrite{lock: lockHeld, guard: func(x *model.Machine) error {
		if runID(x) != m.Run.ID {
			return errStale
		}
		return nil
	}, apply: func(x *model.Machine) (bool, []model.Event, error) {
		x.Run.PowerOns++
		x.Run.PoweredOnAt = issued
		if lost == nil {
			x.Status.PowerState = model.PowerOn
			x.Status.PowerCheckedAt = now
		}
		if moved = samePlace(x, m); moved {
			setPhase(x, p.Phase, p.Step, now)
			x.Status.LastError = lastError
			x.Run.StepDeadline = now.Add(r.cfg.Timeouts.WaitPXE)
			if m.Version > x.Status.ObservedVersion {
				x.Status.ObservedVersion = m.Version
			}
		}
		return false, nil, nil
	}})
	if err != nil && !errors.Is(err, errStale) && ctx.Err() == nil {
		r.log.Error("recording power-on failed", "machine", m.Name, "err", err)
	}
	if moved && err == nil {
		why := "powered " + string(action) + "; waiting for the PXE request"
		if lost != nil {
			why = "power " + string(action) + " outcome unknown; waiting for the PXE request"
		}
		e := phaseEvent(m, p.Phase, p.Step, why)
		e.Machine = m.Name
		r.appendEvent(ctx, e)
	}
	r.q.add(m.Name)
}

func (r *Reconciler) powerOff(ctx context.Context, m *model.Machine, p plan) {
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
	r.commit(ctx, m, func(x *model.Machine) {
		setPhase(x, p.Phase, p.Step, now)
		x.Status.LastError = ""
		x.Status.PowerState = model.PowerOff
		x.Status.PowerCheckedAt = now
		x.Status.PowerDrift = false
		if x.Run != nil {
			x.Run.TokenUsed = true
		}
	}, phaseEvent(m, p.Phase, p.Step, p.Reason))
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
	s := r.stateOf(name)
	slot := s.pollSlot
	if slot.IsZero() {
		slot = r.poll.reserve(now)
	}
	if slot.After(now) {
		s.pollSlot = slot
		return slot.Sub(now)
	}
	s.pollSlot = time.Time{}
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
	r.stateOf(m.Name).lastPoll = now
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
