data "baremetal_agent" "this" {}

output "agent" {
  value = "${data.baremetal_agent.this.version} (API ${data.baremetal_agent.this.api_version}), boot URL ${data.baremetal_agent.this.boot_url}"
}

# Fail early when the agent lacks something the configuration relies on.
check "agent_api" {
  assert {
    condition     = data.baremetal_agent.this.api_version == "v1"
    error_message = "This configuration needs an agent speaking API v1."
  }
}
