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
)

// TestLabVMIsolation shows that a lab VM reaches the agent's boot
// endpoints and nothing else. The installer probes, from inside the VM: the
// agent's forwarded boot port (must open), a TCP port and a UDP port that
// listen on the host's loopback, which an unrestricted user network would
// reach as 10.0.2.2 (must not: the host-side listeners count every
// connection and datagram), and an outside address.
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

	bootPort := fmt.Sprint(freeTCPPort(t))
	e := startSite(t, root, image, siteOpts{
		bootAddr: "127.0.0.1:" + bootPort, bootURL: lab.QEMUBootURL(bootPort),
		tftpAddr: fmt.Sprintf("127.0.0.1:%d", freeUDPPort(t)),
		lab:      []string{"--machines", "1", "--name-prefix", "iso-", "--boot-url", lab.QEMUBootURL(bootPort)},
	})
	hostTCP := fmt.Sprintf("10.0.2.2:%d", tcpLn.Addr().(*net.TCPAddr).Port)
	hostUDP := fmt.Sprintf("10.0.2.2:%d", udp.LocalAddr().(*net.UDPAddr).Port)
	agent := lab.QEMUAgentAddress + ":" + bootPort
	probes := []string{agent, hostTCP, "udp:" + hostUDP, "1.1.1.1:80", "10.0.2.3:53"}

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	m := e.inventory.Machines[0]
	e.provision(ctx, m, labProfile("lab-probe", "baremetal.probe="+strings.Join(probes, ",")))

	serial := e.serialLog(m.Name)
	for probe, want := range map[string]string{
		agent:            "open",
		hostTCP:          "closed",
		"udp:" + hostUDP: "sent",
		"1.1.1.1:80":     "closed",
		"10.0.2.3:53":    "closed",
	} {
		if line := "installer: probe " + probe + " " + want; !strings.Contains(serial, line) {
			t.Errorf("serial log lacks %q", line)
		}
	}
	if n := tcpHits.Load(); n != 0 {
		t.Errorf("the VM opened %d connection(s) to the host's loopback", n)
	}
	if n := udpHits.Load(); n != 0 {
		t.Errorf("the VM sent %d datagram(s) to the host's loopback", n)
	}
}
