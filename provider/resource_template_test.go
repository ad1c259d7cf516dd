package provider

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
)

// TestAccTemplate: a snippet shared by two profiles. Changing it
// re-provisions, in place, the machines whose profiles include it and no
// other; the apply waits and the next plan is empty. The preview shows the
// rendered template with the run token redacted. A syntax error and a
// missing param fail the apply, naming what is wrong.
func TestAccTemplate(t *testing.T) {
	a := testAgent(t)
	lms := map[string]lab.InventoryEntry{"acc-t1": a.machine(t, 11), "acc-t2": a.machine(t, 12), "acc-t3": a.machine(t, 13)}
	profile := func(res, name, userData string) string {
		return fmt.Sprintf(`
resource "baremetal_boot_profile" %[1]q {
  name    = %[2]q
  kernel  = "%[3]s/vmlinuz"
  initrds = ["%[3]s/initrd.img"]
  cmdline = "console=ttyS0 baremetal.templates=user-data"
  templates = {
    user-data = %[4]q
  }
  params = {
    note = "from the profile"
  }
  depends_on = [baremetal_template.note]
}
`, res, name, a.assets.URL, userData)
	}
	cfg := func(content string) string {
		c := a.providerConfig() + fmt.Sprintf(`
resource "baremetal_template" "note" {
  name        = "acc-note"
  description = "shared by two profiles"
  content     = %q
}
`, content)
		with := "#cloud-config\nhostname: {{ .Machine.Name }}\n{{ template \"acc-note\" . }}\ncallback: {{ .URLs.Callback }}\n"
		c += profile("a", "acc-t-a", with) + profile("b", "acc-t-b", with) +
			profile("c", "acc-t-c", "#cloud-config\nhostname: {{ .Machine.Name }}\n")
		for i, n := range []string{"acc-t1", "acc-t2", "acc-t3"} {
			c += machineConfig(n, n, lms[n], fmt.Sprintf("  boot_profile = baremetal_boot_profile.%c.name\n", 'a'+i))
		}
		return c + `
data "baremetal_rendered_template" "t1" {
  machine  = baremetal_machine.acc-t1.name
  template = "user-data"
}
`
	}
	installed := map[string]time.Time{}
	record := func(*terraform.State) error {
		for n := range lms {
			m, err := a.client.GetMachine(context.Background(), n)
			if err != nil {
				return err
			}
			installed[n] = m.ProvisionedAt
		}
		return nil
	}
	reprovisioned := func(*terraform.State) error {
		for n, want := range map[string]bool{"acc-t1": true, "acc-t2": true, "acc-t3": false} {
			m, err := a.client.GetMachine(context.Background(), n)
			if err != nil {
				return err
			}
			if m.Phase != "provisioned" {
				return fmt.Errorf("%s is %s after the apply: %s", n, m.Phase, m.LastError)
			}
			if got := m.ProvisionedAt.After(installed[n]); got != want {
				return fmt.Errorf("%s re-provisioned = %v, want %v", n, got, want)
			}
		}
		return nil
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		CheckDestroy:             checkMachinesGoneAndOff(a, lms),
		Steps: []resource.TestStep{
			{
				Config: cfg("note: {{ toJSON .Params.note }}"),
				Check:  record,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("baremetal_template.note", tfjsonpath.New("version"), knownvalue.Int64Exact(1)),
					statecheck.ExpectKnownValue("data.baremetal_rendered_template.t1", tfjsonpath.New("content"),
						knownvalue.StringRegexp(regexpMust(`(?s)hostname: acc-t1\nnote: "from the profile"\ncallback: http://\S+/machines/acc-t1/callback\?token=%3Ctoken%3E`))),
					statecheck.ExpectKnownValue("data.baremetal_rendered_template.t1", tfjsonpath.New("profile"), knownvalue.StringExact("acc-t-a")),
				},
			},
			{
				// The refresh after this step reads used_by, which the
				// first apply could not know before the profiles existed.
				Config: cfg("note: {{ toJSON .Params.note }}"),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("baremetal_template.note", tfjsonpath.New("used_by"),
						knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("acc-t-a"), knownvalue.StringExact("acc-t-b")})),
				},
			},
			{
				Config: cfg("note: {{ toJSON (printf \"v2 %s\" .Params.note) }}"),
				Check:  reprovisioned,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("baremetal_template.note", plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("baremetal_template.note", tfjsonpath.New("version"), knownvalue.Int64Exact(2)),
				},
			},
			{
				ResourceName:      "baremetal_template.note",
				ImportState:       true,
				ImportStateId:     "acc-note",
				ImportStateVerify: true,
			},
			{
				Config:      cfg("note: {{ toJSON .Params.note"),
				ExpectError: regexpMust(`(?s)template "acc-note" line 1 column 7:.*unclosed action`),
			},
			{
				Config:      cfg("note: {{ toJSON .Params.notset }}"),
				ExpectError: regexpMust(`(?s)machine "acc-t[12]": profile "acc-t-[ab]": template "user-data",.*snippet "acc-note"\s+line 1 column \d+:\s+param "notset" is not set`),
			},
		},
	})
}
