# The machines come from a JSON inventory (the shape `baremetal-agent lab`
# writes): the first is the control plane, the rest are workers.

terraform {
  required_version = ">= 1.11"
  required_providers {
    baremetal = {
      source = "openbaremetal/baremetal"
    }
  }
}

provider "baremetal" {}

variable "inventory_file" {
  description = "JSON file: {\"machines\": [{name, endpoint, username, password, mac}]}."
  type        = string
}

locals {
  inventory = jsondecode(file(var.inventory_file)).machines
  image = {
    kernel    = "vmlinuz"
    initrds   = ["initrd.img"]
    cmdline   = "console=ttyS0 baremetal.templates=user-data"
    templates = { "user-data" = "#cloud-config\nhostname: {{ .Machine.Name }}\n" }
  }
}

module "cluster" {
  source = "../.."

  name = "inventory"
  nodes = {
    for i, m in local.inventory : m.name => {
      role         = i == 0 ? "control-plane" : "worker"
      bmc_endpoint = m.endpoint
      bmc_username = m.username
      macs         = [m.mac]
    }
  }
  bmc_passwords = { for m in local.inventory : m.name => m.password }
  roles = [
    merge(local.image, { name = "control-plane" }),
    merge(local.image, { name = "worker" }),
  ]
  max_unavailable = 2
}

output "members" {
  description = "Role, phase and addresses of each machine."
  value       = module.cluster.members
}
