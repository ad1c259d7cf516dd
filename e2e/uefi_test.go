package e2e

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/tapnet"
)

// TestUEFIFirmwarePXE installs a UEFI machine whose NIC has no iPXE ROM,
// so the whole chain starts in the firmware, as on most servers: EDK2's own
// PXE client (OVMF) gets ipxe.efi from the agent's TFTP on port 69, the
// iPXE it starts is sent to the agent's boot.ipxe over HTTP, and the
// machine's script boots the EFI-stub kernel with its initrd; the installer
// fetches its template and calls back, and the machine is provisioned. The
// guest is on a tap interface of its own, with the test's DHCP service as
// the site's: slirp would answer port 69 itself.
func TestUEFIFirmwarePXE(t *testing.T) {
	t.Parallel()
	root, image := requireSite(t, lab.DefaultOVMFCode, lab.DefaultOVMFVars, "/usr/lib/ipxe/ipxe.efi")
	tap := tapnet.New(t)
	_, bootPort := freeBoot(t)
	bootAddr := net.JoinHostPort(tap.HostIP.String(), bootPort)
	bootURL := "http://" + bootAddr
	e := startSite(t, root, image, siteOpts{
		bootAddr: bootAddr,
		bootURL:  bootURL,
		// PXE firmware speaks TFTP to port 69 only.
		tftpAddr: tap.HostIP.String() + ":69",
		lab:      []string{"--machines", "1", "--name-prefix", "uefi-", "--firmware", lab.FirmwareUEFI, "--tap", tap.Iface},
	})
	tap.ServeDHCP(t, "ipxe.efi", bootURL+"/boot.ipxe")

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	m := e.inventory.Machines[0]
	if m.Firmware != lab.FirmwareUEFI {
		t.Fatalf("lab machine firmware %q, want uefi", m.Firmware)
	}
	start := time.Now()
	got := e.provision(ctx, m, labProfile("lab-uefi", ""))
	t.Logf("%s: UEFI firmware PXE, provisioned %s after registration", m.Name, time.Since(start).Round(time.Second))
	if len(got.Addresses) == 0 || got.Addresses[0] != tap.GuestIP.String() {
		t.Errorf("addresses %v, want the DHCP address %s", got.Addresses, tap.GuestIP)
	}
	serial := e.serialLog(m.Name)
	for _, want := range []string{
		"Start PXE over IPv4",        // EDK2's own PXE client
		"efi: EFI v",                 // the kernel was started by EFI
		"fetched template user-data", // the installer ran with its initrd
	} {
		if !strings.Contains(serial, want) {
			t.Errorf("serial log lacks %q", want)
		}
	}
	if !strings.Contains(e.disk(m.Name), "BAREMETAL-INSTALLED machine="+m.Name) {
		t.Errorf("the installer's marker is not on the disk")
	}
}
