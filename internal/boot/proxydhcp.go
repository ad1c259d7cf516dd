package boot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// proxyParams is what a ProxyDHCP answer depends on.
type proxyParams struct {
	bootURL  string // advertised boot URL, no trailing slash
	serverIP net.IP // next-server (TFTP)
	arm64EFI string // arm64 binary in the TFTP root, "" when there is none
}

// Boot files for PXE ROMs, as Debian's ipxe package names them.
const (
	biosBootFile = "undionly.kpxe"
	efiBootFile  = "ipxe.efi"
)

// pxeVendorOptions is option 43 for PXE clients: sub-option 6
// (PXE_DISCOVERY_CONTROL) = 8, "download the boot file named in this
// offer", so the ROM skips boot-server discovery; then the end marker.
var pxeVendorOptions = []byte{6, 1, 8, 255}

// handleProxyDHCP answers one DHCP packet as a ProxyDHCP server (PXE spec
// 2.1): only PXE clients' DISCOVER and REQUEST get a reply, and the reply
// carries boot information only: no yiaddr, lease, router or DNS, so the
// site's DHCP server stays the only one handing out addresses. nil means
// "stay silent".
func handleProxyDHCP(p proxyParams, req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, string) {
	if req == nil || req.OpCode != dhcpv4.OpcodeBootRequest || p.serverIP == nil {
		return nil, ""
	}
	var replyType dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		replyType = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		replyType = dhcpv4.MessageTypeAck
	default:
		return nil, ""
	}
	if !strings.HasPrefix(req.ClassIdentifier(), "PXEClient") {
		return nil, ""
	}
	var file, kind string
	for _, uc := range req.UserClass() {
		if uc == "iPXE" {
			// Already iPXE: hand it the HTTP script, or it would load
			// itself again (the chainload loop).
			file, kind = p.bootURL+"/boot.ipxe", "ipxe"
		}
	}
	if file == "" {
		arch := iana.INTEL_X86PC // option 93 is mandatory for PXE; old ROMs omit it on BIOS
		if archs := req.ClientArch(); len(archs) > 0 {
			arch = archs[0]
		}
		switch arch {
		case iana.INTEL_X86PC:
			file, kind = biosBootFile, "bios"
		case iana.EFI_X86_64, iana.EFI_BC:
			file, kind = efiBootFile, "efi-x86_64"
		case iana.EFI_ARM64:
			if p.arm64EFI == "" {
				return nil, ""
			}
			file, kind = p.arm64EFI, "efi-arm64"
		default:
			return nil, ""
		}
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(replyType),
		dhcpv4.WithServerIP(p.serverIP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(p.serverIP)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")),
		dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, pxeVendorOptions),
		dhcpv4.WithOption(dhcpv4.OptTFTPServerName(p.serverIP.String())),
		dhcpv4.WithOption(dhcpv4.OptBootFileName(file)),
		// PXE clients expect their machine UUID (option 97) echoed.
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientMachineIdentifier),
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, ""
	}
	resp.BootFileName = file
	resp.YourIPAddr = net.IPv4zero
	return resp, kind
}

// ListenProxyDHCP opens the DHCP port (broadcast-capable, bound to the
// interface) and the PXE boot-server port 4011.
func (s *Server) ListenProxyDHCP() (net.PacketConn, net.PacketConn, error) {
	c := s.cfg.ProxyDHCP
	if s.proxyServerIP() == nil {
		return nil, nil, errors.New("boot: ProxyDHCP needs the agent's boot-network address (server IP, or an interface with an IPv4 address)")
	}
	addr := c.Addr
	if addr == "" {
		addr = ":67"
	}
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("boot: ProxyDHCP address %q: %w", addr, err)
	}
	dhcp, err := server4.NewIPv4UDPConn(c.Interface, ua)
	if err != nil {
		return nil, nil, fmt.Errorf("boot: ProxyDHCP listen on %s (interface %q): %w", addr, c.Interface, err)
	}
	pxe, err := server4.NewIPv4UDPConn(c.Interface, &net.UDPAddr{IP: ua.IP, Port: 4011})
	if err != nil {
		dhcp.Close()
		return nil, nil, fmt.Errorf("boot: ProxyDHCP listen on port 4011: %w", err)
	}
	return dhcp, pxe, nil
}

func (s *Server) proxyServerIP() net.IP {
	c := s.cfg.ProxyDHCP
	if c.ServerIP != nil {
		return c.ServerIP.To4()
	}
	if c.Interface == "" {
		return nil
	}
	ifc, err := net.InterfaceByName(c.Interface)
	if err != nil {
		return nil
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.To4()
		}
	}
	return nil
}

// ServeProxyDHCP answers PXE clients on pc until ctx ends. pc is closed
// when it returns.
func (s *Server) ServeProxyDHCP(ctx context.Context, pc net.PacketConn) error {
	params := proxyParams{bootURL: s.bootURL, serverIP: s.proxyServerIP(), arm64EFI: s.arm64EFI}
	if params.serverIP == nil {
		pc.Close()
		return errors.New("boot: ProxyDHCP needs the agent's boot-network address (server IP, or an interface with an IPv4 address)")
	}
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	defer pc.Close()
	buf := make([]byte, 1500)
	for {
		n, peer, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("boot: ProxyDHCP on %s: %w", pc.LocalAddr(), err)
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			continue
		}
		resp, kind := handleProxyDHCP(params, req)
		if resp == nil {
			continue
		}
		mac := req.ClientHWAddr.String()
		s.log.Info("proxydhcp: answering PXE client", "mac", mac, "type", req.MessageType().String(), "boot_file", resp.BootFileName)
		s.metrics.dhcpReplies.WithLabelValues(kind).Inc()
		if m, err := s.st.MachineByMAC(ctx, mac); err == nil {
			s.lc.Signal(ctx, m.Name, model.SignalPXERequested, map[string]string{"mac": mac, "via": "proxydhcp", "boot_file": resp.BootFileName})
		}
		dst := peer
		// A client without an address cannot receive unicast: broadcast.
		if ua, ok := peer.(*net.UDPAddr); ok && (ua.IP.IsUnspecified() || ua.IP.Equal(net.IPv4bcast)) {
			dst = &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
		}
		if _, err := pc.WriteTo(resp.ToBytes(), dst); err != nil {
			s.log.Warn("proxydhcp: reply failed", "mac", mac, "error", err.Error())
		}
	}
}
