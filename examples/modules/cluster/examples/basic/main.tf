# Two machines, a control plane and a worker, installed with Debian's
# installer and a preseed per role. The provider reads BAREMETAL_ENDPOINT,
# BAREMETAL_TOKEN and BAREMETAL_CA_CERT_PEM from the environment.

terraform {
  required_version = ">= 1.11"
  required_providers {
    baremetal = {
      source = "openbaremetal/baremetal"
    }
  }
}

provider "baremetal" {}

variable "bmc_password" {
  description = "Password of the BMCs' admin account."
  type        = string
  sensitive   = true
  ephemeral   = true
}

module "cluster" {
  # From the registry, or from git:
  # source = "github.com/openbaremetal/terraform-provider-baremetal//examples/modules/cluster?ref=v0.1.0"
  source = "../.."

  name = "k8s-site1"
  roles = [
    {
      name      = "control-plane"
      kernel    = "debian-12/linux"
      initrds   = ["debian-12/initrd.gz"]
      cmdline   = "auto=true priority=critical url={{ templateURL \"preseed\" }}"
      templates = { preseed = file("${path.module}/control-plane.preseed") }
    },
    {
      name      = "worker"
      kernel    = "debian-12/linux"
      initrds   = ["debian-12/initrd.gz"]
      cmdline   = "auto=true priority=critical url={{ templateURL \"preseed\" }}"
      templates = { preseed = file("${path.module}/worker.preseed") }
    },
  ]
  nodes = {
    cp-1     = { role = "control-plane", bmc_endpoint = "https://10.0.10.31", bmc_username = "admin" }
    worker-1 = { role = "worker", bmc_endpoint = "https://10.0.10.32", bmc_username = "admin" }
  }
  bmc_passwords = { cp-1 = var.bmc_password, worker-1 = var.bmc_password }
  params = {
    domain = "site1.example.com"
  }
}

output "endpoints" {
  description = "Installed addresses by role."
  value       = module.cluster.endpoints
}
