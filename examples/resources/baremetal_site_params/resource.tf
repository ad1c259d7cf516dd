# Site-wide params, below every profile's, cluster's and machine's
# (site < profile < cluster < machine), and a secret every install of the
# site may read with {{ secret "join_token" }}.
variable "join_token" {
  type      = string
  sensitive = true
  ephemeral = true # Terraform 1.10 or later: never in the plan or state
}

resource "baremetal_site_params" "site" {
  params = {
    timezone    = "Europe/Paris"
    ntp_servers = "ntp1.example.net,ntp2.example.net"
    proxy       = "http://proxy.example.net:3128"
  }

  # Write-only (Terraform 1.11 or later): sent to the agent, sealed there,
  # never stored in the plan or state. Bump the version to send new values.
  secret_params_wo = {
    join_token = var.join_token
  }
  secret_params_wo_version = 1
}
