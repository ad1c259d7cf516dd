package api

import (
	"context"
	"errors"
)

// Actions carries out machine actions (power_on, power_off, reset,
// provision, deprovision). The reconciler implements it; the handlers only
// validate and forward, so every BMC decision stays in one place.
type Actions interface {
	MachineAction(ctx context.Context, name, action string) error
}

// ErrActionRejected is what an Actions implementation wraps when a machine
// cannot take the action now (e.g. it is being deleted); store.ErrConflict
// works the same. The API answers those 409, store.ErrNotFound 404, and any
// other error 502 (the action failed on the way, e.g. at the BMC). Every
// error's text goes to the caller, so it must be fit for an operator and
// hold no secrets.
var ErrActionRejected = errors.New("action rejected")
