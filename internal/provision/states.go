package provision

import (
	"errors"
	"fmt"
	"slices"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// allowed is the machine state table, Ironic style: the phases a machine
// may move to from each phase. A move within a phase (a run's step) is not
// a transition here. decide, decideCallback and the executors name the
// moves; this table is what they are checked against, by
// TestTransitionsDeclared on every plan they produce and at run time by
// guardTransition on every status write, so a new move is a deliberate
// edit here rather than a side effect of a change elsewhere.
//
// Every phase may move to provisioning: the provision action starts a
// run from wherever the machine is (see provisionNow).
var allowed = map[model.Phase][]model.Phase{
	// A machine not yet seen by the reconciler has the empty phase, which
	// counts as registering (see fromPhase).
	model.PhaseRegistering: {model.PhaseInspecting, model.PhaseProvisioning},
	model.PhaseInspecting: {model.PhaseAvailable, model.PhaseDeprovisioning, model.PhaseFailed,
		model.PhaseProvisioning},
	model.PhaseAvailable: {model.PhaseProvisioning, model.PhaseProvisioned, model.PhaseDeprovisioning,
		model.PhaseFailed},
	model.PhaseOff: {model.PhaseAvailable, model.PhaseProvisioning, model.PhaseDeprovisioning,
		model.PhaseFailed},
	model.PhaseProvisioning: {model.PhaseProvisioned, model.PhaseAvailable, model.PhaseDeprovisioning,
		model.PhaseFailed},
	model.PhaseProvisioned: {model.PhaseProvisioning, model.PhaseDeprovisioning, model.PhaseFailed},
	model.PhaseDeprovisioning: {model.PhaseAvailable, model.PhaseOff, model.PhaseFailed,
		model.PhaseProvisioning},
	model.PhaseFailed: {model.PhaseInspecting, model.PhaseDeprovisioning, model.PhaseProvisioning},
}

// errUndeclared refuses a status write that would move a machine along a
// transition the state table does not declare.
var errUndeclared = errors.New("transition not declared in the state table")

// fromPhase is the table's name for a stored phase.
func fromPhase(ph model.Phase) model.Phase {
	if ph == "" {
		return model.PhaseRegistering
	}
	return ph
}

// checkTransition reports whether the table lets a machine move from one
// phase to another; staying in a phase is always allowed.
func checkTransition(from, to model.Phase) error {
	from = fromPhase(from)
	if from == to || slices.Contains(allowed[from], to) {
		return nil
	}
	return fmt.Errorf("%w: %s → %s", errUndeclared, from, orDash(string(to)))
}

// guardTransition is checkTransition for a store write in progress: from
// is the stored phase before the write, x the machine about to be
// written. The refusal is logged here, since some of the writers' callers
// (the boot edge) only see an error.
func (r *Reconciler) guardTransition(from model.Phase, x *model.Machine) error {
	err := checkTransition(from, x.Status.Phase)
	if err != nil {
		r.log.Error("status write refused", "machine", x.Name, "step", x.Status.Step, "err", err)
	}
	return err
}
