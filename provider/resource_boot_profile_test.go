package provider

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

// profileConfig is a boot profile the lab's simulated machines can boot:
// kernel and initrd from the test's asset server, one template that the
// simulated installer fetches before calling back.
func profileConfig(a *accAgent, resName, name, cmdline string) string {
	return fmt.Sprintf(`
resource "baremetal_boot_profile" %[1]q {
  name    = %[2]q
  kernel  = "%[3]s/vmlinuz"
  initrds = ["%[3]s/initrd.img"]
  cmdline = "console=ttyS0 %[4]s baremetal.templates=user-data"
  templates = {
    user-data = "#cloud-config\nhostname: {{ .Machine.Name }}\n"
  }
  params = {
    disk = "/dev/vda"
  }
}
`, resName, name, a.assets.URL, cmdline)
}

func TestAccBootProfile(t *testing.T) {
	a := testAgent(t)
	versions := statecheck.CompareValue(compare.ValuesDiffer())
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		CheckDestroy:             checkProfilesGone(a, "acc-profile"),
		Steps: []resource.TestStep{
			{
				Config: a.providerConfig() + profileConfig(a, "p", "acc-profile", "quiet"),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("baremetal_boot_profile.p", tfjsonpath.New("id"), knownvalue.StringExact("acc-profile")),
					statecheck.ExpectKnownValue("baremetal_boot_profile.p", tfjsonpath.New("initrds"),
						knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact(a.assets.URL + "/initrd.img")})),
					statecheck.ExpectKnownValue("baremetal_boot_profile.p", tfjsonpath.New("templates").AtMapKey("user-data"),
						knownvalue.StringRegexp(regexpMust(`\{\{ \.Machine\.Name \}\}`))),
					statecheck.ExpectKnownValue("baremetal_boot_profile.p", tfjsonpath.New("ipxe_script"), knownvalue.Null()),
					versions.AddStateValue("baremetal_boot_profile.p", tfjsonpath.New("version")),
				},
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
			},
			{
				// A changed cmdline is an in-place update that bumps the version.
				Config: a.providerConfig() + profileConfig(a, "p", "acc-profile", "quiet splash"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("baremetal_boot_profile.p", plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("baremetal_boot_profile.p", tfjsonpath.New("cmdline"),
						knownvalue.StringExact("console=ttyS0 quiet splash baremetal.templates=user-data")),
					versions.AddStateValue("baremetal_boot_profile.p", tfjsonpath.New("version")),
				},
			},
			{
				ResourceName:      "baremetal_boot_profile.p",
				ImportState:       true,
				ImportStateId:     "acc-profile",
				ImportStateVerify: true,
			},
			{
				// A renamed profile is a new object.
				Config: a.providerConfig() + profileConfig(a, "p", "acc-profile-2", "quiet splash"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{plancheck.ExpectResourceAction("baremetal_boot_profile.p", plancheck.ResourceActionDestroyBeforeCreate)},
				},
			},
		},
	})
}

func checkProfilesGone(a *accAgent, names ...string) resource.TestCheckFunc {
	return func(*terraform.State) error {
		for _, n := range append(names, names[0]+"-2") {
			if _, err := a.client.GetBootProfile(context.Background(), n); !errors.Is(err, client.ErrNotFound) {
				return fmt.Errorf("boot profile %q still exists after destroy (err %v)", n, err)
			}
		}
		return nil
	}
}
