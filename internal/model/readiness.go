package model

import (
	"fmt"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// Converged reports whether the machine's status reflects its current spec
// and has reached its desired state, so clients wait on one answer instead
// of each re-deriving it from phase and power. A machine left to its
// cluster (no boot profile of its own) is done once it is registered and
// inventoried: its cluster provisions it in role order.
func (m *Machine) Converged() bool {
	if m.Status.ObservedVersion < m.Version {
		return false
	}
	switch m.State {
	case StateProvisioned:
		if m.BootProfile == "" && m.Status.Phase == PhaseAvailable {
			return true
		}
		return m.Status.Phase == PhaseProvisioned && m.Status.PowerState != api.PowerOff
	case StateOff:
		return m.Status.Phase == PhaseOff && m.Status.PowerState != api.PowerOn
	default:
		return m.Status.Phase == Phase(m.State)
	}
}

// ClusterReadiness is a cluster's status as published: the reconciler's
// last verdict checked against its members' live status, which may have
// moved on since.
type ClusterReadiness struct {
	Phase   api.ClusterPhase
	Message string
	// Converged is Phase ready with every member running its role's
	// current spec: a ready verdict written before a member's spec changed
	// does not count.
	Converged bool
}

// Readiness computes the cluster's published status from the reconciler's
// verdict (c.Status) and the members' machines (absent ones are missing).
func (c *Cluster) Readiness(machines map[string]*Machine) ClusterReadiness {
	profileOf := make(map[string]string, len(c.Roles))
	for _, r := range c.Roles {
		profileOf[r.Name] = r.BootProfile
	}
	provisioned, current := 0, 0
	var failed, missing []string
	firstErr := ""
	for _, mem := range c.Members {
		m := machines[mem.Machine]
		if m == nil {
			missing = append(missing, mem.Machine)
			continue
		}
		switch m.Status.Phase {
		case PhaseProvisioned:
			provisioned++
			if memberCurrent(m, profileOf[mem.Role]) {
				current++
			}
		case PhaseFailed:
			failed = append(failed, mem.Machine)
			if firstErr == "" {
				firstErr = m.Status.LastError
			}
		}
	}
	// Only the reconciler knows whether provisioned members run their
	// current target; its verdict stands until a live phase contradicts it.
	confirmed := 0
	if api.ClusterPhase(c.Status.Phase) == api.ClusterReady {
		confirmed = provisioned
	}
	out := ClusterReadiness{Phase: ClusterPhaseOf(len(c.Members), len(failed), confirmed)}
	switch out.Phase {
	case api.ClusterPending:
		out.Message = "the cluster has no members"
	case api.ClusterPaused:
		out.Message = fmt.Sprintf("rollout paused: member %s failed", failed[0])
		if firstErr != "" {
			out.Message += ": " + firstErr
		}
	case api.ClusterReady:
		out.Message = fmt.Sprintf("all %d members provisioned", provisioned)
		out.Converged = current == len(c.Members)
	default:
		out.Message = fmt.Sprintf("%d of %d members provisioned", provisioned, len(c.Members))
		switch {
		case len(missing) > 0:
			out.Message += fmt.Sprintf("; member machine %s is missing", missing[0])
		case api.ClusterPhase(c.Status.Phase) == api.ClusterConverging && c.Status.Message != "":
			out.Message = c.Status.Message
		case provisioned == len(c.Members):
			out.Message += "; waiting for the reconciler to confirm they run the current spec"
		}
	}
	return out
}

// ClusterPhaseOf is the one rule for a cluster's phase, from how many
// members it has, how many failed and how many are ready. The reconciler
// counts members running their current target; the API counts those its
// verdict confirmed that are still provisioned.
func ClusterPhaseOf(members, failed, ready int) api.ClusterPhase {
	switch {
	case members == 0:
		return api.ClusterPending
	case failed > 0:
		return api.ClusterPaused
	case ready == members:
		return api.ClusterReady
	default:
		return api.ClusterConverging
	}
}

// memberCurrent reports whether a provisioned member has acted on its
// latest spec and was installed with its role's profile (want).
func memberCurrent(m *Machine, want string) bool {
	if m.Status.ObservedVersion < m.Version {
		return false
	}
	return want == "" || m.Status.ProvisionedProfile == "" || m.Status.ProvisionedProfile == want
}
