package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

// TestLabVMIsolation shows that a lab VM reaches the agent's boot
// endpoints, a peer's published port (--hostfwd-peers) and nothing else.
// The installer probes, from inside the VM: the agent's forwarded boot port
// (must open), a TCP port and a UDP port that listen on the host's
// loopback, which an unrestricted user network would reach as 10.0.2.2
// (must not: the host-side listeners count every connection and datagram),
// an outside address, and the peer iso-1 at its address 10.0.2.15: its
// published port 2379 (must open, and arrive at the host end of iso-1's
// forward, which this test holds since iso-1 stays off) and another port
// (must not).
func TestLabVMIsolation(t *testing.T) {
	t.Parallel()
	root, image := requireSite(t)
	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcpLn.Close()
	var tcpHits, udpHits atomic.Int32
	go func() {
		for {
			c, err := tcpLn.Accept()
			if err != nil {
				return
			}
			tcpHits.Add(1)
			c.Close()
		}
	}()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := udp.ReadFrom(buf); err != nil {
				return
			}
			udpHits.Add(1)
		}
	}()

	// The host end of iso-1's published port: QEMU would listen here for
	// a running iso-1; iso-1 stays off, so the test listens and counts.
	peerLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peerLn.Close()
	var peerHits atomic.Int32
	go func() {
		for {
			c, err := peerLn.Accept()
			if err != nil {
				return
			}
			peerHits.Add(1)
			c.Close()
		}
	}()

	bootAddr, bootPort := freeBoot(t)
	e := startSite(t, root, image, siteOpts{
		bootAddr: bootAddr, bootURL: lab.QEMUBootURL(bootPort),
		tftpAddr: testenv.FreeUDP(t).Release(),
		lab: []string{"--machines", "2", "--name-prefix", "iso-", "--boot-url", lab.QEMUBootURL(bootPort),
			"--hostfwd", fmt.Sprintf("iso-1=%d:2379", port(t, peerLn.Addr())), "--hostfwd-peers"},
	})
	hostTCP := fmt.Sprintf("10.0.2.2:%d", port(t, tcpLn.Addr()))
	hostUDP := fmt.Sprintf("10.0.2.2:%d", port(t, udp.LocalAddr()))
	agent := lab.QEMUAgentAddress + ":" + bootPort
	probes := []string{agent, hostTCP, "udp:" + hostUDP, "1.1.1.1:80", "10.0.2.3:53", "10.0.2.15:2379", "10.0.2.15:22"}

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	m := e.inventory.Machines[1] // iso-2, at 10.0.2.16
	e.provision(ctx, m, labProfile("lab-probe", "baremetal.probe="+strings.Join(probes, ",")))

	serial := e.serialLog(m.Name)
	for probe, want := range map[string]string{
		agent:            "open",
		hostTCP:          "closed",
		"udp:" + hostUDP: "sent",
		"1.1.1.1:80":     "closed",
		"10.0.2.3:53":    "closed",
		"10.0.2.15:2379": "open",
		"10.0.2.15:22":   "closed",
	} {
		if line := "installer: probe " + probe + " " + want; !strings.Contains(serial, line) {
			t.Errorf("serial log lacks %q", line)
		}
	}
	if n := tcpHits.Load(); n != 0 {
		t.Errorf("the VM opened %d connection(s) to the host's loopback", n)
	}
	if n := peerHits.Load(); n != 1 {
		t.Errorf("the peer's published port got %d connection(s) at its host end, want the probe's 1", n)
	}
	if n := udpHits.Load(); n != 0 {
		t.Errorf("the VM sent %d datagram(s) to the host's loopback", n)
	}
}

// port is the port of a TCP or UDP address.
func port(t *testing.T, addr net.Addr) int {
	t.Helper()
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.Port
	case *net.UDPAddr:
		return a.Port
	}
	t.Fatalf("%v is a %T, not a TCP or UDP address", addr, addr)
	return 0
}
