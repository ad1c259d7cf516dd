package bmc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/stmcginnis/gofish/schemas"

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
		return &Error{Endpoint: scrub(displayEndpoint(c.Endpoint), c.Password), Op: "power",
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
		if err := m.reset(ctx, t, sys, c, a, schemas.ForceOffResetType); err != nil {
			return err
		}
		if err := m.waitPower(ctx, t, PowerForceOff, schemas.OffPowerState, m.cfg.PowerWaitTimeout); err != nil {
			return err
		}
		on, _ := chooseReset(PowerOn, allowed, schemas.OffPowerState)
		if err := m.reset(ctx, t, sys, c, a, on); err != nil {
			return err
		}
		return m.waitPower(ctx, t, a, want, m.cfg.PowerWaitTimeout)
	}
	if err := m.reset(ctx, t, sys, c, a, rt); err != nil {
		return err
	}
	if a != PowerGracefulShutdown || rt != schemas.GracefulShutdownResetType {
		return m.waitPower(ctx, t, a, want, m.cfg.PowerWaitTimeout)
	}

	// The OS may ignore the ACPI request; fall back to ForceOff.
	err = m.waitPower(ctx, t, a, want, m.cfg.GracefulTimeout)
	if !errors.Is(err, errPowerNotReached) {
		return err
	}
	force, ok := chooseReset(PowerForceOff, allowed, schemas.OnPowerState)
	if !ok {
		return err
	}
	m.log.Warn("BMC graceful shutdown timed out; forcing off", "endpoint", c.Endpoint, "after", m.cfg.GracefulTimeout)
	if err := m.reset(ctx, t, sys, c, a, force); err != nil {
		return err
	}
	return m.waitPower(ctx, t, a, want, m.cfg.PowerWaitTimeout)
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

func (m *Manager) reset(ctx context.Context, t *target, sys *schemas.ComputerSystem, c model.BMC, a PowerAction, rt schemas.ResetType) error {
	// An action is not a resource update: If-Match on it only invites a
	// spurious 412 once the power state (and so the ETag) has moved.
	sys.DisableEtagMatch(true)
	m.log.Info("BMC reset", "endpoint", c.Endpoint, "action", a, "reset_type", rt)
	if _, err := sys.Reset(rt); err != nil {
		return err
	}
	return nil
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
