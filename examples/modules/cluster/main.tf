# A cluster of bare-metal machines: one boot profile per role, one machine
# per node, and the cluster that installs them role by role.

locals {
  node_roles = { for name, node in var.nodes : name => node.role }
}

resource "baremetal_boot_profile" "role" {
  for_each = { for r in var.roles : r.name => r }

  name   = "${var.name}-${each.key}"
  kernel = each.value.kernel
  # An image profile boots the agent's deploy ramdisk, so it takes no
  # initrds of its own (the provider refuses both).
  initrds   = each.value.image == null ? each.value.initrds : null
  cmdline   = each.value.cmdline
  image     = each.value.image
  templates = each.value.templates
  params    = each.value.params
}

resource "baremetal_machine" "node" {
  for_each = local.node_roles

  name = each.key
  # The password is ephemeral and write-only: in no plan file and no state.
  bmc = {
    endpoint            = var.nodes[each.key].bmc_endpoint
    username            = var.nodes[each.key].bmc_username
    password_wo         = var.bmc_passwords[each.key]
    password_wo_version = var.nodes[each.key].bmc_password_change
    insecure            = var.nodes[each.key].bmc_insecure
    ca_cert_pem         = var.nodes[each.key].bmc_ca_cert_pem
  }
  macs   = var.nodes[each.key].macs
  params = var.nodes[each.key].params

  # No boot_profile: the cluster's role decides what each member installs.
  timeouts {
    create = var.timeouts
    update = var.timeouts
  }
}

resource "baremetal_cluster" "this" {
  name = var.name

  roles = [
    for r in var.roles : {
      name         = r.name
      boot_profile = baremetal_boot_profile.role[r.name].name
    }
  ]

  members = [
    for name, role in local.node_roles : {
      machine = baremetal_machine.node[name].name
      role    = role
    }
  ]

  params = var.params

  rollout = {
    max_unavailable = var.max_unavailable
  }

  timeouts {
    create = var.timeouts
    update = var.timeouts
  }
}
