# A profile managed elsewhere (another configuration or team).
data "baremetal_boot_profile" "debian" {
  name = "debian-12"
}

output "debian_profile_version" {
  value = data.baremetal_boot_profile.debian.version
}
