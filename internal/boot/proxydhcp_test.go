package boot

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

var testMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

func pxeDiscover(t *testing.T, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	req, err := dhcpv4.NewDiscovery(testMAC, mods...)
	must(t, err)
	// Round-trip through the wire format, as the server sees packets.
	req, err = dhcpv4.FromBytes(req.ToBytes())
	must(t, err)
	return req
}

func TestProxyDHCPAnswers(t *testing.T) {
	p := proxyParams{bootURL: "http://192.168.1.10:8081", serverIP: net.IPv4(192, 168, 1, 10).To4()}
	pxe := dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001"))
	uuid := dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, make([]byte, 16)...))
	for _, tc := range []struct {
		name string
		req  *dhcpv4.DHCPv4
		file string // "" = no answer
		typ  dhcpv4.MessageType
	}{
		{"bios", pxeDiscover(t, pxe, uuid, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC))), "undionly.kpxe", dhcpv4.MessageTypeOffer},
		{"uefi x86-64", pxeDiscover(t, pxe, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64))), "ipxe.efi", dhcpv4.MessageTypeOffer},
		{"uefi bc", pxeDiscover(t, pxe, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_BC))), "ipxe.efi", dhcpv4.MessageTypeOffer},
		{"request on 4011", pxeDiscover(t, pxe, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64))), "ipxe.efi", dhcpv4.MessageTypeAck},
		{"ipxe", pxeDiscover(t, pxe, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)), dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE"))), "http://192.168.1.10:8081/boot.ipxe", dhcpv4.MessageTypeOffer},
		{"ipxe rfc3004 user class", pxeDiscover(t, pxe, dhcpv4.WithUserClass("iPXE", true)), "http://192.168.1.10:8081/boot.ipxe", dhcpv4.MessageTypeOffer},
		{"arm64 without binary", pxeDiscover(t, pxe, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_ARM64))), "", 0},
		{"not pxe", pxeDiscover(t, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("MSFT 5.0"))), "", 0},
		{"no class", pxeDiscover(t), "", 0},
		{"pxe release", pxeDiscover(t, pxe, dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease)), "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := handleProxyDHCP(p, tc.req)
			if tc.file == "" {
				if resp != nil {
					t.Fatalf("answered a client it must ignore: %s", resp.Summary())
				}
				return
			}
			if resp == nil {
				t.Fatal("no answer")
			}
			resp, err := dhcpv4.FromBytes(resp.ToBytes())
			must(t, err)
			if resp.MessageType() != tc.typ || resp.BootFileName != tc.file || resp.BootFileNameOption() != tc.file {
				t.Fatalf("type %s file %q/%q, want %s %q", resp.MessageType(), resp.BootFileName, resp.BootFileNameOption(), tc.typ, tc.file)
			}
			if !resp.ServerIPAddr.Equal(p.serverIP) || resp.TFTPServerName() != "192.168.1.10" || !resp.ServerIdentifier().Equal(p.serverIP) {
				t.Fatalf("next-server %v, option 66 %q, server id %v", resp.ServerIPAddr, resp.TFTPServerName(), resp.ServerIdentifier())
			}
			if !resp.YourIPAddr.IsUnspecified() || resp.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || resp.Options.Has(dhcpv4.OptionRouter) {
				t.Fatalf("a ProxyDHCP reply handed out addressing: %s", resp.Summary())
			}
			if resp.ClassIdentifier() != "PXEClient" || !slices.Equal(resp.Options.Get(dhcpv4.OptionVendorSpecificInformation), pxeVendorOptions) {
				t.Fatalf("option 60 %q / 43 %v", resp.ClassIdentifier(), resp.Options.Get(dhcpv4.OptionVendorSpecificInformation))
			}
			if resp.TransactionID != tc.req.TransactionID || resp.ClientHWAddr.String() != testMAC.String() {
				t.Fatal("reply does not match the request")
			}
			if tc.name == "bios" && len(resp.Options.Get(dhcpv4.OptionClientMachineIdentifier)) != 17 {
				t.Fatal("client machine UUID (option 97) not echoed")
			}
		})
	}
	p.arm64EFI = "arm64-efi/snp.efi"
	resp, _ := handleProxyDHCP(p, pxeDiscover(t, pxe, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_ARM64))))
	if resp == nil || resp.BootFileName != "arm64-efi/snp.efi" {
		t.Fatalf("arm64 with binary: %v", resp)
	}
}

// TestProxyDHCPServer runs the server loop on a loopback socket: a PXE
// DISCOVER from a known machine gets an OFFER and a pxe_requested signal; a
// non-PXE one gets nothing.
func TestProxyDHCPServer(t *testing.T) {
	st := openTestStore(t)
	lc := newRecordingLifecycle(st)
	mustCreateMachine(t, st, &model.Machine{Name: "m1", MACs: []string{testMAC.String()}, State: model.StateProvisioned})
	s, err := New(Config{BootURL: "http://127.0.0.1:8081", TFTPRoot: t.TempDir(), Logger: quietLogger(),
		ProxyDHCP: ProxyDHCPConfig{Enabled: true, ServerIP: net.IPv4(127, 0, 0, 1)}}, st, StoreSecrets(st), lc)
	must(t, err)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeProxyDHCP(ctx, pc) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeProxyDHCP: %v", err)
		}
	}()
	client, err := net.ListenPacket("udp4", "127.0.0.1:0")
	must(t, err)
	defer client.Close()

	nonPXE := pxeDiscover(t, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("udhcp 1.35.0")))
	_, err = client.WriteTo(nonPXE.ToBytes(), pc.LocalAddr())
	must(t, err)
	req := pxeDiscover(t, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)))
	_, err = client.WriteTo(req.ToBytes(), pc.LocalAddr())
	must(t, err)

	buf := make([]byte, 1500)
	must(t, client.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, _, err := client.ReadFrom(buf)
	must(t, err)
	resp, err := dhcpv4.FromBytes(buf[:n])
	must(t, err)
	if resp.TransactionID != req.TransactionID || resp.BootFileName != "ipxe.efi" || resp.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("reply: %s", resp.Summary())
	}
	must(t, client.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	if _, _, err := client.ReadFrom(buf); err == nil {
		t.Fatal("a second reply arrived: the non-PXE client was answered")
	}
	lc.waitFor(t, 5*time.Second, "pxe_requested", func() bool {
		return slices.Equal(lc.sequence("m1"), []model.Signal{model.SignalPXERequested})
	})
}
