package model

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

func TestMachineConverged(t *testing.T) {
	cases := []struct {
		name    string
		state   DesiredState
		profile string
		status  Status
		version uint64
		want    bool
	}{
		{"provisioned and on", StateProvisioned, "p", Status{Phase: PhaseProvisioned, PowerState: "On"}, 0, true},
		{"provisioned, power unknown", StateProvisioned, "p", Status{Phase: PhaseProvisioned}, 0, true},
		{"provisioned but powered off", StateProvisioned, "p", Status{Phase: PhaseProvisioned, PowerState: "Off"}, 0, false},
		{"still provisioning", StateProvisioned, "p", Status{Phase: PhaseProvisioning, PowerState: "On"}, 0, false},
		{"available waits for its own profile", StateProvisioned, "p", Status{Phase: PhaseAvailable}, 0, false},
		{"available is enough without a profile (its cluster's)", StateProvisioned, "", Status{Phase: PhaseAvailable}, 0, true},
		{"off and off", StateOff, "p", Status{Phase: PhaseOff, PowerState: "Off"}, 0, true},
		{"off phase but power on", StateOff, "p", Status{Phase: PhaseOff, PowerState: "On"}, 0, false},
		{"available, any power", StateAvailable, "p", Status{Phase: PhaseAvailable, PowerState: "On"}, 0, true},
		{"inspecting is not available", StateAvailable, "p", Status{Phase: PhaseInspecting}, 0, false},
		{"status predates the spec", StateProvisioned, "p", Status{Phase: PhaseProvisioned, ObservedVersion: 2}, 3, false},
		{"status reflects the spec", StateProvisioned, "p", Status{Phase: PhaseProvisioned, ObservedVersion: 3}, 3, true},
		{"failed", StateProvisioned, "p", Status{Phase: PhaseFailed, ObservedVersion: 3}, 3, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &Machine{State: tc.state, BootProfile: tc.profile, Version: tc.version, Status: tc.status}
			assert.Equal(t, tc.want, m.Converged())
		})
	}
}

func TestClusterReadiness(t *testing.T) {
	member := func(name string, phase Phase, observed, version uint64, profile, lastErr string) *Machine {
		return &Machine{Name: name, State: StateProvisioned, Version: version, Status: Status{
			Phase: phase, ObservedVersion: observed, ProvisionedProfile: profile, LastError: lastErr,
		}}
	}
	two := []ClusterMember{{Machine: "a", Role: "cp"}, {Machine: "b", Role: "worker"}}
	roles := []ClusterRole{{Name: "cp", BootProfile: "cp-os"}, {Name: "worker", BootProfile: "worker-os"}}
	ready := ClusterStatus{Phase: string(api.ClusterReady)}
	cases := []struct {
		name     string
		members  []ClusterMember
		status   ClusterStatus
		machines map[string]*Machine
		want     ClusterReadiness
	}{
		{
			name: "no members", status: ready,
			want: ClusterReadiness{Phase: api.ClusterPending, Message: "the cluster has no members"},
		},
		{
			name: "ready and current", members: two, status: ready,
			machines: map[string]*Machine{"a": member("a", PhaseProvisioned, 2, 2, "cp-os", ""), "b": member("b", PhaseProvisioned, 1, 1, "worker-os", "")},
			want:     ClusterReadiness{Phase: api.ClusterReady, Message: "all 2 members provisioned", Converged: true},
		},
		{
			name: "ready verdict predates a member's spec", members: two, status: ready,
			machines: map[string]*Machine{"a": member("a", PhaseProvisioned, 1, 2, "cp-os", ""), "b": member("b", PhaseProvisioned, 1, 1, "worker-os", "")},
			want:     ClusterReadiness{Phase: api.ClusterReady, Message: "all 2 members provisioned"},
		},
		{
			name: "member installed with another profile", members: two, status: ready,
			machines: map[string]*Machine{"a": member("a", PhaseProvisioned, 1, 1, "old-os", ""), "b": member("b", PhaseProvisioned, 1, 1, "worker-os", "")},
			want:     ClusterReadiness{Phase: api.ClusterReady, Message: "all 2 members provisioned"},
		},
		{
			name: "failed member pauses", members: two, status: ready,
			machines: map[string]*Machine{"a": member("a", PhaseFailed, 1, 1, "", "disk gone"), "b": member("b", PhaseProvisioned, 1, 1, "worker-os", "")},
			want:     ClusterReadiness{Phase: api.ClusterPaused, Message: "rollout paused: member a failed: disk gone"},
		},
		{
			name: "missing member", members: two, status: ready,
			machines: map[string]*Machine{"b": member("b", PhaseProvisioned, 1, 1, "worker-os", "")},
			want:     ClusterReadiness{Phase: api.ClusterConverging, Message: "1 of 2 members provisioned; member machine a is missing"},
		},
		{
			name: "reconciler's converging message", members: two,
			status:   ClusterStatus{Phase: string(api.ClusterConverging), Message: "role cp: 0 of 1 members provisioned (max_unavailable 1)"},
			machines: map[string]*Machine{"a": member("a", PhaseProvisioning, 1, 1, "", ""), "b": member("b", PhaseAvailable, 1, 1, "", "")},
			want:     ClusterReadiness{Phase: api.ClusterConverging, Message: "role cp: 0 of 1 members provisioned (max_unavailable 1)"},
		},
		{
			name: "provisioned before the reconciler confirmed", members: two,
			status:   ClusterStatus{Phase: string(api.ClusterConverging)},
			machines: map[string]*Machine{"a": member("a", PhaseProvisioned, 1, 1, "cp-os", ""), "b": member("b", PhaseProvisioned, 1, 1, "worker-os", "")},
			want:     ClusterReadiness{Phase: api.ClusterConverging, Message: "2 of 2 members provisioned; waiting for the reconciler to confirm they run the current spec"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cluster{Members: tc.members, Roles: roles, Status: tc.status}
			assert.Equal(t, tc.want, c.Readiness(tc.machines))
		})
	}
}

func TestClusterPhaseOf(t *testing.T) {
	cases := []struct {
		name                   string
		members, failed, ready int
		want                   api.ClusterPhase
	}{
		{"no members", 0, 0, 0, api.ClusterPending},
		{"a failure pauses even when the rest are ready", 3, 1, 2, api.ClusterPaused},
		{"all ready", 3, 0, 3, api.ClusterReady},
		{"some not ready", 3, 0, 2, api.ClusterConverging},
		{"none ready", 3, 0, 0, api.ClusterConverging},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, ClusterPhaseOf(tc.members, tc.failed, tc.ready))
		})
	}
}
