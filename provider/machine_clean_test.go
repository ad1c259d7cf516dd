package provider

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// TestCleanFailedEndsTheDestroyWait: a destroy stops waiting when the
// clean run it started has failed (the agent keeps the machine), but not
// on a failure it has not seen begin: a machine already failed when the
// deletion was asked passes through deprovisioning first.
func TestCleanFailedEndsTheDestroyWait(t *testing.T) {
	failedDirty := api.Machine{Phase: "failed", CleanPending: "config-drive", LastError: "deprovision: cleaning the disk failed"}
	tests := []struct {
		name string
		seen []api.Machine
		want []bool // whether each observation ends the wait
	}{
		{name: "clean under way, then failed", seen: []api.Machine{{Phase: "provisioned", CleanPending: "config-drive"},
			{Phase: "deprovisioning", Step: "installing", CleanPending: "config-drive"}, failedDirty},
			want: []bool{false, false, true}},
		{name: "failed before the deletion", seen: []api.Machine{failedDirty, {Phase: "deprovisioning", CleanPending: "config-drive"}},
			want: []bool{false, false}},
		{name: "power-off failed after a clean", seen: []api.Machine{{Phase: "deprovisioning"}, {Phase: "failed", LastError: "power off"}},
			want: []bool{false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var deprovisioning bool
			for i, m := range tt.seen {
				err := cleanFailed(&m, &deprovisioning)
				assert.Equal(t, tt.want[i], err != nil, "observation %d: %v", i, err)
			}
		})
	}
}
