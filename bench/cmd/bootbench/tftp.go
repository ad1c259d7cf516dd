package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/bench/internal/peers"
	"github.com/openbaremetal/terraform-provider-baremetal/bench/internal/tftpload"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

// tftpServer is one contender: a process serving the TFTP root on addr.
type tftpServer struct {
	name string
	peer bool // one of the tools operators run today (the ratio's baseline)
	addr string
	proc *peers.Proc
	err  error // why it could not be started (the row shows n/a)
}

// tftpCase is one row: every client fetches file `transfers` times, all
// clients starting together (a boot storm).
type tftpCase struct {
	file      string
	size      int
	blksize   int
	clients   int
	transfers int // per client
	// loss is the fraction of DATA and ACK packets the load client drops
	// (tftpload's lossy link); seed tells the rows' drop patterns apart.
	loss float64
	seed uint64
}

func (c tftpCase) name() string { return fmt.Sprintf("%s/%d/%d", c.file, c.blksize, c.clients) }

// heavyReps caps the repetitions of storms that move 1 GiB or more (-heavy-reps):
// 50 clients fetching 32 MiB in 512-byte lock-step take a minute per
// contender, 200 clients four, and `make bench` has 40 minutes on 2 cores.
var heavyReps = 1

func (c tftpCase) reps(n int) int {
	if int64(c.size)*int64(c.clients)*int64(c.transfers) >= 1<<30 {
		return min(n, heavyReps)
	}
	return n
}

type tftpTrial struct {
	wall      time.Duration
	bytes     int64
	durations []float64 // seconds, successful transfers
	failed    int
	total     int
	resends   int
	dropped   int
	cpu       time.Duration
	firstErr  error
}

// startTFTPServers starts every contender on its own loopback address. A
// contender that cannot start is kept with its error so the table says why
// its row is empty instead of silently dropping it.
func startTFTPServers(e *env) []*tftpServer {
	var servers []*tftpServer
	add := func(name string, peer bool, start func() (string, *peers.Proc, error)) {
		addr, p, err := start()
		if err != nil {
			logf("%s: not measured: %v", name, err)
		}
		servers = append(servers, &tftpServer{name: name, peer: peer, addr: addr, proc: p, err: err})
	}
	agent := func(anticipate uint) func() (string, *peers.Proc, error) {
		return func() (string, *peers.Proc, error) {
			port, err := peers.FreePort("udp")
			if err != nil {
				return "", nil, err
			}
			addr := "127.0.0.1:" + strconv.Itoa(port)
			name := fmt.Sprintf("agent-tftp-anticipate%d", anticipate)
			p, err := e.startAgent(name, []string{"-tftp", addr, "-root", e.root, "-anticipate", strconv.FormatUint(uint64(anticipate), 10)})
			return addr, p, err
		}
	}
	add("agent", false, agent(0))
	add(fmt.Sprintf("agent, anticipate %d", e.anticipate), false, agent(e.anticipate))
	add("tftpd-hpa", true, func() (string, *peers.Proc, error) {
		port, err := peers.FreePort("udp")
		if err != nil {
			return "", nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		// -L foreground, -s chroot into the root; --blocksize caps the
		// negotiated size at Ethernet's 1468 as its man page recommends.
		// It forks a process per transfer and has no connection limit.
		p, err := peers.Start("tftpd-hpa", []string{"in.tftpd", "-L", "-s", e.root, "-a", addr, "--blocksize", "1468"},
			filepath.Join(e.dir, "tftpd-hpa.log"), "")
		if err != nil {
			return "", nil, err
		}
		return addr, p, e.awaitTFTP(addr, p)
	})
	add("dnsmasq", true, func() (string, *peers.Proc, error) {
		// dnsmasq's TFTP server only listens on port 69 (no option changes
		// it), so it gets its own loopback address, 127.0.0.2, which Linux
		// routes to lo without an alias. --tftp-max raises the default of
		// 50 concurrent transfers, which would refuse most of a 200-client
		// storm; DNS (--port=0) and DHCP stay off.
		const addr = "127.0.0.2:69"
		p, err := peers.Start("dnsmasq", []string{"dnsmasq", "-k", "--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts",
			"--pid-file=", "--listen-address=127.0.0.2", "--bind-interfaces", "--log-facility=-",
			"--enable-tftp", "--tftp-root=" + e.root, "--tftp-max=1000"},
			filepath.Join(e.dir, "dnsmasq.log"), "")
		if err != nil {
			return "", nil, err
		}
		return addr, p, e.awaitTFTP(addr, p)
	})
	return servers
}

// awaitTFTP polls until the server answers a small transfer.
func (e *env) awaitTFTP(addr string, p *peers.Proc) error {
	err := testenv.Poll(15*time.Second, func() error {
		if p.Exited() {
			return testenv.ErrStop{Err: fmt.Errorf("exited: %s", p.Tail())}
		}
		_, err := tftpload.Get(addr, probeFile, e.probe, tftpload.Options{Timeout: 200 * time.Millisecond, Retries: 1})
		return err
	})
	if err != nil {
		p.Stop()
		return fmt.Errorf("no TFTP answer on %s: %w", addr, err)
	}
	return nil
}

func runTFTPTrial(s *tftpServer, c tftpCase, want []byte) (tftpTrial, error) {
	meter, err := s.proc.MeterCPU()
	if err != nil {
		return tftpTrial{}, err
	}
	var (
		mu sync.Mutex
		t  tftpTrial
		wg sync.WaitGroup
	)
	start := time.Now()
	for client := range c.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for transfer := range c.transfers {
				// A PXE ROM's patience: iPXE waits about a second before
				// re-sending, and gives up after a handful of tries. Every
				// contender meets the same drops: the seed depends only on
				// the row, the client and the transfer.
				r, err := tftpload.Get(s.addr, c.file, want, tftpload.Options{BlockSize: c.blksize, Timeout: time.Second, Retries: 5,
					Loss: c.loss, Seed: c.seed<<32 | uint64(client)<<16 | uint64(transfer)})
				mu.Lock()
				t.total++
				t.resends += r.Resends
				t.dropped += r.Dropped
				if err != nil {
					t.failed++
					if t.firstErr == nil {
						t.firstErr = err
					}
				} else {
					t.bytes += r.Bytes
					t.durations = append(t.durations, r.Duration.Seconds())
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.wall = time.Since(start)
	if t.cpu, err = meter.Stop(); err != nil {
		return tftpTrial{}, err
	}
	return t, nil
}

// tftpCases lists the rows. Without all, 200 clients fetching 32 MiB at
// 512-byte blocks is left out: 6.4 GB in lock-step is about 17 minutes for
// the four contenders, and no PXE client fetches a 32 MiB image with
// 512-byte blocks (legacy ROMs that cannot negotiate blksize fetch only the
// 1 MiB iPXE binary; iPXE itself negotiates large blocks).
func tftpCases(quick, all bool) []tftpCase {
	var cs []tftpCase
	type size struct {
		name  string
		bytes int
	}
	sizes := []size{{"ipxe-1m.bin", 1 << 20}, {"image-32m.bin", 32 << 20}}
	for _, sz := range sizes {
		for _, blk := range []int{512, 1468} {
			for _, clients := range []int{1, 50, 200} {
				transfers := 1
				if clients == 1 {
					// One client alone gets several transfers, so its p99
					// is not a single sample.
					transfers = map[bool]int{true: 5, false: 20}[quick]
					if sz.bytes > 1<<20 {
						transfers = map[bool]int{true: 1, false: 3}[quick]
					}
				}
				if quick && sz.bytes > 1<<20 && clients > 1 {
					continue
				}
				if !all && sz.bytes > 1<<20 && blk == 512 && clients == 200 {
					continue
				}
				cs = append(cs, tftpCase{file: sz.name, size: sz.bytes, blksize: blk, clients: clients, transfers: transfers})
			}
		}
	}
	return cs
}

func writeRandomFile(path string, size int) ([]byte, error) {
	b := make([]byte, size)
	// A fixed-seed generator keeps files the same size and entropy across
	// runs without reading 100 MiB from the kernel's CSPRNG.
	var x uint64 = 0x9E3779B97F4A7C15
	for i := 0; i+8 <= len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		for j := 0; j < 8; j++ {
			b[i+j] = byte(x >> (8 * j))
		}
	}
	return b, os.WriteFile(path, b, 0o644)
}
