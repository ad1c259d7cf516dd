package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/bench/internal/report"
)

const imageName = "disk-image.raw"

// imageTrial is one image storm: every client fetches the whole image
// once, all at the same time, as deploy ramdisks do when a rack of
// machines is imaged together.
type imageTrial struct {
	mibps   float64 // bytes of complete images over the storm's wall time
	slowest time.Duration
	failed  int
	cpu     time.Duration
}

// runImageStorm has clients fetch s's url in full, each on its own
// connection, and counts a client failed unless it read exactly size bytes.
func runImageStorm(s *httpServer, clients int, size int64) (imageTrial, error) {
	meter, err := s.proc.MeterCPU()
	if err != nil {
		return imageTrial{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var (
		mu       sync.Mutex
		t        imageTrial
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One transport per client: one connection each, as separate
			// machines have.
			tr := &http.Transport{DisableCompression: true}
			defer tr.CloseIdleConnections()
			err := fetchWhole(ctx, &http.Client{Transport: tr}, s.url, size)
			took := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			t.slowest = max(t.slowest, took)
			if err != nil {
				t.failed++
				if firstErr == nil {
					firstErr = err
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	cpu, cpuErr := meter.Stop()
	if cpuErr != nil {
		return t, cpuErr
	}
	t.cpu = cpu
	if firstErr != nil {
		logf("image storm %s: %d of %d clients failed, first: %v", s.name, t.failed, clients, firstErr)
	}
	t.mibps = float64(int64(clients-t.failed)*size) / (1 << 20) / wall.Seconds()
	return t, nil
}

func fetchWhole(ctx context.Context, c *http.Client, url string, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	buf := make([]byte, 1<<20)
	n, err := io.CopyBuffer(io.Discard, resp.Body, buf)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("GET %s: %d bytes, want %d", url, n, size)
	}
	return nil
}

// benchImage measures image serving: clients deploy ramdisks pulling one
// image of size bytes at once from the agent's /assets/ and from nginx.
func benchImage(e *env, clients int, size int64, reps int) (string, error) {
	if _, err := writeRandomFile(filepath.Join(e.assets, imageName), int(size)); err != nil {
		return "", err
	}
	servers := startHTTPServers(e, imageName, size)
	defer func() {
		for _, s := range servers {
			if s.proc != nil {
				s.proc.Stop()
			}
		}
	}()
	trials := make([][]imageTrial, len(servers))
	// Repetitions are the outer loop, so a slow spell of the machine hits
	// both contenders alike.
	for rep := range reps {
		for si, s := range servers {
			if s.err != nil {
				continue
			}
			t, err := runImageStorm(s, clients, size)
			if err != nil {
				return "", fmt.Errorf("%s: %w", s.name, err)
			}
			logf("image rep %d/%d %s: %.0f MiB/s, slowest client %s, %d failed", rep+1, reps, s.name, t.mibps, t.slowest.Round(time.Millisecond), t.failed)
			trials[si] = append(trials[si], t)
		}
	}
	var b strings.Builder
	b.WriteString("## Image serving\n\n")
	fmt.Fprintf(&b, "%d clients, each on its own connection, fetch the same %d MiB raw image from /assets/ at once and read it to the end, "+
		"as the deploy ramdisks of a rack imaged together do; MiB/s is the bytes of complete images over the storm's wall time, "+
		"medians of %d repetition(s), the clients on the same CPUs. nginx: `sendfile on; tcp_nopush on; worker_processes auto; access_log off`; "+
		"the agent serves with http.ServeContent.\n\n", clients, size>>20, reps)
	b.WriteString("| server | aggregate MiB/s | slowest client s | failed clients | server CPU s | ÷ nginx |\n|---|--:|--:|--:|--:|--:|\n")
	var rs []row
	slowest := make([]float64, len(servers))
	for si, s := range servers {
		r := row{server: s.name, peer: s.peer, err: s.err, mibps: math.NaN(), cpu: math.NaN()}
		if s.err == nil {
			var mibps, cpu, slow []float64
			for _, t := range trials[si] {
				mibps = append(mibps, t.mibps)
				cpu = append(cpu, t.cpu.Seconds())
				slow = append(slow, t.slowest.Seconds())
				r.failed += t.failed
				r.total += clients
			}
			r.mibps, r.cpu, slowest[si] = report.Median(mibps), report.Median(cpu), report.Median(slow)
		}
		rs = append(rs, r)
	}
	best := bestPeer(rs)
	var missed string
	for si, r := range rs {
		if r.err != nil {
			fmt.Fprintf(&b, "| %s | not measured: %s |||||\n", r.server, oneLine(r.err))
			continue
		}
		ratio := report.Ratio(r.mibps, best)
		fmt.Fprintf(&b, "| %s | %s | %s | %d of %d | %s | %s |\n", r.server, report.F(r.mibps, 0), report.F(slowest[si], 1),
			r.failed, r.total, report.F(r.cpu, 2), report.F(ratio, 2))
		if !r.peer && !math.IsNaN(ratio) && ratio < 0.9 {
			missed = fmt.Sprintf("%.2f×", ratio)
		}
	}
	b.WriteString("\nTarget (issue 16): at least 0.9× nginx's aggregate MiB/s. ")
	if missed == "" {
		b.WriteString("Met.\n")
	} else {
		fmt.Fprintf(&b, "**Missed** (%s).\n", missed)
	}
	return b.String(), nil
}
