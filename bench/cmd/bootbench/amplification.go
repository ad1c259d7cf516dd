package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// amplificationWait is how long the answers to one unacknowledged request
// are collected: past the last re-send of every contender (tftpd-hpa's
// back-off is the longest).
const amplificationWait = 75 * time.Second

// udpOverhead is what IPv4 and UDP add to every datagram on the wire.
const udpOverhead = 28

// amplificationRequest is one kind of read request an attacker can forge.
type amplificationRequest struct {
	name   string
	packet []byte
}

func amplificationRequests(file string) []amplificationRequest {
	rrq := func(parts ...string) []byte {
		p := []byte{0, 1}
		for _, s := range parts {
			p = append(p, s+"\x00"...)
		}
		return p
	}
	return []amplificationRequest{
		{"octet, no options", rrq(file, "octet")},
		{"octet, blksize 1468 and tsize", rrq(file, "octet", "blksize", "1468", "tsize", "0")},
		{"no mode (RFC 1350 requires one)", rrq(file)},
	}
}

// amplificationResult is what one request made a server send back.
type amplificationResult struct {
	datagrams int
	payload   int // UDP payload bytes
	err       error
}

// benchAmplification sends every contender each kind of read request once,
// from a socket that never acknowledges (as the victim of a forged source
// address would), and counts what comes back. All requests run at once.
func benchAmplification(e *env) (string, error) {
	const file = "ipxe-1m.bin"
	if _, err := writeRandomFile(filepath.Join(e.root, file), 1<<20); err != nil {
		return "", err
	}
	servers := startTFTPServers(e)
	defer func() {
		for _, s := range servers {
			if s.proc != nil {
				s.proc.Stop()
			}
		}
	}()
	reqs := amplificationRequests(file)
	results := make([][]amplificationResult, len(reqs))
	var wg sync.WaitGroup
	for i, rq := range reqs {
		results[i] = make([]amplificationResult, len(servers))
		for j, s := range servers {
			if s.err != nil {
				results[i][j].err = s.err
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i][j] = unacknowledged(s.addr, rq.packet)
			}()
		}
	}
	logf("amplification: %d requests, collecting answers for %s", len(reqs)*len(servers), amplificationWait)
	wg.Wait()

	var b strings.Builder
	fmt.Fprintf(&b, "## TFTP amplification\n\n")
	fmt.Fprintf(&b, "One read request for %s (1 MiB) to each server, from a UDP socket that never acknowledges, as the victim of a forged source address receives the answers; every answer is counted for %s, past each server's last re-send. A cell is the bytes on the wire (UDP payload plus %d bytes of IPv4 and UDP header per datagram) per byte of the request on the wire, with the datagrams sent in brackets. The agent rows run with their defaults (caps, at most two re-sends before the first ACK); the anticipate row sets a window of %d.\n\n",
		file, amplificationWait, udpOverhead, e.anticipate)
	b.WriteString("| request | request bytes |")
	for _, s := range servers {
		fmt.Fprintf(&b, " %s |", s.name)
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(servers)) + "\n")
	var missed []string
	for i, rq := range reqs {
		in := len(rq.packet) + udpOverhead
		fmt.Fprintf(&b, "| %s | %d |", rq.name, in)
		agent, bestPeer := -1, -1
		for j, s := range servers {
			r := results[i][j]
			if r.err != nil {
				fmt.Fprintf(&b, " n/a (%s) |", oneLine(r.err))
				continue
			}
			out := r.payload + r.datagrams*udpOverhead
			fmt.Fprintf(&b, " %.1f× (%d) |", float64(out)/float64(in), r.datagrams)
			switch {
			case s.name == "agent":
				agent = out
			case s.peer && (bestPeer < 0 || out < bestPeer):
				bestPeer = out
			}
		}
		b.WriteString("\n")
		if agent < 0 || bestPeer < 0 || agent > bestPeer {
			missed = append(missed, rq.name)
		}
	}
	verdict := "met in every row"
	if len(missed) > 0 {
		verdict = "**missed** (or not measured) for: " + strings.Join(missed, "; ")
	}
	fmt.Fprintf(&b, "\nTarget (issue 19): the agent at or below the better of tftpd-hpa and dnsmasq: %s.\n", verdict)
	return b.String(), nil
}

// unacknowledged sends packet to addr from a fresh socket and counts what
// arrives within amplificationWait, never answering.
func unacknowledged(addr string, packet []byte) amplificationResult {
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return amplificationResult{err: err}
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return amplificationResult{err: err}
	}
	defer c.Close()
	if _, err := c.WriteToUDP(packet, to); err != nil {
		return amplificationResult{err: err}
	}
	var r amplificationResult
	buf := make([]byte, 65536)
	if err := c.SetReadDeadline(time.Now().Add(amplificationWait)); err != nil {
		return amplificationResult{err: err}
	}
	for {
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			return r
		}
		r.datagrams++
		r.payload += n
	}
}
