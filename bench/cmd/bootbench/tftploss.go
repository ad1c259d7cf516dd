package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/openbaremetal/terraform-provider-baremetal/bench/internal/peers"
	"github.com/openbaremetal/terraform-provider-baremetal/bench/internal/report"
)

// lossFile is what the lossy-link rows fetch: the size of an iPXE binary,
// the one file every PXE client fetches over TFTP.
const (
	lossFile = "ipxe-1m.bin"
	lossSize = 1 << 20
)

// tftpLossCases lists the lossy-link rows. Lock-step TFTP pays a timeout per
// lost packet (about 14 per 1 MiB transfer at 1% loss and blksize 1468), so
// a row takes tens of seconds whatever the CPUs do; -quick keeps one row at
// half that loss (about 20 s), which still costs a windowed transfer
// several losses.
func tftpLossCases(quick bool) []tftpCase {
	cs := []tftpCase{{blksize: 1468, clients: 50, loss: 0.005}}
	if !quick {
		cs = []tftpCase{
			{blksize: 1468, clients: 50, loss: 0.01},
			{blksize: 512, clients: 50, loss: 0.01},
			{blksize: 1468, clients: 50, loss: 0.02},
		}
	}
	for i := range cs {
		cs[i].file, cs[i].size, cs[i].transfers, cs[i].seed = lossFile, lossSize, 1, uint64(i+1)
	}
	return cs
}

// benchTFTPLoss measures the lossy-link rows against the peers already
// running and two agents of its own with the default per-packet timeout
// (1 s, as the peers), one in lock-step and one with the sender window.
// All contenders of a row run at
// the same time: a row's wall time is spent waiting out timeouts, not on
// the CPUs, and one row per contender in turn would take minutes.
func benchTFTPLoss(e *env, servers []*tftpServer, cases []tftpCase, want []byte) (string, error) {
	var contenders []*tftpServer
	for _, anticipate := range []uint{0, e.anticipate} {
		name := "agent"
		if anticipate > 1 {
			name += fmt.Sprintf(", anticipate %d", anticipate)
		}
		s := &tftpServer{name: name}
		port, err := peers.FreePort("udp")
		if err == nil {
			s.addr = "127.0.0.1:" + strconv.Itoa(port)
			s.proc, err = e.startAgent(fmt.Sprintf("agent-tftp-loss-anticipate%d", anticipate),
				[]string{"-tftp", s.addr, "-root", e.root, "-anticipate", strconv.FormatUint(uint64(anticipate), 10)})
		}
		if err != nil {
			logf("%s: not measured: %v", name, err)
			s.err = err
		}
		contenders = append(contenders, s)
	}
	defer func() {
		for _, s := range contenders {
			if s.proc != nil {
				s.proc.Stop()
			}
		}
	}()
	for _, s := range servers {
		if s.peer {
			contenders = append(contenders, s)
		}
	}
	rows := make([][]tftpTrial, len(cases))
	for ci, c := range cases {
		rows[ci] = make([]tftpTrial, len(contenders))
		var wg sync.WaitGroup
		errs := make([]error, len(contenders))
		for si, s := range contenders {
			if s.err != nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				rows[ci][si], errs[si] = runTFTPTrial(s, c, want)
			}()
		}
		wg.Wait()
		for si, s := range contenders {
			if errs[si] != nil {
				return "", fmt.Errorf("%s: %w", s.name, errs[si])
			}
			if s.err != nil {
				continue
			}
			t := rows[ci][si]
			logf("tftp loss %g%% blksize %d, %d clients: %s %.2f MiB/s, %d/%d failed, %d dropped",
				c.loss*100, c.blksize, c.clients, s.name, float64(t.bytes)/(1<<20)/t.wall.Seconds(), t.failed, t.total, t.dropped)
			if t.firstErr != nil {
				logf("  first failure: %v", t.firstErr)
			}
		}
	}
	var b strings.Builder
	b.WriteString("\n### Lossy link\n\n")
	fmt.Fprintf(&b, "The load client drops a seeded fraction of the DATA packets it receives and of the ACKs it sends "+
		"(`tftpload.Options.Loss`: loss in both directions as the server sees it; the kernel here has no netem), "+
		"decided per packet, so every contender meets the same drops. %s, every client at once, one repetition, "+
		"all contenders of a row at the same time (the time goes to timeouts, not to the CPUs). "+
		"Both agents run with the defaults: a 1 s per-packet timeout like the peers, each further re-send of the same datagram after twice the wait before. "+
		"Throughput as above; failed transfers count no bytes.\n\n", lossFile)
	b.WriteString("| loss | blksize | clients | server | MiB/s | p50 ms | p99 ms | failed | re-sends | dropped |\n|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|\n")
	for ci, c := range cases {
		for si, s := range contenders {
			if s.err != nil {
				fmt.Fprintf(&b, "| %g%% | %d | %d×%d | %s | not measured: %s ||||||\n", c.loss*100, c.blksize, c.clients, c.transfers, s.name, oneLine(s.err))
				continue
			}
			t := rows[ci][si]
			fmt.Fprintf(&b, "| %g%% | %d | %d×%d | %s | %s | %s | %s | %d/%d | %d | %d |\n", c.loss*100, c.blksize, c.clients, c.transfers, s.name,
				report.F(float64(t.bytes)/(1<<20)/t.wall.Seconds(), 2),
				report.F(report.Percentile(t.durations, 50)*1e3, 0), report.F(report.Percentile(t.durations, 99)*1e3, 0),
				t.failed, t.total, t.resends, t.dropped)
		}
	}
	return b.String(), nil
}

// lossFileBytes returns the lossy rows' file, writing it when the main
// rows did not.
func lossFileBytes(e *env, files map[string][]byte) ([]byte, error) {
	if b, ok := files[lossFile]; ok {
		return b, nil
	}
	return writeRandomFile(filepath.Join(e.root, lossFile), lossSize)
}
