package provider

import (
	"bytes"
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflogtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// TestPendingWhy: what keeps a machine in the plan after a refresh.
func TestPendingWhy(t *testing.T) {
	cases := []struct {
		name           string
		m              api.Machine
		desired        api.DesiredState
		clusterManaged bool
		drift          bool
		want           string
	}{
		{name: "converged", m: api.Machine{Phase: "provisioned", PowerState: "On", BMCStatus: "ok", Converged: true}, desired: "provisioned"},
		{name: "failed", m: api.Machine{Phase: "failed"}, desired: "provisioned", want: "the machine failed"},
		{name: "failed cluster member: its cluster's plan shows it", m: api.Machine{Phase: "failed"}, desired: "provisioned", clusterManaged: true},
		{name: "still installing after a timeout", m: api.Machine{Phase: "provisioning"}, desired: "provisioned", want: "phase provisioning has not reached state provisioned"},
		{name: "cluster member waiting for its cluster", m: api.Machine{Phase: "available", Converged: true}, desired: "provisioned", clusterManaged: true},
		{name: "BMC refuses", m: api.Machine{Phase: "available", BMCStatus: "auth_failed", Converged: true}, desired: "available", want: "bmc_status is auth_failed"},
		{name: "BMC unreachable", m: api.Machine{Phase: "off", BMCStatus: "unreachable", Converged: true}, desired: "off", want: "bmc_status is unreachable"},
		{name: "hardware changed", m: api.Machine{Phase: "available", BMCStatus: "ok", Converged: true}, desired: "available", drift: true, want: "the hardware fingerprint changed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, pendingWhy(&tc.m, tc.desired, tc.clusterManaged, tc.drift))
		})
	}
}

// TestTriggered: only a change to a value asks for the action.
func TestTriggered(t *testing.T) {
	assert.True(t, triggered(types.StringNull(), types.StringValue("1")))
	assert.True(t, triggered(types.StringValue("1"), types.StringValue("2")))
	assert.False(t, triggered(types.StringValue("1"), types.StringValue("1")))
	assert.False(t, triggered(types.StringValue("1"), types.StringNull()), "clearing asks for nothing")
	assert.False(t, triggered(types.StringNull(), types.StringUnknown()))
}

// TestPhaseTrackerSkipsStaleObservations: a last_error the agent wrote
// before it acted on the spec the wait is about is not shown (D8).
func TestPhaseTrackerSkipsStaleObservations(t *testing.T) {
	var logs bytes.Buffer
	tr := newPhaseTracker(tflogtest.RootLogger(context.Background(), &logs), "m1", 5)
	tr.observe(&api.Machine{Phase: "failed", LastError: "old failure", ObservedVersion: 4})
	tr.observe(&api.Machine{Phase: "inspecting", ObservedVersion: 5})
	tr.observe(&api.Machine{Phase: "inspecting", LastError: "BMC x: login refused", ObservedVersion: 5})
	entries, err := tflogtest.MultilineJSONDecode(&logs)
	require.NoError(t, err)
	var seen []string
	for _, e := range entries {
		seen = append(seen, as[string](t, e["phase"])+":"+func() string { s, _ := e["last_error"].(string); return s }())
	}
	assert.Equal(t, []string{"inspecting:", "inspecting:BMC x: login refused"}, seen)
}
