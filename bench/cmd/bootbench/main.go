// Command bootbench measures the agent's boot edge side by side with the
// servers operators run today, on loopback, and rewrites its sections of
// BENCHMARKS.md: TFTP (the agent, with and without pin/tftp's sender
// window, against tftpd-hpa and dnsmasq) and HTTP assets (the agent's boot
// listener against nginx, loaded by wrk).
//
// Every contender runs as its own process (the agent as `bootbench
// serve-agent`, which runs the agent as agentd assembles it for
// `baremetal-agent serve`), so each one's CPU time is measured the same way. The peers
// come from Debian (bench/setup.sh installs them).
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/bench/internal/peers"
	"github.com/openbaremetal/terraform-provider-baremetal/bench/internal/report"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
)

const probeFile = "probe.bin"

type env struct {
	dir        string // temp dir: logs, configs, store
	root       string // TFTP root
	assets     string // HTTP assets
	probe      []byte
	anticipate uint
	profileDir string
	self       string
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve-agent" {
		if err := serveAgent(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "serve-agent:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "lab-forward" {
		// Run by QEMU for each guest connection of the deploy benchmark's VM.
		if err := lab.RunForward(context.Background(), os.Args[2:], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bootbench:", err)
		os.Exit(1)
	}
}

func run() error {
	quick := flag.Bool("quick", false, "fewer sizes, clients and repetitions (about 5 minutes)")
	out := flag.String("out", "BENCHMARKS.md", "file whose bench:tftp and bench:http sections are rewritten")
	only := flag.String("only", "", "run only one benchmark: tftp, amplification, http, image or deploy")
	reps := flag.Int("reps", 0, "repetitions per row (default 3, or 2 with -quick); TFTP storms that move 1 GiB or more run at most -heavy-reps")
	flag.IntVar(&heavyReps, "heavy-reps", heavyReps, "repetitions of the TFTP storms that move 1 GiB or more")
	allRows := flag.Bool("all", false, "also run 200 clients fetching 32 MiB at blksize 512 (about 17 minutes more)")
	anticipate := flag.Uint("anticipate", 16, "pin/tftp sender window for the agent's anticipate row")
	httpSecs := flag.Int("http-seconds", 0, "wrk duration per HTTP trial in seconds (default 10, or 3 with -quick)")
	httpClients := flag.String("http-clients", "wrk,go", "HTTP load clients, comma-separated: wrk and/or go (reads 1 MiB at a time where wrk reads 8 KiB)")
	profileDir := flag.String("profile-dir", "", "write the agent processes' CPU profiles (pprof) into this directory")
	match := flag.String("match", "", "run only the TFTP rows whose name (file/blksize/clients, e.g. ipxe-1m.bin/512/200) matches this regular expression")
	loss := flag.Bool("loss", true, "also measure the TFTP lossy-link rows (about 20 s with -quick, 3 minutes without)")
	note := flag.String("note", "", "a remark printed in the sections' headers (e.g. why the numbers are preliminary)")
	imageClients := flag.Int("image-clients", 50, "clients of the image serving storm")
	imageMiB := flag.Int("image-mib", 0, "size of the image in the image serving storm in MiB (default 1024, or 256 with -quick)")
	deployDir := flag.String("deploy-image", ".cache/deploy-image", "the deploy ramdisk (make deploy-image) for the deploy section; without it, a run of every section skips that one")
	deployMiB := flag.Int("deploy-mib", 0, "raw size of the deploy section's image in MiB (default 512, or 256 with -quick)")
	deployFormats := flag.String("deploy-formats", "raw,zstd", "the deploy section's image formats, comma-separated: raw, zstd, gzip")
	deployMem := flag.Int("deploy-mem", 512, "the deploy section's VM memory in MiB")
	deployCPUs := flag.Int("deploy-cpus", 1, "the deploy section's VM vCPUs")
	flag.Parse()
	if *only != "" && *only != "tftp" && *only != "amplification" && *only != "http" && *only != "image" && *only != "deploy" {
		return fmt.Errorf("-only %q: want tftp, amplification, http, image or deploy", *only)
	}
	if *deployMiB <= 0 {
		*deployMiB = map[bool]int{true: 256, false: 512}[*quick]
	}
	if *imageMiB <= 0 {
		*imageMiB = map[bool]int{true: 256, false: 1024}[*quick]
	}
	clients := strings.Split(*httpClients, ",")
	for _, c := range clients {
		if c != "wrk" && c != "go" {
			return fmt.Errorf("-http-clients %q: want wrk and/or go", *httpClients)
		}
	}
	if *reps <= 0 {
		*reps = map[bool]int{true: 2, false: 3}[*quick]
	}
	if *httpSecs <= 0 {
		*httpSecs = map[bool]int{true: 3, false: 10}[*quick]
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bootbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The peers drop root privileges (tftpd-hpa and dnsmasq to nobody or
	// their own user, nginx's workers likewise) and must still read the files.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	e := &env{dir: dir, root: filepath.Join(dir, "tftp"), assets: filepath.Join(dir, "assets"), anticipate: *anticipate, self: self}
	if *profileDir != "" {
		if e.profileDir, err = filepath.Abs(*profileDir); err != nil {
			return err
		}
		if err := os.MkdirAll(e.profileDir, 0o755); err != nil {
			return err
		}
	}
	for _, d := range []string{e.root, e.assets, filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if e.probe, err = writeRandomFile(filepath.Join(e.root, probeFile), 1000); err != nil {
		return err
	}
	header := sectionHeader(*note, *profileDir)
	began := time.Now()
	if *only == "" || *only == "tftp" {
		t0 := time.Now()
		cases := tftpCases(*quick, *allRows)
		if *match != "" {
			re, err := regexp.Compile(*match)
			if err != nil {
				return fmt.Errorf("-match: %w", err)
			}
			cases = slices.DeleteFunc(cases, func(c tftpCase) bool { return !re.MatchString(c.name()) })
			if len(cases) == 0 {
				return fmt.Errorf("-match %q selects no TFTP row", *match)
			}
		}
		var lossCases []tftpCase
		if *loss {
			lossCases = tftpLossCases(*quick)
		}
		body, err := benchTFTP(e, cases, lossCases, *reps)
		if err != nil {
			return err
		}
		if !*quick && !*allRows && *match == "" {
			body += "\nNot run: 200 clients fetching image-32m.bin at blksize 512 (6.4 GB in lock-step, about 17 minutes for the four contenders; no PXE client fetches a 32 MiB image with 512-byte blocks). `-all` adds it.\n"
		}
		body += fmt.Sprintf("\nThis section took %s to measure.\n", time.Since(t0).Round(time.Second))
		if err := report.WriteSection(*out, "tftp", header+body); err != nil {
			return err
		}
		logf("wrote the TFTP section of %s", *out)
	}
	if *only == "" || *only == "amplification" {
		t0 := time.Now()
		body, err := benchAmplification(e)
		if err != nil {
			return err
		}
		body += fmt.Sprintf("\nThis section took %s to measure.\n", time.Since(t0).Round(time.Second))
		if err := report.WriteSection(*out, "amplification", header+body); err != nil {
			return err
		}
		logf("wrote the amplification section of %s", *out)
	}
	if *only == "" || *only == "http" {
		t0 := time.Now()
		body, err := benchHTTP(e, clients, *reps, time.Duration(*httpSecs)*time.Second)
		if err != nil {
			return err
		}
		body += fmt.Sprintf("\nThis section took %s to measure.\n", time.Since(t0).Round(time.Second))
		if err := report.WriteSection(*out, "http", header+body); err != nil {
			return err
		}
		logf("wrote the HTTP section of %s", *out)
	}
	if *only == "" || *only == "image" {
		t0 := time.Now()
		body, err := benchImage(e, *imageClients, int64(*imageMiB)<<20, *reps)
		if err != nil {
			return err
		}
		body += fmt.Sprintf("\nThis section took %s to measure.\n", time.Since(t0).Round(time.Second))
		if err := report.WriteSection(*out, "image", header+body); err != nil {
			return err
		}
		logf("wrote the image serving section of %s", *out)
	}
	_, statErr := os.Stat(filepath.Join(*deployDir, "initrd.img"))
	if *only == "deploy" || (*only == "" && statErr == nil) {
		t0 := time.Now()
		kdir, err := filepath.Abs(*deployDir)
		if err != nil {
			return err
		}
		body, err := benchDeploy(e, deployOpts{kernelDir: kdir, mib: *deployMiB, formats: strings.Split(*deployFormats, ","),
			memMiB: *deployMem, cpus: *deployCPUs, reps: *reps})
		if err != nil {
			return err
		}
		body += fmt.Sprintf("\nThis section took %s to measure.\n", time.Since(t0).Round(time.Second))
		if err := report.WriteSection(*out, "deploy", header+body); err != nil {
			return err
		}
		logf("wrote the deploy section of %s", *out)
	} else if *only == "" {
		logf("deploy section skipped: no deploy ramdisk in %s (make deploy-image)", *deployDir)
	}
	logf("done in %s", time.Since(began).Round(time.Second))
	return nil
}

func sectionHeader(note, profileDir string) string {
	var extra []string
	if profileDir != "" {
		extra = append(extra, fmt.Sprintf("The agent's CPU profiles of this run: `go tool pprof -top %s/agent-*.pprof` (one per agent process; not committed).  \n", profileDir))
	}
	return report.Header("./bench/cmd/bootbench", note, extra...)
}

func (e *env) startAgent(name string, args []string) (*peers.Proc, error) {
	data := filepath.Join(e.dir, "data", name)
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	argv := append([]string{e.self, "serve-agent", "-data", data}, args...)
	if e.profileDir != "" {
		argv = append(argv, "-cpuprofile", filepath.Join(e.profileDir, name+".pprof"))
	}
	return peers.Start(name, argv, filepath.Join(e.dir, name+".log"), "ready")
}

// row is one contender's medians for one case.
type row struct {
	server               string
	peer                 bool
	err                  error
	mibps, p50ms, p99ms  float64
	failed, total        int
	resends              int
	cpu                  float64
	requests, httpErrors int
}

func benchTFTP(e *env, cases, lossCases []tftpCase, reps int) (string, error) {
	files := map[string][]byte{}
	for _, c := range cases {
		if _, ok := files[c.file]; ok {
			continue
		}
		b, err := writeRandomFile(filepath.Join(e.root, c.file), c.size)
		if err != nil {
			return "", err
		}
		files[c.file] = b
	}
	servers := startTFTPServers(e)
	defer func() {
		for _, s := range servers {
			if s.proc != nil {
				s.proc.Stop()
			}
		}
	}()
	trials := make([][][]tftpTrial, len(cases)) // case, server, rep
	for i := range trials {
		trials[i] = make([][]tftpTrial, len(servers))
	}
	// Repetitions are the outer loop so that a slow spell of the machine
	// hits every contender alike instead of one contender's whole row.
	for rep := range reps {
		for ci, c := range cases {
			if rep >= c.reps(reps) {
				continue
			}
			for si, s := range servers {
				if s.err != nil {
					continue
				}
				t, err := runTFTPTrial(s, c, files[c.file])
				if err != nil {
					return "", fmt.Errorf("%s: %w", s.name, err)
				}
				logf("tftp rep %d/%d %s blksize %d, %d clients x %d: %s %.1f MiB/s, %d/%d failed",
					rep+1, c.reps(reps), c.file, c.blksize, c.clients, c.transfers, s.name,
					float64(t.bytes)/(1<<20)/t.wall.Seconds(), t.failed, t.total)
				if t.firstErr != nil {
					logf("  first failure: %v", t.firstErr)
				}
				trials[ci][si] = append(trials[ci][si], t)
			}
		}
	}
	rows := make([][]row, len(cases))
	for ci := range cases {
		for si, s := range servers {
			rows[ci] = append(rows[ci], summarizeTFTP(s, trials[ci][si]))
		}
	}
	smallest := cases[0].file
	for _, c := range cases {
		if len(files[c.file]) < len(files[smallest]) {
			smallest = c.file
		}
	}
	body := renderTFTP(e, cases, servers, rows, reps) + realClientTable(e, servers, smallest, files[smallest])
	if len(lossCases) > 0 {
		want, err := lossFileBytes(e, files)
		if err != nil {
			return "", err
		}
		lossy, err := benchTFTPLoss(e, servers, lossCases, want)
		if err != nil {
			return "", err
		}
		body += lossy
	}
	return body, nil
}

func summarizeTFTP(s *tftpServer, ts []tftpTrial) row {
	r := row{server: s.name, peer: s.peer, err: s.err}
	if s.err != nil || len(ts) == 0 {
		r.mibps, r.p50ms, r.p99ms, r.cpu = math.NaN(), math.NaN(), math.NaN(), math.NaN()
		return r
	}
	var mibps, p50, p99, cpu []float64
	for _, t := range ts {
		mibps = append(mibps, float64(t.bytes)/(1<<20)/t.wall.Seconds())
		p50 = append(p50, report.Percentile(t.durations, 50)*1e3)
		p99 = append(p99, report.Percentile(t.durations, 99)*1e3)
		cpu = append(cpu, t.cpu.Seconds())
		r.failed += t.failed
		r.total += t.total
		r.resends += t.resends
	}
	r.mibps, r.p50ms, r.p99ms, r.cpu = report.Median(mibps), report.Median(p50), report.Median(p99), report.Median(cpu)
	return r
}

// bestPeer is the best peer throughput in a row (NaN when no peer ran).
func bestPeer(rs []row) float64 {
	var xs []float64
	for _, r := range rs {
		if r.peer {
			xs = append(xs, r.mibps)
		}
	}
	return report.Best(xs...)
}

func renderTFTP(e *env, cases []tftpCase, servers []*tftpServer, rows [][]row, reps int) string {
	var b strings.Builder
	b.WriteString("## TFTP\n\n")
	heavyNote := ""
	if reps > heavyReps {
		heavyNote = fmt.Sprintf(" (%d for storms that move 1 GiB or more)", heavyReps)
	}
	fmt.Fprintf(&b, "Every client fetches the file at once (a boot storm); one client alone fetches it several times in a row "+
		"(the clients column is clients × transfers each). "+
		"Throughput is the bytes of successful transfers over the storm's wall time, MiB/s, median of %d repetition(s)%s. "+
		"Block size 512 sends a plain RFC 1350 request (no options); 1468 asks for it with blksize (RFC 2348). "+
		"The load client (bench/internal/tftpload) runs on the same CPUs, checks every byte, re-sends after 1 s and gives up after 5 tries. "+
		"The agent row is the agent with its defaults (lock-step); the anticipate row sets `--tftp-window %d` (pin/tftp's SetAnticipate).\n\n", reps, heavyNote, e.anticipate)
	b.WriteString("| file | blksize | clients |")
	for _, s := range servers {
		fmt.Fprintf(&b, " %s |", s.name)
	}
	for _, s := range servers {
		if !s.peer {
			fmt.Fprintf(&b, " %s ÷ best peer |", s.name)
		}
	}
	b.WriteString("\n|---|--:|--:|")
	for range servers {
		b.WriteString("--:|")
	}
	for _, s := range servers {
		if !s.peer {
			b.WriteString("--:|")
		}
	}
	b.WriteString("\n")
	var missed []string
	for ci, c := range cases {
		best := bestPeer(rows[ci])
		fmt.Fprintf(&b, "| %s | %d | %d×%d |", c.file, c.blksize, c.clients, c.transfers)
		for _, r := range rows[ci] {
			fmt.Fprintf(&b, " %s |", report.F(r.mibps, 1))
		}
		for _, r := range rows[ci] {
			if r.peer {
				continue
			}
			ratio := report.Ratio(r.mibps, best)
			fmt.Fprintf(&b, " %s |", report.F(ratio, 2))
			if r.server == "agent" && !math.IsNaN(ratio) && ratio < 1 {
				missed = append(missed, fmt.Sprintf("%s blksize %d ×%d clients (%.2f×)", c.file, c.blksize, c.clients, ratio))
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\nPer contender (medians; failed and re-sends summed over repetitions). Server CPU is the user+system time of the server's process tree per storm, " +
		"sampled every 10 ms because tftpd-hpa's per-transfer children are discarded by the kernel when they exit (it ignores SIGCHLD): " +
		"each child's last <10 ms escapes, so tftpd-hpa's figure is a lower bound.\n\n")
	b.WriteString("| file | blksize | clients | server | MiB/s | p50 ms | p99 ms | failed | re-sends | server CPU s |\n|---|--:|--:|---|--:|--:|--:|--:|--:|--:|\n")
	failures200 := 0
	for ci, c := range cases {
		for _, r := range rows[ci] {
			if r.err != nil {
				fmt.Fprintf(&b, "| %s | %d | %d×%d | %s | not measured: %s |||||||\n", c.file, c.blksize, c.clients, c.transfers, r.server, oneLine(r.err))
				continue
			}
			fmt.Fprintf(&b, "| %s | %d | %d×%d | %s | %s | %s | %s | %d/%d | %d | %s |\n", c.file, c.blksize, c.clients, c.transfers, r.server,
				report.F(r.mibps, 1), report.F(r.p50ms, 1), report.F(r.p99ms, 1), r.failed, r.total, r.resends, report.F(r.cpu, 2))
			if !r.peer && c.clients >= 200 {
				failures200 += r.failed
			}
		}
	}
	b.WriteString("\nTarget (issue 9): the agent at least matches the better of tftpd-hpa and dnsmasq in every row, with no failed transfer at 200 clients. ")
	switch {
	case len(missed) == 0:
		b.WriteString("Throughput: met in every row measured.")
	default:
		fmt.Fprintf(&b, "Throughput: **missed** in %d row(s): %s.", len(missed), strings.Join(missed, "; "))
	}
	if failures200 > 0 {
		fmt.Fprintf(&b, " Failures at 200 clients: **%d**.", failures200)
	}
	b.WriteString("\n")
	return b.String()
}

func oneLine(err error) string {
	s := strings.ReplaceAll(err.Error(), "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

type httpCase struct {
	client string // wrk or go
	conns  int
}

func benchHTTP(e *env, clients []string, reps int, d time.Duration) (string, error) {
	if _, err := writeRandomFile(filepath.Join(e.assets, initrdName), 64<<20); err != nil {
		return "", err
	}
	servers := startHTTPServers(e, initrdName, 64<<20)
	defer func() {
		for _, s := range servers {
			if s.proc != nil {
				s.proc.Stop()
			}
		}
	}()
	var cases []httpCase
	for _, cl := range clients {
		for _, n := range []int{1, 64} {
			cases = append(cases, httpCase{cl, n})
		}
	}
	trials := make([][][]httpTrial, len(cases))
	for i := range trials {
		trials[i] = make([][]httpTrial, len(servers))
	}
	for rep := range reps {
		for ci, c := range cases {
			for si, s := range servers {
				if s.err != nil {
					continue
				}
				t, err := runHTTPTrial(s, c.client, c.conns, d)
				if err != nil {
					return "", fmt.Errorf("%s: %w", s.name, err)
				}
				logf("http rep %d/%d %s, %d connections: %s %.0f MiB/s p99 %.1f ms, %d requests, %d errors",
					rep+1, reps, c.client, c.conns, s.name, t.mibps, t.p99ms, t.requests, t.errors)
				trials[ci][si] = append(trials[ci][si], t)
			}
		}
	}
	var b strings.Builder
	b.WriteString("## HTTP assets\n\n")
	fmt.Fprintf(&b, "GET of a 64 MiB initrd under /assets/ over keep-alive connections for %s per trial, medians of %d repetition(s), "+
		"the load client on the same CPUs. Two load clients: `wrk --latency` (MiB/s from its bytes read over the trial, p99 from its latency distribution), "+
		"which reads 8 KiB per system call and so can be the bottleneck on a 64 MiB body, and the Go client of bench/cmd/bootbench (`go`: 1 MiB reads, "+
		"bytes read over the trial, p99 of the finished requests). "+
		"nginx: `sendfile on; tcp_nopush on; worker_processes auto; access_log off`; the agent serves with http.ServeContent.\n\n", d, reps)
	b.WriteString("| client | connections | server | MiB/s | p99 ms | requests | errors | server CPU s | ÷ nginx |\n|---|--:|---|--:|--:|--:|--:|--:|--:|\n")
	var missed []string
	for ci, c := range cases {
		var rs []row
		for si, s := range servers {
			r := row{server: s.name, peer: s.peer, err: s.err, mibps: math.NaN(), p99ms: math.NaN(), cpu: math.NaN()}
			if s.err == nil {
				var mibps, p99, cpu []float64
				for _, t := range trials[ci][si] {
					mibps = append(mibps, t.mibps)
					p99 = append(p99, t.p99ms)
					cpu = append(cpu, t.cpu.Seconds())
					r.requests += t.requests
					r.httpErrors += t.errors
				}
				r.mibps, r.p99ms, r.cpu = report.Median(mibps), report.Median(p99), report.Median(cpu)
			}
			rs = append(rs, r)
		}
		best := bestPeer(rs)
		for _, r := range rs {
			if r.err != nil {
				fmt.Fprintf(&b, "| %s | %d | %s | not measured: %s ||||||\n", c.client, c.conns, r.server, oneLine(r.err))
				continue
			}
			ratio := report.Ratio(r.mibps, best)
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %d | %d | %s | %s |\n", c.client, c.conns, r.server, report.F(r.mibps, 0), report.F(r.p99ms, 1),
				r.requests, r.httpErrors, report.F(r.cpu, 2), report.F(ratio, 2))
			if !r.peer && !math.IsNaN(ratio) && ratio < 0.9 {
				missed = append(missed, fmt.Sprintf("%s with %d connections (%.2f×)", c.client, c.conns, ratio))
			}
		}
	}
	b.WriteString("\nTarget (issue 9): at least 0.9× nginx. ")
	if len(missed) == 0 {
		b.WriteString("Met in every row measured.\n")
	} else {
		fmt.Fprintf(&b, "**Missed** with %s.\n", strings.Join(missed, "; "))
	}
	return b.String(), nil
}
