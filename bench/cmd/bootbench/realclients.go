package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// realClient is a TFTP client operators and PXE tooling use, run as a
// process: the load client speaks TFTP the way this benchmark was written
// to, these check that every server also works with other implementations
// (their option negotiation, their ACK timing against a sender window).
type realClient struct {
	name    string
	bin     string
	blksize int // 0: a plain RFC 1350 request
	args    func(host, port, file, out string) []string
}

func realClients() []realClient {
	curl := func(bs int) realClient {
		return realClient{name: "curl", bin: "curl", blksize: bs, args: func(host, port, file, out string) []string {
			a := []string{"-sS", "--max-time", "60", "-o", out}
			if bs > 0 {
				a = append(a, "--tftp-blksize", fmt.Sprint(bs))
			}
			return append(a, "tftp://"+net.JoinHostPort(host, port)+"/"+file)
		}}
	}
	atftp := func(bs int) realClient {
		return realClient{name: "atftp", bin: "atftp", blksize: bs, args: func(host, port, file, out string) []string {
			var a []string
			if bs > 0 {
				a = append(a, "--option", fmt.Sprintf("blksize %d", bs))
			}
			return append(a, "-g", "-r", file, "-l", out, host, port)
		}}
	}
	// tftp-hpa's client sends plain requests only.
	hpa := realClient{name: "tftp (tftp-hpa)", bin: "tftp", args: func(host, port, file, out string) []string {
		return []string{"-m", "binary", host, port, "-c", "get", file, out}
	}}
	return []realClient{curl(0), curl(1468), atftp(0), atftp(1468), hpa}
}

// realClientTable fetches file from every running server with every real
// client installed and checks the bytes.
func realClientTable(e *env, servers []*tftpServer, file string, want []byte) string {
	var b strings.Builder
	b.WriteString("\n### Real TFTP clients\n\n")
	fmt.Fprintf(&b, "Each client fetches %s (%d bytes) once from each server; a cell is the transfer time when every byte matched. "+
		"Debian's curl, atftp and tftp-hpa client (`bench/setup.sh` installs the last two).\n\n", file, len(want))
	b.WriteString("| client | blksize |")
	for _, s := range servers {
		b.WriteString(" " + s.name + " |")
	}
	b.WriteString("\n|---|--:|")
	for range servers {
		b.WriteString("--:|")
	}
	b.WriteString("\n")
	for _, c := range realClients() {
		bs := "512 (no option)"
		if c.blksize > 0 {
			bs = fmt.Sprint(c.blksize)
		}
		fmt.Fprintf(&b, "| %s | %s |", c.name, bs)
		for _, s := range servers {
			b.WriteString(" " + fetchWithClient(e, c, s, file, want) + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func fetchWithClient(e *env, c realClient, s *tftpServer, file string, want []byte) string {
	if s.err != nil {
		return "n/a"
	}
	bin, err := exec.LookPath(c.bin)
	if err != nil {
		return "not installed"
	}
	host, port, err := net.SplitHostPort(s.addr)
	if err != nil {
		return "n/a"
	}
	out := filepath.Join(e.dir, "realclient.out")
	_ = os.Remove(out)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, c.args(host, port, file, out)...)
	start := time.Now()
	msg, err := cmd.CombinedOutput()
	took := time.Since(start)
	got, readErr := os.ReadFile(out)
	_ = os.Remove(out)
	switch {
	case err != nil:
		logf("real client %s (blksize %d) against %s: %v: %s", c.name, c.blksize, s.name, err, msg)
		return "**failed** (" + oneLine(fmt.Errorf("%v %s", err, bytes.TrimSpace(msg))) + ")"
	case readErr != nil || !bytes.Equal(got, want):
		logf("real client %s (blksize %d) against %s: got %d bytes, want %d identical", c.name, c.blksize, s.name, len(got), len(want))
		return fmt.Sprintf("**wrong bytes** (%d of %d)", len(got), len(want))
	}
	return fmt.Sprintf("%.0f ms", float64(took)/float64(time.Millisecond))
}
