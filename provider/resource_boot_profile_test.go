package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/compare"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
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

// TestAccImageProfile: a profile with an image deploys it through the
// (simulated) deploy ramdisk and the machine is provisioned once the
// deployed OS calls back; a checksum that is not one is refused at plan.
func TestAccImageProfile(t *testing.T) {
	a := testAgent(t)
	lm := a.machine(t, 10)
	sum := sha256.Sum256(accImage)
	cfg := func(checksum string, extra ...string) string {
		format, wipe := "raw", ""
		if len(extra) > 0 {
			format = extra[0]
		}
		if len(extra) > 1 {
			wipe = fmt.Sprintf("wipe     = %q", extra[1])
		}
		return a.providerConfig() + fmt.Sprintf(`
resource "baremetal_boot_profile" "img" {
  name    = "acc-image"
  cmdline = "console=ttyS0"
  image = {
    url      = "%s/image.raw"
    checksum = %q
    format   = %q
    %s
  }
  root_device = {
    min_size_gib = 100
    rotational   = false
  }
  templates = {
    "user-data" = "#cloud-config\nhostname: {{ .Machine.Name }}\n"
  }
}
`, a.assets.URL, checksum, format, wipe) + machineConfig("m", "acc-image-m", lm, `
  boot_profile = baremetal_boot_profile.img.name
`)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		CheckDestroy:             checkMachinesGoneAndOff(a, map[string]lab.InventoryEntry{"acc-image-m": lm}),
		Steps: []resource.TestStep{
			{
				Config:      cfg("md5:abc"),
				ExpectError: regexp.MustCompile(`(?s)image\.checksum.*sha256:<64 lower-case hex digits>`),
			},
			{
				Config:      cfg("sha256:"+hex.EncodeToString(sum[:]), "vmdk"),
				ExpectError: regexp.MustCompile(`(?s)image\.format value must be one of: \["raw" "gzip" "zstd"\s+"qcow2"\]`),
			},
			{
				Config:      cfg("sha256:"+hex.EncodeToString(sum[:]), "raw", "none"),
				ExpectError: regexp.MustCompile(`(?s)image\.wipe value must be one of: \["config-drive" "metadata"\s+"full"\]`),
			},
			{
				Config: cfg("sha256:" + hex.EncodeToString(sum[:])),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("baremetal_machine.m", tfjsonpath.New("phase"), knownvalue.StringExact("provisioned")),
					statecheck.ExpectKnownValue("baremetal_boot_profile.img", tfjsonpath.New("image").AtMapKey("format"), knownvalue.StringExact("raw")),
					statecheck.ExpectKnownValue("baremetal_boot_profile.img", tfjsonpath.New("image").AtMapKey("wipe"), knownvalue.StringExact("config-drive")),
					statecheck.ExpectKnownValue("baremetal_boot_profile.img", tfjsonpath.New("root_device").AtMapKey("min_size_gib"), knownvalue.Float64Exact(100)),
				},
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
			},
		},
	})
}
