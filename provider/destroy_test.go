package provider

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// TestAccDestroyWithFailingBMC (D2): an installed machine whose BMC stops
// answering is destroyed by an ordinary destroy after the agent's bounded
// power-off retries, with a warning that the server may still run; with
// force_destroy it is removed at once, with no request to its BMC.
func TestAccDestroyWithFailingBMC(t *testing.T) {
	a := testAgent(t)
	f := recoveryLab(t, a)
	for _, tc := range []struct {
		n     int
		name  string
		force bool
	}{
		{n: 25, name: "rec-dead-bmc"},
		{n: 26, name: "rec-force", force: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lm := f.machine(t, tc.n)
			root := t.TempDir()
			cfg := profileConfig(a, "p", tc.name+"-p", "quiet") + woMachineConfig("m", tc.name, lm, lm.Password, 1, fmt.Sprintf(`
  boot_profile  = baremetal_boot_profile.p.name
  force_destroy = %t
`, tc.force))
			require.NoError(t, os.WriteFile(filepath.Join(root, "main.tf"), []byte(requiredProvider+cfg), 0o644))
			tf := newTerraformCLI(t, a, root)
			t.Cleanup(func() {
				f.lab.SetFault(lm.Name, lab.Fault{})
				tf.run("destroy", "-auto-approve", "-input=false")
			})
			tf.mustRun("apply", "-auto-approve", "-input=false")
			m, err := a.client.GetMachine(testCtx(t), tc.name)
			require.NoError(t, err)
			require.Equal(t, string(model.PhaseProvisioned), m.Phase)

			// The BMC now answers every request with 503.
			f.lab.SetFault(lm.Name, lab.Fault{Fail503Next: 1 << 30})
			since := time.Now()
			out := tf.mustRun("destroy", "-auto-approve", "-input=false")
			took := time.Since(since)
			_, err = a.client.GetMachine(testCtx(t), tc.name)
			require.ErrorIs(t, err, client.ErrNotFound)
			// Power polls may still reach the BMC; power actions are what
			// a destroy sends.
			resets, refused := 0, 0
			for _, r := range f.lab.Requests() {
				if r.System != lm.Name || r.Start.Before(since) {
					continue
				}
				if r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/Actions/ComputerSystem.Reset") {
					resets++
				}
				if r.Status == http.StatusServiceUnavailable {
					refused++
				}
			}
			t.Logf("%s: destroyed in %s; the BMC refused %d requests, got %d resets", tc.name, took.Round(100*time.Millisecond), refused, resets)
			if tc.force {
				require.Zero(t, resets, "force_destroy must not try a power-off")
				require.NotContains(t, string(out), "Deleted Without a Power-Off")
				return
			}
			require.NotZero(t, refused, "the agent must have tried the power-off")
			require.Contains(t, string(out), `Machine "`+tc.name+`" Deleted Without a Power-Off`)
			require.Contains(t, string(out), "may still be running")
		})
	}
}

const requiredProvider = `
terraform {
  required_providers {
    baremetal = {
      source = "openbaremetal/baremetal"
    }
  }
}
`
