# Ephemeral (Terraform >= 1.10): the password is never written to a plan or
# state file, and password_wo sends it to the agent without storing it.
variable "bmc_password" {
  type      = string
  sensitive = true
  ephemeral = true
}

resource "baremetal_machine" "web" {
  name = "web-01"

  bmc = {
    endpoint            = "https://10.0.10.21"
    username            = "admin"
    password_wo         = var.bmc_password
    password_wo_version = 1    # bump to send a new password
    insecure            = true # factory self-signed BMC certificate
  }

  # Omit macs to let the agent discover them from the BMC's inventory.
  macs         = ["3c:ec:ef:12:34:56"]
  boot_profile = "debian-12"
  state        = "provisioned"

  params = {
    hostname = "web-01.site1.example.net"
  }

  timeouts {
    create = "45m"
  }
}

output "web_addresses" {
  value = baremetal_machine.web.addresses
}
