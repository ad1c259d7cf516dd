terraform {
  required_version = ">= 1.11"
  required_providers {
    baremetal = {
      source = "openbaremetal/baremetal"
    }
  }
}

# The agent's API URL and token. Both can come from the environment instead
# (BAREMETAL_ENDPOINT, BAREMETAL_TOKEN), which is how Terraform Cloud
# workspaces set them.
variable "agent_token" {
  type      = string
  sensitive = true
}

variable "agent_ca_pem" {
  type        = string
  description = "The certificate the agent generated in its data directory on first start (the agent logs its path and SHA-256 fingerprint)."
}

provider "baremetal" {
  endpoint = "https://agent.site1.example.net:8443"
  token    = var.agent_token

  # The agent generates a self-signed certificate on first start; trust it
  # by content rather than switching verification off.
  ca_cert_pem = var.agent_ca_pem
}
