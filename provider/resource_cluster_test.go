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

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
)

// TestAccCluster is the acceptance scenario: one boot profile per
// role, three machines, a cluster of one control plane and two workers.
func TestAccCluster(t *testing.T) {
	a := testAgent(t)
	nodes := map[string]lab.InventoryEntry{
		"acc-cp": a.machine(t, 3), "acc-w1": a.machine(t, 4), "acc-w2": a.machine(t, 5),
	}
	cfg := func(workerProfile string) string {
		c := a.providerConfig() +
			profileConfig(a, "cp", "acc-cl-cp", "role=cp") +
			profileConfig(a, "worker", "acc-cl-worker", "role=worker") +
			profileConfig(a, "worker2", "acc-cl-worker2", "role=worker gen=2")
		for _, name := range []string{"acc-cp", "acc-w1", "acc-w2"} {
			c += machineConfig(name, name, nodes[name], "")
		}
		return c + fmt.Sprintf(`
resource "baremetal_cluster" "k" {
  name = "acc-cluster"
  roles = [
    { name = "control-plane", boot_profile = baremetal_boot_profile.cp.name },
    { name = "worker", boot_profile = baremetal_boot_profile.%s.name },
  ]
  members = [
    { machine = baremetal_machine.acc-w1.name, role = "worker" },
    { machine = baremetal_machine.acc-cp.name, role = "control-plane" },
    { machine = baremetal_machine.acc-w2.name, role = "worker" },
  ]
  params = {
    pod_cidr = "10.244.0.0/16"
  }
}

data "baremetal_machines" "workers" {
  cluster    = "acc-cluster"
  role       = "worker"
  depends_on = [baremetal_cluster.k]
}
`, workerProfile)
	}
	const res = "baremetal_cluster.k"
	var cpProvisionedAt time.Time
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		CheckDestroy:             checkMachinesGoneAndOff(a, nodes),
		Steps: []resource.TestStep{
			{
				Config: cfg("worker"),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("phase"), knownvalue.StringExact("ready")),
					// Roles keep their configured order: it is the provisioning order.
					statecheck.ExpectKnownValue(res, tfjsonpath.New("roles"), knownvalue.ListExact([]knownvalue.Check{
						knownvalue.ObjectPartial(map[string]knownvalue.Check{"name": knownvalue.StringExact("control-plane")}),
						knownvalue.ObjectPartial(map[string]knownvalue.Check{"name": knownvalue.StringExact("worker")}),
					})),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("rollout").AtMapKey("max_unavailable"), knownvalue.Int64Exact(1)),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("member_status"), knownvalue.ListExact([]knownvalue.Check{
						memberProvisioned("acc-w1", "worker"), memberProvisioned("acc-cp", "control-plane"), memberProvisioned("acc-w2", "worker"),
					})),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("endpoints").AtMapKey("control-plane"), knownvalue.ListSizeExact(1)),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("endpoints").AtMapKey("worker"), knownvalue.ListSizeExact(2)),
					statecheck.ExpectKnownValue("data.baremetal_machines.workers", tfjsonpath.New("names"), knownvalue.ListExact([]knownvalue.Check{
						knownvalue.StringExact("acc-w1"), knownvalue.StringExact("acc-w2"),
					})),
				},
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: func(*terraform.State) error {
					if err := checkRoleOrder(a, "acc-cp", "acc-w1", "acc-w2"); err != nil {
						return err
					}
					cp, err := a.client.GetMachine(context.Background(), "acc-cp")
					if err != nil {
						return err
					}
					cpProvisionedAt = cp.ProvisionedAt
					return nil
				},
			},
			{
				// Each machine resource finished when its machine was
				// registered; after the cluster ran, a refresh shows every
				// member provisioned with its address.
				RefreshState: true,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("baremetal_machine.acc-cp", "phase", "provisioned"),
					resource.TestCheckResourceAttr("baremetal_machine.acc-w1", "phase", "provisioned"),
					resource.TestCheckResourceAttr("baremetal_machine.acc-w2", "phase", "provisioned"),
					resource.TestCheckResourceAttr("baremetal_machine.acc-cp", "addresses.#", "1"),
				),
			},
			{
				// A new worker profile rolls the workers only.
				Config: cfg("worker2"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply: []plancheck.PlanCheck{
						plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate),
						plancheck.ExpectResourceAction("baremetal_machine.acc-cp", plancheck.ResourceActionNoop),
						plancheck.ExpectResourceAction("baremetal_machine.acc-w1", plancheck.ResourceActionNoop),
					},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: func(*terraform.State) error {
					for _, w := range []string{"acc-w1", "acc-w2"} {
						m, err := a.client.GetMachine(context.Background(), w)
						if err != nil {
							return err
						}
						if m.ProvisionedProfile != "acc-cl-worker2" {
							return fmt.Errorf("%s installed with %q, want acc-cl-worker2", w, m.ProvisionedProfile)
						}
					}
					cp, err := a.client.GetMachine(context.Background(), "acc-cp")
					if err != nil {
						return err
					}
					if !cp.ProvisionedAt.Equal(cpProvisionedAt) {
						return fmt.Errorf("the control plane was re-provisioned (%s, before %s) by a worker profile change", cp.ProvisionedAt, cpProvisionedAt)
					}
					return nil
				},
			},
			{
				ResourceName:            res,
				ImportState:             true,
				ImportStateId:           "acc-cluster",
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"timeouts"},
			},
		},
	})
}

func memberProvisioned(machine, role string) knownvalue.Check {
	return knownvalue.ObjectPartial(map[string]knownvalue.Check{
		"machine":   knownvalue.StringExact(machine),
		"role":      knownvalue.StringExact(role),
		"phase":     knownvalue.StringExact("provisioned"),
		"addresses": knownvalue.ListSizeExact(1),
	})
}

// checkRoleOrder asserts from the agent's events that the control plane was
// provisioned before any worker started provisioning.
func checkRoleOrder(a *accAgent, cp string, workers ...string) error {
	cpDone, err := firstPhaseEvent(a, cp, api.PhaseProvisioned)
	if err != nil {
		return err
	}
	for _, w := range workers {
		start, err := firstPhaseEvent(a, w, api.PhaseProvisioning)
		if err != nil {
			return err
		}
		if start.Seq < cpDone.Seq {
			return fmt.Errorf("worker %s started provisioning (event %d, %s) before the control plane was provisioned (event %d, %s)",
				w, start.Seq, start.Time, cpDone.Seq, cpDone.Time)
		}
	}
	return nil
}

func firstPhaseEvent(a *accAgent, machine string, phase api.MachinePhase) (api.Event, error) {
	var after uint64
	for {
		page, err := a.client.MachineEvents(context.Background(), machine, after, 500)
		if err != nil {
			return api.Event{}, err
		}
		for _, e := range page.Events {
			if e.Type == api.EventPhaseChanged && e.Phase == phase {
				return e, nil
			}
		}
		if len(page.Events) == 0 || page.Next <= after {
			return api.Event{}, fmt.Errorf("machine %s has no %s event", machine, phase)
		}
		after = page.Next
	}
}
