import {
  to = baremetal_boot_profile.debian
  id = "debian-12"
}
