package api

import "context"

// Actions carries out machine actions (power_on, power_off, reset,
// provision, deprovision). The reconciler implements it; the handlers only
// validate and forward, so every BMC decision stays in one place.
type Actions interface {
	MachineAction(ctx context.Context, name, action string) error
}
