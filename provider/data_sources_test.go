package provider

import (
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

func TestAccDataSources(t *testing.T) {
	a := testAgent(t)
	lm := a.machine(t, 6)
	base := a.providerConfig() + profileConfig(a, "p", "acc-ds-profile", "quiet") +
		machineConfig("m", "acc-ds", lm, `  state = "available"`)
	cfg := base + `
data "baremetal_agent" "a" {}

data "baremetal_machine" "m" {
  name = baremetal_machine.m.name
}

data "baremetal_boot_profile" "p" {
  name = baremetal_boot_profile.p.name
}

data "baremetal_machines" "available" {
  state    = "available"
  min_cpus = 1
  depends_on = [baremetal_machine.m]
}

data "baremetal_machines" "off" {
  state      = "off"
  depends_on = [baremetal_machine.m]
}

output "off_has_acc_ds" {
  value = contains(data.baremetal_machines.off.names, "acc-ds")
}

output "available_has_acc_ds" {
  value = contains(data.baremetal_machines.available.names, "acc-ds")
}

data "baremetal_machines" "huge" {
  state          = "available"
  min_memory_gib = 1000000
  depends_on     = [baremetal_machine.m]
}
`
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		Steps: []resource.TestStep{
			{
				Config: cfg,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("data.baremetal_agent.a", tfjsonpath.New("api_version"), knownvalue.StringExact("v1")),
					statecheck.ExpectKnownValue("data.baremetal_agent.a", tfjsonpath.New("boot_url"), knownvalue.StringExact(a.bootURL)),
					statecheck.ExpectKnownValue("data.baremetal_machine.m", tfjsonpath.New("phase"), knownvalue.StringExact("available")),
					statecheck.ExpectKnownValue("data.baremetal_machine.m", tfjsonpath.New("bmc_endpoint"), knownvalue.StringExact(lm.Endpoint)),
					statecheck.ExpectKnownValue("data.baremetal_machine.m", tfjsonpath.New("macs"),
						knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact(lm.MAC)})),
					statecheck.ExpectKnownValue("data.baremetal_machine.m", tfjsonpath.New("inventory"), knownvalue.ObjectPartial(map[string]knownvalue.Check{
						// The lab's memory backend: a summary of 2 CPUs, 8 cores, 32 threads, no
						// Processors list; one SSD; UEFI firmware.
						"cpus": knownvalue.Int64Exact(2), "cpu_cores": knownvalue.Int64Exact(8), "cpu_threads": knownvalue.Int64Exact(32),
						"gpus": knownvalue.Int64Exact(0), "boot_mode": knownvalue.StringExact("uefi"),
						"disks": knownvalue.ListExact([]knownvalue.Check{knownvalue.ObjectPartial(map[string]knownvalue.Check{
							"model": knownvalue.StringExact("Lab SSD 480"), "media_type": knownvalue.StringExact("SSD"),
							"rotational": knownvalue.Bool(false), "size_gib": knownvalue.Float64Exact(447.13),
						})}),
					})),
					statecheck.ExpectKnownValue("data.baremetal_boot_profile.p", tfjsonpath.New("kernel"), knownvalue.StringExact(a.assets.URL+"/vmlinuz")),
					statecheck.ExpectKnownOutputValue("available_has_acc_ds", knownvalue.Bool(true)),
					statecheck.ExpectKnownOutputValue("off_has_acc_ds", knownvalue.Bool(false)),
					statecheck.ExpectKnownValue("data.baremetal_machines.huge", tfjsonpath.New("names"), knownvalue.ListSizeExact(0)),
				},
			},
			{
				Config: base + `
data "baremetal_machine" "missing" {
  name = "acc-no-such-machine"
}
`,
				ExpectError: regexp.MustCompile(`The agent has no machine named "acc-no-such-machine"`),
			},
		},
	})
}
