# A site's partitioning for every kickstart built from the stock one: the
# snippet replaces the stock "kickstart-partitioning" for the whole agent.
resource "baremetal_template" "partitioning" {
  name        = "kickstart-partitioning"
  description = "RAID1 on the first two disks, everything else untouched"
  content     = <<-EOT
    ignoredisk --only-use=sda,sdb
    zerombr
    clearpart --all --initlabel --drives=sda,sdb
    part raid.01 --size=1 --grow --ondisk=sda
    part raid.02 --size=1 --grow --ondisk=sdb
    raid pv.01 --level=1 --device=md0 raid.01 raid.02
    volgroup vg0 pv.01
    logvol / --vgname=vg0 --name=root --fstype=xfs --size=1 --grow
  EOT
}

# A snippet of its own, included by a profile's template with
# {{ template "motd" . }} (or {{ include "motd" . | indent 2 }}).
resource "baremetal_template" "motd" {
  name    = "motd"
  content = "echo {{ shellQuote (printf \"%s, rack %s\" .Machine.Name (default \"?\" (index .Params \"rack\"))) }} > /etc/motd"
}
