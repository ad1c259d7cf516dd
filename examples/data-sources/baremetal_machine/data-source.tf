data "baremetal_machine" "web" {
  name = "web-01"
}

output "web" {
  value = {
    phase       = data.baremetal_machine.web.phase
    power_state = data.baremetal_machine.web.power_state
    memory_gib  = data.baremetal_machine.web.inventory.memory_gib
    addresses   = data.baremetal_machine.web.addresses
  }
}
