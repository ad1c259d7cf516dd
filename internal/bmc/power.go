package bmc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/stmcginnis/gofish/schemas"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/endpoint"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// forceOffThenOn is the last-resort substitute for a restart: two resets.
const forceOffThenOn schemas.ResetType = "ForceOff+On"

// substitutes lists, per action, the reset types that achieve it in order of
// preference. A BMC's ResetType@Redfish.AllowableValues often omits some
// (HPE iLO 5 has no GracefulShutdown or PowerCycle; Supermicro X10 no
// PowerCycle), and a type outside that list must never be sent.
var substitutes = map[PowerAction][]schemas.ResetType{
	// PushPowerButton is last: it toggles, so it is only ever sent to a
	// system observed Off.
	PowerOn:               {schemas.OnResetType, schemas.ForceOnResetType, schemas.PushPowerButtonResetType},
	PowerForceOff:         {schemas.ForceOffResetType},
	PowerGracefulShutdown: {schemas.GracefulShutdownResetType, schemas.ForceOffResetType},
	PowerForceRestart:     {schemas.ForceRestartResetType, schemas.PowerCycleResetType, forceOffThenOn},
	PowerCycle:            {schemas.PowerCycleResetType, schemas.ForceRestartResetType, forceOffThenOn},
}

// wantedState is the PowerState an action ends in.
func wantedState(a PowerAction) schemas.PowerState {
	if a == PowerForceOff || a == PowerGracefulShutdown {
		return schemas.OffPowerState
	}
	return schemas.OnPowerState
}

// Power performs a power action, choosing among the reset types the system
// allows, and returns once the BMC reports the resulting PowerState (On for
// On, ForceRestart and PowerCycle; Off for ForceOff and GracefulShutdown).
// An action whose result already holds is a no-op; a restart of a system
// that is Off powers it on.
func (m *Manager) Power(ctx context.Context, c model.BMC, a PowerAction) error {
	if _, ok := substitutes[a]; !ok {
		return &Error{Endpoint: scrub(endpoint.Display(c.Endpoint), c.Password), Op: "power",
			Msg: fmt.Sprintf("unknown power action %q", a), Err: ErrUnsupported}
	}
	return m.do(ctx, "power", "power "+string(a), c, func(ctx context.Context, t *target) error {
		return m.power(ctx, t, c, a)
	})
}

func (m *Manager) power(ctx context.Context, t *target, c model.BMC, a PowerAction) error {
	sys, err := t.system()
	if err != nil {
		return err
	}
	want := wantedState(a)
	state := sys.PowerState
	switch {
	case (a == PowerOn || a == PowerForceOff || a == PowerGracefulShutdown) && state == want:
		m.log.Debug("BMC power action already satisfied", "endpoint", c.Endpoint, "action", a, "state", state)
		return nil
	case a == PowerOn && state == schemas.PoweringOnPowerState,
		want == schemas.OffPowerState && state == schemas.PoweringOffPowerState:
		return m.waitPower(ctx, t, a, want, m.cfg.PowerWaitTimeout)
	case (a == PowerForceRestart || a == PowerCycle) && state == schemas.OffPowerState:
		// Resetting a system that is off does not start it on every BMC;
		// the intent, a fresh boot, is an On.
		a = PowerOn
	}

	allowed, err := sys.GetSupportedResetTypes()
	if err != nil {
		m.log.Warn("BMC reset ActionInfo unreadable; trying reset types unchecked",
			"endpoint", c.Endpoint, "error", scrub(sessionFailure(err), c.Password))
		allowed = nil
	}
	rt, ok := chooseReset(a, allowed, state)
	if !ok {
		return &Error{Msg: fmt.Sprintf("no reset type achieves %s (the system allows %v)", a, allowed), Err: ErrUnsupported}
	}

	if rt == forceOffThenOn {
		if err := m.reset(ctx, t, sys, c, a, schemas.ForceOffResetType, schemas.OffPowerState); err != nil {
			return err
		}
		if err := m.waitPower(ctx, t, PowerForceOff, schemas.OffPowerState, m.cfg.PowerWaitTimeout); err != nil {
			return afterSent(schemas.ForceOffResetType, err)
		}
		on, _ := chooseReset(PowerOn, allowed, schemas.OffPowerState)
		if sys, err = t.system(); err != nil {
			return afterSent(schemas.ForceOffResetType, err)
		}
		if err := m.reset(ctx, t, sys, c, a, on, want); err != nil {
			return err
		}
		return afterSent(on, m.waitPower(ctx, t, a, want, m.cfg.PowerWaitTimeout))
	}
	if err := m.reset(ctx, t, sys, c, a, rt, want); err != nil {
		return err
	}
	if a != PowerGracefulShutdown || rt != schemas.GracefulShutdownResetType {
		return afterSent(rt, m.waitPower(ctx, t, a, want, m.cfg.PowerWaitTimeout))
	}

	// The OS may ignore the ACPI request; fall back to ForceOff.
	err = m.waitPower(ctx, t, a, want, m.cfg.GracefulTimeout)
	if !errors.Is(err, errPowerNotReached) {
		return afterSent(rt, err)
	}
	force, ok := chooseReset(PowerForceOff, allowed, schemas.OnPowerState)
	if !ok {
		return err
	}
	m.log.Warn("BMC graceful shutdown timed out; forcing off", "endpoint", c.Endpoint, "after", m.cfg.GracefulTimeout)
	if sys, err = t.system(); err != nil {
		return afterSent(rt, err)
	}
	if err := m.reset(ctx, t, sys, c, a, force, want); err != nil {
		return err
	}
	return afterSent(force, m.waitPower(ctx, t, a, want, m.cfg.PowerWaitTimeout))
}

// afterSent shapes a failure that came after the BMC accepted a reset: the
// action may be under way, so unless the state provably never moved it is
// unknown, and not to be sent again blind.
func afterSent(rt schemas.ResetType, err error) error {
	if err == nil || errors.Is(err, errPowerNotReached) || errors.Is(err, ErrPowerOutcomeUnknown) {
		return err
	}
	msg, _, _ := describe(err)
	var inner *Error
	if errors.As(err, &inner) {
		msg = inner.Msg
	}
	return &Error{Msg: fmt.Sprintf("%s accepted, then its result could not be read: %s", rt, msg), Err: ErrPowerOutcomeUnknown}
}

// chooseReset picks the first substitute for a the system allows. An empty
// allowed list means the BMC does not say, so the exact type is tried.
func chooseReset(a PowerAction, allowed []schemas.ResetType, state schemas.PowerState) (schemas.ResetType, bool) {
	for _, rt := range substitutes[a] {
		if rt == schemas.PushPowerButtonResetType && state != schemas.OffPowerState {
			continue
		}
		if rt == forceOffThenOn {
			if len(allowed) == 0 || slices.Contains(allowed, schemas.ForceOffResetType) &&
				(slices.Contains(allowed, schemas.OnResetType) || slices.Contains(allowed, schemas.ForceOnResetType) ||
					slices.Contains(allowed, schemas.PushPowerButtonResetType)) {
				return rt, true
			}
			continue
		}
		if len(allowed) == 0 || slices.Contains(allowed, rt) {
			return rt, true
		}
	}
	return "", false
}

// reset sends one reset. When its answer is lost (a timeout, a broken
// connection, a 5xx) the reset may or may not have been carried out, and a
// second one could cut short the boot the first began: the system is read
// again for evidence instead, and without evidence either way the outcome
// is reported unknown rather than the reset sent again.
func (m *Manager) reset(ctx context.Context, t *target, sys *schemas.ComputerSystem, c model.BMC, a PowerAction, rt schemas.ResetType, want schemas.PowerState) error {
	// An action is not a resource update: If-Match on it only invites a
	// spurious 412 once the power state (and so the ETag) has moved.
	sys.DisableEtagMatch(true)
	before := evidenceOf(sys)
	m.log.Info("BMC reset", "endpoint", c.Endpoint, "action", a, "reset_type", rt)
	_, err := sys.Reset(rt)
	if err == nil || !answerLost(err) {
		return err
	}
	lost, _, _ := describe(err)
	m.log.Warn("BMC reset answer lost; reading the system for evidence instead of sending it again",
		"endpoint", c.Endpoint, "reset_type", rt, "error", scrub(lost, c.Password))
	done, why, proved := m.resetEvidence(ctx, t, before, rt, want)
	switch {
	case done:
		m.log.Info("BMC reset carried out despite the lost answer", "endpoint", c.Endpoint, "reset_type", rt, "evidence", why)
		return nil
	case proved:
		return &Error{Msg: fmt.Sprintf("%s sent, answer lost (%s), and not carried out: %s", rt, lost, why), Err: errPowerNotReached}
	}
	return &Error{Msg: fmt.Sprintf("%s sent, answer lost (%s); whether it was carried out is unknown (%s), so it is not sent again",
		rt, lost, why), Err: ErrPowerOutcomeUnknown}
}

// answerLost reports a reset request that reached the BMC without a
// trustworthy answer. A 4xx is an answer: the BMC refused.
func answerLost(err error) bool {
	var al *AnswerLostError
	s := statusOf(err)
	if errors.As(err, &al) {
		return !al.Handshake // a handshake that never completed sent nothing
	}
	return s >= 500 && s != http.StatusNotImplemented
}

// resetEvidence is what a system shows of its last reset.
type resetEvidence struct {
	state     schemas.PowerState
	lastReset string // LastResetTime, when the service keeps it
	progress  string // BootProgress.LastStateTime, when the service keeps it
}

func evidenceOf(sys *schemas.ComputerSystem) resetEvidence {
	return resetEvidence{state: sys.PowerState, lastReset: sys.LastResetTime, progress: sys.BootProgress.LastStateTime}
}

func isRestart(rt schemas.ResetType) bool {
	return rt == schemas.ForceRestartResetType || rt == schemas.PowerCycleResetType || rt == schemas.GracefulRestartResetType
}

// resetEvidence polls the system until it shows the reset happened, for at
// most PowerWaitTimeout. Done: LastResetTime or BootProgress moved, or the
// PowerState moved the way the reset moves it. Proved not done: the service
// keeps LastResetTime, it did not move and neither did the PowerState.
func (m *Manager) resetEvidence(ctx context.Context, t *target, before resetEvidence, rt schemas.ResetType, want schemas.PowerState) (done bool, why string, proved bool) {
	deadline := time.Now().Add(m.cfg.PowerWaitTimeout)
	tick := time.NewTicker(m.cfg.PollInterval)
	defer tick.Stop()
	now := before
	readErr := ""
	for {
		sys, err := t.system()
		if err == nil {
			now, readErr = evidenceOf(sys), ""
			switch {
			case now.lastReset != "" && now.lastReset != before.lastReset:
				return true, "LastResetTime moved from " + orNone(before.lastReset) + " to " + now.lastReset, false
			case now.progress != "" && now.progress != before.progress:
				return true, "BootProgress moved at " + now.progress, false
			case now.state != before.state && movedToward(before.state, now.state, want, rt):
				return true, fmt.Sprintf("PowerState went from %s to %s", before.state, now.state), false
			}
		} else {
			readErr = sessionFailure(err)
		}
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	switch {
	case readErr != "":
		return false, "the system could not be read again: " + readErr, false
	case before.lastReset != "" && now.lastReset == before.lastReset && now.state == before.state:
		return false, fmt.Sprintf("LastResetTime and PowerState %s unchanged", now.state), true
	case now.state == before.state && (!isRestart(rt) || before.state != schemas.OnPowerState) && now.state != want:
		// Sending an On to a system still Off (or an Off to one still On)
		// again cannot cut short a boot.
		return false, fmt.Sprintf("PowerState still %s", now.state), true
	case before.lastReset == "" && before.progress == "":
		return false, fmt.Sprintf("the BMC keeps no LastResetTime or BootProgress and PowerState stayed %s", now.state), false
	}
	return false, fmt.Sprintf("PowerState %s, LastResetTime %s", now.state, orNone(now.lastReset)), false
}

// movedToward: a PowerState change the reset explains. A restart of a
// running system shows as it passing through Off or PoweringOn.
func movedToward(from, to, want schemas.PowerState, rt schemas.ResetType) bool {
	if isRestart(rt) && from == schemas.OnPowerState {
		return to != schemas.OnPowerState
	}
	if want == schemas.OnPowerState {
		return to == schemas.OnPowerState || to == schemas.PoweringOnPowerState
	}
	return to == schemas.OffPowerState || to == schemas.PoweringOffPowerState
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// PowerOutcome is whether a power action was carried out, as recorded in
// power_action events.
type PowerOutcome string

const (
	PowerConfirmed PowerOutcome = "confirmed"
	PowerNotDone   PowerOutcome = "not_done"
	PowerUnknown   PowerOutcome = "unknown"
)

// OutcomeOf classifies the error Power returned: nil is confirmed, an
// action whose answer was lost without evidence is unknown, anything else
// did not happen (refused, never sent, or the state never moved).
func OutcomeOf(err error) PowerOutcome {
	switch {
	case err == nil:
		return PowerConfirmed
	case errors.Is(err, ErrPowerOutcomeUnknown):
		return PowerUnknown
	}
	return PowerNotDone
}

// waitPower polls until the BMC reports want, or the timeout passes.
func (m *Manager) waitPower(ctx context.Context, t *target, a PowerAction, want schemas.PowerState, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(m.cfg.PollInterval)
	defer tick.Stop()
	var last schemas.PowerState
	for {
		sys, err := t.system()
		if err != nil {
			return err
		}
		last = sys.PowerState
		if last == want {
			return nil
		}
		if !time.Now().Before(deadline) {
			return &Error{Msg: fmt.Sprintf("the BMC accepted %s but the system still reports PowerState %q after %s",
				a, last, timeout), Err: errPowerNotReached}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for PowerState %s (last %q): %w", want, last, ctx.Err())
		case <-tick.C:
		}
	}
}
