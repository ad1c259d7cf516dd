package boot

import (
	"net"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// FuzzProxyDHCPPacket feeds arbitrary bytes to the ProxyDHCP handler the
// way the server loop does (dhcpv4.FromBytes, then handleProxyDHCP): it
// never panics, and whatever it answers stays a ProxyDHCP answer: no
// address, no lease, no router, only an offer or ack naming one of the
// agent's boot files, that itself parses back.
func FuzzProxyDHCPPacket(f *testing.F) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	pxe := dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001"))
	for _, mods := range [][]dhcpv4.Modifier{
		{pxe, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC))},
		{pxe, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest)},
		{pxe, dhcpv4.WithUserClass("iPXE", true)},
		{pxe, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_ARM64))},
		{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("MSFT 5.0"))},
	} {
		d, err := dhcpv4.NewDiscovery(mac, mods...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(d.ToBytes())
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, 6, 0})
	p := proxyParams{bootURL: "http://192.168.1.10:8081", serverIP: net.IPv4(192, 168, 1, 10).To4(), arm64EFI: "ipxe-arm64.efi"}
	allowed := map[string]bool{biosBootFile: true, efiBootFile: true, "ipxe-arm64.efi": true, p.bootURL + "/boot.ipxe": true}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := dhcpv4.FromBytes(data)
		if err != nil {
			return // the server loop drops what does not parse
		}
		resp, kind := handleProxyDHCP(p, req)
		if resp == nil {
			return
		}
		if kind == "" {
			t.Fatal("an answer without a boot kind")
		}
		if mt := resp.MessageType(); mt != dhcpv4.MessageTypeOffer && mt != dhcpv4.MessageTypeAck {
			t.Fatalf("answered with %s", mt)
		}
		if !resp.YourIPAddr.IsUnspecified() {
			t.Fatalf("ProxyDHCP handed out address %s", resp.YourIPAddr)
		}
		for _, o := range []dhcpv4.OptionCode{dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionRouter, dhcpv4.OptionSubnetMask, dhcpv4.OptionDomainNameServer} {
			if resp.Options.Has(o) {
				t.Fatalf("ProxyDHCP answer carries %s", o)
			}
		}
		if !allowed[resp.BootFileName] {
			t.Fatalf("boot file %q", resp.BootFileName)
		}
		back, err := dhcpv4.FromBytes(resp.ToBytes())
		if err != nil {
			t.Fatalf("the answer does not parse: %v", err)
		}
		if back.TransactionID != req.TransactionID {
			t.Fatal("transaction id not echoed")
		}
	})
}

// FuzzRenderInstallTemplate: a parameter or a machine-reported value is
// data, never template code: whatever it holds ("{{ .Token }}", "{{
// template }}", delimiters, control bytes) is copied verbatim, so it cannot
// pull the run token or anything else into a rendered install template.
func FuzzRenderInstallTemplate(f *testing.F) {
	for _, seed := range []string{"plain", "{{ .Token }}", "{{ .Machine.Run.Token }}", "}}{{", "{{/* x */}}", "{{ template \"x\" }}", "\x00\n\r$", "{{ call .X }}"} {
		f.Add(seed)
	}
	s := testRenderServer(f)
	const token = "run-token-0123456789"
	p := &model.BootProfile{Name: "p1", Kernel: "vmlinuz",
		Templates: map[string]string{"user-data": "#cloud-config\nhostname: {{ .Machine.Name }}\nnote: <{{ .Params.v }}>\n"}}
	f.Fuzz(func(t *testing.T, v string) {
		m := provisioningMachine(map[string]string{"v": v})
		m.Run.Token = token
		got, ok, err := s.renderTemplate(renderInput{machine: m, profile: p, token: token}, "user-data")
		if !utf8.ValidString(v) {
			// Templates are text: bytes that are not UTF-8 are refused,
			// naming the param, rather than rendered (or mangled).
			if err == nil || !strings.Contains(err.Error(), `param "v" is not valid UTF-8`) {
				t.Fatalf("a value that is not UTF-8: ok=%v err=%v", ok, err)
			}
			return
		}
		if err != nil || !ok {
			t.Fatalf("render: ok=%v err=%v", ok, err)
		}
		want := "#cloud-config\nhostname: m1\nnote: <" + v + ">\n"
		if got != want {
			t.Fatalf("rendered %q, want the value verbatim: %q", got, want)
		}
		if !strings.Contains(v, token) && strings.Contains(got, token) {
			t.Fatal("a parameter pulled the run token into the template")
		}
	})
}
