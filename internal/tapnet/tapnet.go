// Package tapnet gives a test a network of its own for a QEMU guest that
// must network-boot with its firmware's own PXE client: a host tap
// interface on a random /24 and a DHCP service on it configured as a
// site's DHCP server is for PXE. User-mode networking (slirp) cannot serve
// that case, because it answers every TFTP packet to its gateway's port 69
// itself, and PXE firmware only speaks to port 69.
//
// Creating a tap needs root and /dev/net/tun; without them the test is
// skipped, except in CI (CI=true), where it fails.
package tapnet

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// Net is one tap interface: the host's end and the one guest it serves.
type Net struct {
	Iface   string
	HostIP  net.IP
	GuestIP net.IP
}

// New creates a tap interface, removed when the test ends.
func New(t testing.TB) *Net {
	t.Helper()
	var r [4]byte
	_, _ = rand.Read(r[:])
	n := &Net{
		Iface:   fmt.Sprintf("bmtap%x", r[:]),
		HostIP:  net.IPv4(10, 200+r[0]%50, r[1], 1).To4(),
		GuestIP: net.IPv4(10, 200+r[0]%50, r[1], 15).To4(),
	}
	for _, args := range [][]string{
		{"tuntap", "add", "dev", n.Iface, "mode", "tap"},
		{"addr", "add", n.HostIP.String() + "/24", "dev", n.Iface},
		{"link", "set", n.Iface, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			_ = exec.Command("ip", "link", "del", n.Iface).Run()
			SkipOrFailInCI(t, fmt.Sprintf("ip %s: %v: %s (the test needs root and /dev/net/tun)", strings.Join(args, " "), err, out))
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "link", "del", n.Iface).CombinedOutput(); err != nil {
			t.Errorf("ip link del %s: %v: %s", n.Iface, err, out)
		}
	})
	return n
}

// ServeDHCP answers DHCP on the tap until the test ends: the guest's
// address, the host as next-server, and the boot file firmwareFile to PXE
// firmware or ipxeFile to iPXE (user class "iPXE"), which is how sites
// chain PXE into iPXE.
func (n *Net) ServeDHCP(t testing.TB, firmwareFile, ipxeFile string) {
	t.Helper()
	handler := func(conn net.PacketConn, _ net.Addr, req *dhcpv4.DHCPv4) {
		var reply dhcpv4.MessageType
		switch req.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			reply = dhcpv4.MessageTypeOffer
		case dhcpv4.MessageTypeRequest:
			reply = dhcpv4.MessageTypeAck
		default:
			return
		}
		file := firmwareFile
		if slices.Contains(req.UserClass(), "iPXE") {
			file = ipxeFile
		}
		resp, err := dhcpv4.NewReplyFromRequest(req,
			dhcpv4.WithMessageType(reply),
			dhcpv4.WithServerIP(n.HostIP),
			dhcpv4.WithYourIP(n.GuestIP),
			dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
			dhcpv4.WithRouter(n.HostIP),
			dhcpv4.WithLeaseTime(3600),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(n.HostIP)),
			dhcpv4.WithOption(dhcpv4.OptBootFileName(file)))
		if err != nil {
			t.Errorf("DHCP reply: %v", err)
			return
		}
		resp.BootFileName = file
		if _, err := conn.WriteTo(resp.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}); err != nil {
			t.Errorf("DHCP reply: %v", err)
		}
	}
	conn, err := server4.NewIPv4UDPConn(n.Iface, &net.UDPAddr{Port: dhcpv4.ServerPort})
	if err != nil {
		t.Fatalf("DHCP on %s: %v", n.Iface, err)
	}
	srv, err := server4.NewServer(n.Iface, nil, handler, server4.WithConn(conn))
	if err != nil {
		t.Fatalf("DHCP on %s: %v", n.Iface, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve()
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
}

// SkipOrFailInCI skips a test whose environment is missing, except in CI,
// where the environment is part of what is tested.
func SkipOrFailInCI(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}
