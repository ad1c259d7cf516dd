package provider

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-log/tflogtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// TestAwaitShowsBootStall: the agent's stall note reaches the user of a
// waiting apply twice: as a warning in the provider's log the moment it
// appears, and in the error when the apply's timeout ends the wait.
func TestAwaitShowsBootStall(t *testing.T) {
	lab := newLeaseLab(t)
	c := lab.client(t, "run-a")
	ctx := context.Background()
	m, err := c.CreateMachine(ctx, leaseMachineRequest("m1"))
	require.NoError(t, err)
	setStatus := func(lastError string) {
		_, err := lab.store.UpdateMachine(ctx, "m1", func(x *model.Machine) (bool, error) {
			x.Status.Phase, x.Status.Step, x.Status.ObservedVersion = model.PhaseProvisioning, model.StepInstalling, x.Version
			x.Status.LastError = lastError
			return false, nil
		})
		require.NoError(t, err)
	}
	setStatus("")
	const stall = "kernel and initrd served 5m ago, no template fetched since: the kernel may not have started; check the console"
	// Written while the wait is under way, as the agent's reconciler does.
	time.AfterFunc(500*time.Millisecond, func() { setStatus(stall) })

	var logs bytes.Buffer
	r := &machineResource{client: c}
	var diags diag.Diagnostics
	r.await(tflogtest.RootLogger(ctx, &logs), 3*time.Second, m, api.StateProvisioned, "Create", &diags)

	require.True(t, diags.HasError(), "the wait outlived its timeout")
	assert.Contains(t, diags[0].Detail(), "within the timeout (3s)")
	assert.Contains(t, diags[0].Detail(), "Last error: "+stall)

	entries, err := tflogtest.MultilineJSONDecode(&logs)
	require.NoError(t, err)
	var warned []string
	for _, e := range entries {
		if e["@level"] == "warn" {
			warned = append(warned, as[string](t, e["last_error"]))
		}
	}
	assert.Equal(t, []string{stall}, warned, "one warning, when the note appeared")
}
