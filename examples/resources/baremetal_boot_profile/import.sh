# A boot profile is imported by its name.
terraform import baremetal_boot_profile.debian debian-12
