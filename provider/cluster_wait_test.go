package provider

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// TestRetryPending: a paused cluster is waited on only while a failed
// member's retry has not been acted on.
func TestRetryPending(t *testing.T) {
	cases := []struct {
		name    string
		members []api.ClusterMemberStatus
		want    bool
	}{
		{"no members", nil, false},
		{"failed, retry not yet observed", []api.ClusterMemberStatus{{Phase: api.PhaseFailed, Version: 3, ObservedVersion: 2}}, true},
		{"failed again after the retry", []api.ClusterMemberStatus{{Phase: api.PhaseFailed, Version: 3, ObservedVersion: 3}}, false},
		{"a healthy member's new spec is no retry", []api.ClusterMemberStatus{
			{Phase: api.PhaseProvisioning, Version: 3, ObservedVersion: 2},
			{Phase: api.PhaseFailed, Version: 1, ObservedVersion: 1},
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, retryPending(&api.Cluster{Members: tc.members}))
		})
	}
}
