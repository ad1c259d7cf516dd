output "members" {
  description = "Each member's role, phase and the addresses its installer reported."
  value = {
    for m in baremetal_cluster.this.member_status : m.machine => {
      role      = m.role
      phase     = m.phase
      addresses = m.addresses
    }
  }
}

output "endpoints" {
  description = "Reported addresses by role."
  value       = baremetal_cluster.this.endpoints
}

output "roles" {
  description = "Roles in provisioning order with the boot profile of each."
  value       = [for r in baremetal_cluster.this.roles : { name = r.name, boot_profile = r.boot_profile }]
}
