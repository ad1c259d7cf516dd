# A cluster that forms a real service: Debian 12 written to each machine's
# disk by the agent's deploy ramdisk, one control plane that starts etcd,
# and workers that register themselves in it before they report "OS up".
# `make demo` runs it against the project's lab (QEMU VMs, BIOS and UEFI,
# behind an emulated Redfish BMC) with the lab's image (make os-image);
# point the inventory at real BMCs and the image at your own and it runs
# unchanged against hardware.
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

variable "image_url" {
  description = "The OS image: a path under the agent's assets directory or an http(s) URL. It must hold etcd-server, etcd-client, cloud-init and curl, as the lab's Debian image does."
  type        = string
  default     = "debian-12-amd64.raw.zst"
}

variable "image_checksum" {
  description = "sha256:<hex> (or sha512:<hex>) of the file at image_url, e.g. from the .sha256 file make os-image writes beside it."
  type        = string
}

variable "image_format" {
  description = "raw, gzip, zstd or qcow2."
  type        = string
  default     = "zstd"
}

locals {
  inventory = jsondecode(file(var.inventory_file)).machines
  # The first machine runs etcd; the rest are workers.
  nodes = {
    for i, m in local.inventory : m.name => {
      role         = i == 0 ? "control-plane" : "worker"
      bmc_endpoint = m.endpoint
      bmc_username = m.username
      macs         = [m.mac]
    }
  }
  # Both roles install the same image; the stock cloud-init-etcd user-data
  # tells them apart by role: the control plane starts etcd, the workers
  # get its reported address from the cluster. The cmdline is the deploy
  # ramdisk's (its console on the serial port).
  debian = {
    image   = { url = var.image_url, checksum = var.image_checksum, format = var.image_format }
    cmdline = "console=ttyS0"
    templates = {
      "user-data" = "stock:cloud-init-etcd"
      "meta-data" = "stock:cloud-init-meta-data"
    }
  }
}

module "cluster" {
  source = "../modules/cluster"

  name          = "etcd"
  nodes         = local.nodes
  bmc_passwords = { for m in local.inventory : m.name => m.password }
  # The control plane first: the workers' user-data needs its address.
  roles = [
    merge(local.debian, { name = "control-plane" }),
    merge(local.debian, { name = "worker" }),
  ]
  max_unavailable = 1
  timeouts        = "90m"
}

output "members" {
  description = "Role, phase and reported addresses of each machine."
  value       = module.cluster.members
}

output "etcd_endpoint" {
  description = "The control plane's etcd, at the address it reported (on the machines' network)."
  value       = "http://${module.cluster.endpoints["control-plane"][0]}:2379"
}
