# Quickstart: a cluster of one control-plane and two workers, installed over
# PXE by baremetal-agent. `make demo` runs it against the project's lab (QEMU
# VMs behind an emulated Redfish BMC); point the inventory at real BMCs and it
# runs unchanged against hardware.
#
# The provider reads BAREMETAL_ENDPOINT, BAREMETAL_TOKEN and
# BAREMETAL_CA_CERT_PEM from the environment (make demo sets them).

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
  description = "JSON inventory of the machines' BMCs: {\"machines\": [{name, endpoint, username, password, mac}]} (the lab writes one)."
  type        = string
}

variable "worker_release" {
  description = "A value the workers' profile carries; change it to roll the workers through re-provisioning."
  type        = string
  default     = "1"
}

locals {
  inventory = jsondecode(file(var.inventory_file)).machines
  # The first machine leads; the rest are workers.
  nodes = {
    for i, m in local.inventory : m.name => {
      role         = i == 0 ? "control-plane" : "worker"
      bmc_endpoint = m.endpoint
      bmc_username = m.username
      macs         = [m.mac]
    }
  }
  # The lab's kernel and busybox installer, served from the agent's
  # --assets-dir; the installer fetches the user-data named on its cmdline.
  lab_image = {
    kernel    = "vmlinuz"
    initrds   = ["initrd.img"]
    cmdline   = "console=ttyS0 baremetal.templates=user-data"
    templates = { "user-data" = "stock:lab-user-data" }
  }
}

module "cluster" {
  source = "../modules/cluster"

  name          = "quickstart"
  nodes         = local.nodes
  bmc_passwords = { for m in local.inventory : m.name => m.password }
  roles = [
    merge(local.lab_image, { name = "control-plane" }),
    merge(local.lab_image, { name = "worker", params = { release = var.worker_release } }),
  ]
  params = {
    site = "lab"
  }
  max_unavailable = 1
  timeouts        = "20m"
}

output "members" {
  description = "Role, phase and reported addresses of each machine."
  value       = module.cluster.members
}

output "endpoints" {
  description = "Reported addresses by role."
  value       = module.cluster.endpoints
}

output "roles" {
  description = "Roles in provisioning order."
  value       = module.cluster.roles
}
