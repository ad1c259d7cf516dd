variable "bmc_password" {
  type      = string
  sensitive = true
  ephemeral = true
}

locals {
  nodes = {
    cp-1     = { bmc = "https://10.0.10.31", role = "control-plane" }
    worker-1 = { bmc = "https://10.0.10.32", role = "worker" }
    worker-2 = { bmc = "https://10.0.10.33", role = "worker" }
  }
}

# Members leave boot_profile unset: their cluster role's profile installs
# them, control plane first.
resource "baremetal_machine" "node" {
  for_each = local.nodes

  name = each.key
  bmc = {
    endpoint            = each.value.bmc
    username            = "admin"
    password_wo         = var.bmc_password
    password_wo_version = 1
  }
}

resource "baremetal_cluster" "k8s" {
  name = "k8s-site1"

  # Provisioned in this order: every control-plane member is installed
  # before any worker starts.
  roles = [
    { name = "control-plane", boot_profile = "k8s-control-plane" },
    { name = "worker", boot_profile = "k8s-worker" },
  ]

  members = [
    for name, node in local.nodes : {
      machine = baremetal_machine.node[name].name
      role    = node.role
    }
  ]

  params = {
    pod_cidr = "10.244.0.0/16"
  }

  rollout = {
    max_unavailable = 1
  }
}

output "control_plane" {
  value = baremetal_cluster.k8s.endpoints["control-plane"]
}
