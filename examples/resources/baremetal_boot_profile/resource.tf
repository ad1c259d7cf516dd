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
