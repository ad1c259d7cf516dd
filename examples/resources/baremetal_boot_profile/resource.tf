# Debian 12 network install: the kernel and initrd come from the agent's
# assets directory, the preseed file is rendered per machine by the agent.
resource "baremetal_boot_profile" "debian" {
  name    = "debian-12"
  kernel  = "debian-12/linux"
  initrds = ["debian-12/initrd.gz"]
  cmdline = "auto=true priority=critical url={{ .URLs.Templates }}/preseed?token={{ .Token }} hostname={{ .Machine.Name }} console=ttyS0"

  templates = {
    # templatefile() fills in Terraform-side values; the {{ }} parts are left
    # for the agent, which renders them for each machine.
    preseed = templatefile("${path.module}/preseed.cfg.tftpl", {
      mirror = "deb.debian.org"
    })
  }

  params = {
    disk = "/dev/sda"
  }
}

# A profile that hands iPXE a complete script instead.
resource "baremetal_boot_profile" "rescue" {
  name        = "rescue"
  ipxe_script = <<-IPXE
    #!ipxe
    kernel https://boot.netboot.xyz/ipxe/netboot.xyz.lkrn
    boot
  IPXE
}

# Image deploy: the agent's deploy ramdisk writes a Debian cloud image to the
# smallest SSD of at least 100 GiB, verifies it, adds a NoCloud config drive
# with the stock cloud-init user-data (which calls back from the deployed OS)
# and boots the disk. Debian publishes the image as qcow2: the agent checks
# it against the checksum, converts it to raw once and serves that to the
# ramdisk. On destroy the ramdisk removes the config drive and, with
# wipe = "metadata", every signature and partition table on that disk.
resource "baremetal_boot_profile" "debian_image" {
  name    = "debian-12-image"
  cmdline = "console=ttyS0"

  image = {
    url      = "images/debian-12-genericcloud-amd64.qcow2"
    checksum = "sha256:9f1c0b6a2e5d4c3b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b"
    format   = "qcow2"
    wipe     = "metadata"
  }

  root_device = {
    min_size_gib = 100
    rotational   = false
  }
}
