# The LUKS passphrase web-1's kickstart got from
# {{ generatedSecret "luks" }}, read without it entering the plan or state
# (made now if no template has asked for it yet). When the machine is
# created by the same configuration, use baremetal_machine.<name>.id
# instead of the name: Terraform then opens this after the machine exists.
ephemeral "baremetal_machine_secret" "luks" {
  machine = "web-1"
  name    = "luks"
}

# Hand it on through a write-only attribute of another provider, e.g. a
# secret store (Terraform 1.11 or later):
#
# resource "vault_kv_secret_v2" "luks" {
#   mount                = "secret"
#   name                 = "machines/web-1/luks"
#   data_json_wo         = jsonencode({ passphrase = ephemeral.baremetal_machine_secret.luks.value })
#   data_json_wo_version = 1
# }
