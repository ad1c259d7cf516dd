package provider

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
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
			require.Equal(t, api.PhaseProvisioned, m.Phase)

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

// TestAccRecoverUnreachableEndpoint (D2): a machine created with a BMC
// endpoint where nothing answers fails its create; fixing the endpoint and
// applying again replaces the failed machine at once (it was never powered
// on, so nothing waits for a power-off) and installs it. Later the BMC
// moves to another address: the new endpoint is an in-place update, with
// no power action and no reinstall.
func TestAccRecoverUnreachableEndpoint(t *testing.T) {
	a := testAgent(t)
	f := recoveryLab(t, a)
	lm := f.machine(t, 27)
	dead := lm
	dead.Endpoint = "http://" + testenv.FreeTCP(t).Release() + "/redfish/v1/Systems/1" // nothing listens there
	// The same BMC, reached at a second address.
	moved := lm
	second := httptest.NewServer(f.lab.Handler())
	t.Cleanup(second.Close)
	moved.Endpoint = strings.Replace(lm.Endpoint, f.srv.URL, second.URL, 1)
	require.NotEqual(t, lm.Endpoint, moved.Endpoint)
	var before time.Time
	cfg := func(m lab.InventoryEntry, create string) string {
		return a.providerConfig() + profileConfig(a, "p", "rec-unreach-p", "quiet") + woMachineConfig("m", "rec-unreach", m, lm.Password, 1, fmt.Sprintf(`
  boot_profile = baremetal_boot_profile.p.name
  timeouts {
    create = %q
  }
`, create))
	}
	const res = "baremetal_machine.m"
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		CheckDestroy:             checkMachinesGoneAndOff(a, map[string]lab.InventoryEntry{"rec-unreach": lm}),
		Steps: []resource.TestStep{
			{
				Config:      cfg(dead, "20s"),
				ExpectError: regexp.MustCompile(`(?s)Unable to Create Machine "rec-unreach"`),
			},
			{
				Config: cfg(lm, "5m"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionReplace)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("phase"), knownvalue.StringExact("provisioned")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("bmc_status"), knownvalue.StringExact("ok")),
				},
			},
			{
				PreConfig: func() { before = time.Now() },
				Config:    cfg(moved, "5m"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("phase"), knownvalue.StringExact("provisioned")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("bmc").AtMapKey("endpoint"), knownvalue.StringExact(moved.Endpoint)),
				},
				Check: func(*terraform.State) error {
					if resets, patches := f.powerActions(lm.Name, before); resets+patches != 0 {
						return fmt.Errorf("the BMC saw %d resets and %d boot overrides after the move, want none", resets, patches)
					}
					return nil
				},
			},
		},
	})
}
