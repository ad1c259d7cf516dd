package provider

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
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

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

// machineConfig is one baremetal_machine on lab machine m with a plain
// password; body adds attributes.
func machineConfig(res, name string, m lab.InventoryEntry, body string) string {
	return fmt.Sprintf(`
resource "baremetal_machine" %q {
  name = %q
  bmc = {
    endpoint = %q
    username = %q
    password = %q
  }
%s
}
`, res, name, m.Endpoint, m.Username, m.Password, body)
}

func TestAccMachine(t *testing.T) {
	a := testAgent(t)
	lm := a.machine(t, 1)
	profiles := profileConfig(a, "p1", "acc-m-p1", "quiet") + profileConfig(a, "p2", "acc-m-p2", "quiet")
	cfg := func(profile string) string {
		return a.providerConfig() + profiles + machineConfig("m", "acc-m1", lm, fmt.Sprintf(`
  boot_profile = baremetal_boot_profile.%s.name
  params = {
    hostname = "acc-m1.lab"
  }
`, profile))
	}
	const res = "baremetal_machine.m"
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		CheckDestroy:             checkMachinesGoneAndOff(a, map[string]lab.InventoryEntry{"acc-m1": lm}),
		Steps: []resource.TestStep{
			{
				Config: cfg("p1"),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("id"), knownvalue.StringExact("acc-m1")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("state"), knownvalue.StringExact("provisioned")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("phase"), knownvalue.StringExact("provisioned")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("power_state"), knownvalue.StringExact("On")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("last_error"), knownvalue.StringExact("")),
					// Discovered from Redfish: the configuration names no MAC.
					statecheck.ExpectKnownValue(res, tfjsonpath.New("macs"), knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact(lm.MAC)})),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("inventory").AtMapKey("nics").AtSliceIndex(0).AtMapKey("mac"), knownvalue.StringExact(lm.MAC)),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("addresses"), knownvalue.ListSizeExact(1)),
					statecheck.ExpectSensitiveValue(res, tfjsonpath.New("bmc").AtMapKey("password")),
				},
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
			},
			{
				// Another profile re-provisions in place.
				Config: cfg("p2"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("boot_profile"), knownvalue.StringExact("acc-m-p2")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("phase"), knownvalue.StringExact("provisioned")),
				},
				Check: func(*terraform.State) error {
					m, err := a.client.GetMachine(context.Background(), "acc-m1")
					if err != nil {
						return err
					}
					if m.ProvisionedProfile != "acc-m-p2" {
						return fmt.Errorf("agent says acc-m1 was last installed with %q, want acc-m-p2", m.ProvisionedProfile)
					}
					return nil
				},
			},
			{
				ResourceName:      res,
				ImportState:       true,
				ImportStateId:     "acc-m1",
				ImportStateVerify: true,
				// The agent never returns a BMC password; timeouts live only in configuration.
				ImportStateVerifyIgnore: []string{"bmc.password", "timeouts"},
			},
			{
				// Powered off behind Terraform's back: the plan shows it.
				PreConfig: func() {
					if _, err := a.client.MachineAction(context.Background(), "acc-m1", api.ActionPowerOff); err != nil {
						t.Fatalf("power_off: %v", err)
					}
				},
				Config:             cfg("p2"),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{
				// Applying powers it on again.
				Config: cfg("p2"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate),
						plancheck.ExpectKnownValue(res, tfjsonpath.New("state"), knownvalue.StringExact("provisioned")),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("power_state"), knownvalue.StringExact("On")),
				},
				Check: func(*terraform.State) error {
					if p, err := redfishPower(lm); err != nil || p != "On" {
						return fmt.Errorf("lab system power %q (err %v), want On", p, err)
					}
					return nil
				},
			},
			{
				// Deleted behind Terraform's back: refresh drops it, the plan re-creates it.
				PreConfig: func() {
					forceDelete(t, a, "acc-m1")
				},
				Config:             cfg("p2"),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{
				Config: cfg("p2"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionCreate)},
				},
			},
		},
	})
}

// TestAccMachineWriteOnlyPassword: the BMC password given as password_wo
// works (the agent drives the BMC with it) and is in no state file.
func TestAccMachineWriteOnlyPassword(t *testing.T) {
	a := testAgent(t)
	lm := a.machine(t, 2)
	// The test framework's working directories (and the state files it
	// keeps in them) go here, so the check can read the real state file.
	workDirs := t.TempDir()
	t.Setenv("TF_ACC_TEMP_DIR", workDirs)
	cfg := func(version int) string {
		return a.providerConfig() + fmt.Sprintf(`
resource "baremetal_machine" "wo" {
  name  = "acc-wo"
  state = "off"
  bmc = {
    endpoint            = %q
    username            = %q
    password_wo         = %q
    password_wo_version = %d
  }
}
`, lm.Endpoint, lm.Username, lm.Password, version)
	}
	const res = "baremetal_machine.wo"
	noPassword := func(*terraform.State) error {
		found := 0
		err := filepath.WalkDir(workDirs, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), "terraform.tfstate") {
				return err
			}
			raw, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if strings.Contains(string(raw), `"acc-wo"`) {
				found++
			}
			if strings.Contains(string(raw), lm.Password) {
				return fmt.Errorf("the write-only BMC password is in state file %s", p)
			}
			return nil
		})
		if err == nil && found == 0 {
			err = fmt.Errorf("no state file under %s holds the machine; the check reads the wrong files", workDirs)
		}
		return err
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		CheckDestroy:             checkMachinesGoneAndOff(a, map[string]lab.InventoryEntry{"acc-wo": lm}),
		Steps: []resource.TestStep{
			{
				Config: cfg(1),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("bmc").AtMapKey("password_wo"), knownvalue.Null()),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("bmc").AtMapKey("password"), knownvalue.Null()),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("phase"), knownvalue.StringExact("off")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("power_state"), knownvalue.StringExact("Off")),
				},
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: noPassword,
			},
			{
				// A new version sends the password again; still never stored.
				Config: cfg(2),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: noPassword,
			},
		},
	})
}

// TestAccMachineUnreachableBMC (D2): a BMC that never answers fails the
// create within its timeout, and the error says where the machine got
// stuck; the machine, never powered on, is then destroyed by an ordinary
// apply without waiting for a power-off that cannot happen.
func TestAccMachineUnreachableBMC(t *testing.T) {
	a := testAgent(t)
	dead := "http://" + testenv.FreeTCP(t).Release() + "/redfish/v1/Systems/1" // nothing listens there
	cfg := a.providerConfig() + fmt.Sprintf(`
resource "baremetal_machine" "dead" {
  name = "acc-dead"
  bmc = {
    endpoint = %q
    username = "admin"
    password = "never-used"
  }
  timeouts {
    create = "20s"
    delete = "20s"
  }
}
`, dead)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		Steps: []resource.TestStep{
			{
				Config:      cfg,
				ExpectError: regexp.MustCompile(`(?s)Unable to Create Machine "acc-dead".*(within the timeout\s+\(20s\)|marked it failed).*Last phase: (registering|inspecting|failed)`),
			},
			{
				Config: a.providerConfig(),
				Check: func(*terraform.State) error {
					if _, err := a.client.GetMachine(context.Background(), "acc-dead"); !errors.Is(err, client.ErrNotFound) {
						return fmt.Errorf("acc-dead still registered after destroy (err %v)", err)
					}
					return nil
				},
			},
		},
	})
}

func forceDelete(t *testing.T, a *accAgent, name string) {
	t.Helper()
	ctx := testCtx(t)
	if err := a.client.DeleteMachine(ctx, name, true); err != nil && !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("force delete %s: %v", name, err)
	}
	testenv.Eventually(t, "machine "+name+" gone", 30*time.Second, func() error {
		_, err := a.client.GetMachine(ctx, name)
		if errors.Is(err, client.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("still registered (err %v)", err)
	})
}

// checkMachinesGoneAndOff is the destroy check: the agent no longer knows
// the machines, and the lab's Redfish says each system is powered off.
func checkMachinesGoneAndOff(a *accAgent, machines map[string]lab.InventoryEntry) resource.TestCheckFunc {
	return func(*terraform.State) error {
		for name, lm := range machines {
			if _, err := a.client.GetMachine(context.Background(), name); !errors.Is(err, client.ErrNotFound) {
				return fmt.Errorf("machine %q still registered after destroy (err %v)", name, err)
			}
			p, err := redfishPower(lm)
			if err != nil {
				return err
			}
			if p != "Off" {
				return fmt.Errorf("lab system %s is %s after destroy, want Off", lm.Name, p)
			}
		}
		return nil
	}
}

// TestAccMachineLeaseConflict: while another writer (another configuration's
// Terraform run) holds a machine's lease, an apply is refused with a
// diagnostic that says so, instead of interleaving with it.
func TestAccMachineLeaseConflict(t *testing.T) {
	a := testAgent(t)
	lm := a.machine(t, 7)
	other, err := client.New(client.Config{Endpoint: a.endpoint, Token: a.token, CACertPEM: a.caPEM, Insecure: a.caPEM == "",
		LeaseHolder: "terraform@elsewhere:other-config#0"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := a.providerConfig() + `
import {
  to = baremetal_machine.m
  id = "acc-lease"
}
` + machineConfig("m", "acc-lease", lm, `  state = "available"
  params = { note = "ours" }`)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		Steps: []resource.TestStep{
			{
				// The other writer registers the machine, which takes its lease;
				// this configuration imports it and wants different params.
				PreConfig: func() {
					_, err := other.CreateMachine(testCtx(t), api.MachineRequest{
						Name: "acc-lease", State: "available", Params: map[string]string{"note": "theirs"},
						BMC: api.BMCRequest{Endpoint: lm.Endpoint, Username: lm.Username, Password: lm.Password},
					})
					if err != nil {
						t.Fatalf("other writer's create: %v", err)
					}
				},
				Config:      cfg,
				ExpectError: regexp.MustCompile(`(?s)Unable to Update Machine "acc-lease".*holds its lease`),
			},
			{
				// The other writer removes the machine; refresh forgets it.
				PreConfig: func() {
					if err := other.DeleteMachine(testCtx(t), "acc-lease", true); err != nil {
						t.Fatalf("other writer's delete: %v", err)
					}
				},
				Config: a.providerConfig(),
			},
		},
	})
}

// TestAccMachineSecretsNotLogged: a TF_LOG=trace run of the terraform CLI
// and the provider, including the agent's answers, never shows the BMC
// password, whether given as password or as password_wo. The password
// comes from a variable set in the environment, as in real use; a literal
// in the configuration would be logged by the test framework itself.
func TestAccMachineSecretsNotLogged(t *testing.T) {
	a := testAgent(t)
	lm := a.machine(t, 8)
	logPath := filepath.Join(t.TempDir(), "tf-trace.log")
	t.Setenv("TF_LOG", "trace")
	t.Setenv("TF_ACC_LOG_PATH", logPath)
	t.Setenv("TF_VAR_bmc_password", lm.Password)
	cfg := func(passwordAttr, ephemeral string) string {
		return a.providerConfig() + fmt.Sprintf(`
variable "bmc_password" {
  type      = string
  sensitive = true
  ephemeral = %s
}

resource "baremetal_machine" "m" {
  name  = "acc-log"
  state = "off"
  bmc = {
    endpoint            = %q
    username            = %q
    %s = var.bmc_password
  }
}
`, ephemeral, lm.Endpoint, lm.Username, passwordAttr)
	}
	checkLog := func(*terraform.State) error {
		raw, err := os.ReadFile(logPath)
		if err != nil {
			return err
		}
		if !strings.Contains(string(raw), "machine phase changed") {
			return fmt.Errorf("%s lacks the provider's trace output; the check reads the wrong log", logPath)
		}
		if strings.Contains(string(raw), lm.Password) {
			return errors.New("the BMC password appears in the TF_LOG=trace output")
		}
		return nil
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		CheckDestroy:             checkMachinesGoneAndOff(a, map[string]lab.InventoryEntry{"acc-log": lm}),
		Steps: []resource.TestStep{
			{Config: cfg("password", "false"), Check: checkLog},
			{Config: cfg("password_wo", "true"), Check: checkLog},
		},
	})
}

// TestAccMachineBootMode: a boot_mode the BMC does not allow (the lab's
// machines are UEFI-only) fails the apply naming what the BMC allows; the
// mode it allows installs the machine and shows in state and inventory.
func TestAccMachineBootMode(t *testing.T) {
	a := testAgent(t)
	lm := a.machine(t, 9)
	cfg := func(mode string) string {
		return a.providerConfig() + profileConfig(a, "p", "acc-bootmode", "quiet") + machineConfig("m", "acc-bootmode", lm, fmt.Sprintf(`
  boot_profile = baremetal_boot_profile.p.name
  boot_mode    = %q
  timeouts {
    create = "2m"
  }
`, mode))
	}
	const res = "baremetal_machine.m"
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		CheckDestroy:             checkMachinesGoneAndOff(a, map[string]lab.InventoryEntry{"acc-bootmode": lm}),
		Steps: []resource.TestStep{
			{
				Config:      cfg("bios"),
				ExpectError: regexp.MustCompile(`(?s)Attribute boot_mode value must be one of`),
			},
			{
				Config:      cfg("legacy"),
				ExpectError: regexp.MustCompile(`(?s)boot_mode "legacy" is not offered by the BMC,\s+which allows\s+uefi`),
			},
			{
				Config: cfg("uefi"),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("phase"), knownvalue.StringExact("provisioned")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("boot_mode"), knownvalue.StringExact("uefi")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("inventory").AtMapKey("boot_mode"), knownvalue.StringExact("uefi")),
				},
			},
		},
	})
}
