package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/bench/internal/peers"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

// fleetConfig is one agent + memory lab pair.
type fleetConfig struct {
	machines   int
	latency    time.Duration // added by the lab before every Redfish response
	provLimit  int           // agent --provisioning-limit
	bmcMax     int           // agent --bmc-max-concurrent
	namePrefix string
}

// fleet is a running agent (`baremetal-agent serve`) and memory lab
// (`baremetal-agent lab --backend memory`), each its own process, the lab's
// simulated machines PXE-booting from the agent's boot listener.
type fleet struct {
	dir       string
	dataDir   string
	endpoint  string
	token     string
	caPEM     string
	bootURL   string
	agent     *peers.Proc
	lab       *peers.Proc
	client    *client.Client
	inventory []lab.InventoryEntry
}

const profileName = "bench"

// startFleet starts the lab and the agent from agentBin and creates the one
// boot profile every machine uses. The kernel and initrd are tiny files in
// the agent's --assets-dir: the simulated iPXE fetches only their first
// KiB, so the benchmark measures the agent's bookkeeping, not disk reads.
func startFleet(agentBin string, cfg fleetConfig) (*fleet, error) {
	dir, err := os.MkdirTemp("", "provbench-")
	if err != nil {
		return nil, err
	}
	f := &fleet{dir: dir, dataDir: filepath.Join(dir, "data")}
	liveFleets.Store(f, struct{}{})
	ok := false
	defer func() {
		if !ok {
			f.stop()
		}
	}()
	assets := filepath.Join(dir, "assets")
	if err := os.MkdirAll(assets, 0o755); err != nil {
		return nil, err
	}
	for _, name := range []string{"vmlinuz", "initrd.img"} {
		if err := os.WriteFile(filepath.Join(assets, name), randomBytes(8192), 0o644); err != nil {
			return nil, err
		}
	}
	f.token = hex.EncodeToString(randomBytes(16))
	tokenFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokenFile, []byte(f.token+"\n"), 0o600); err != nil {
		return nil, err
	}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = peers.FreePort("tcp"); err != nil {
			return nil, err
		}
	}
	if slices.Contains(ports[1:], ports[0]) || ports[1] == ports[2] {
		return nil, errors.New("the kernel handed out one free port twice; run again")
	}
	udp, err := peers.FreePort("udp")
	if err != nil {
		return nil, err
	}
	apiAddr, bootAddr, labAddr := addr(ports[0]), addr(ports[1]), addr(ports[2])
	f.bootURL = "http://" + bootAddr
	f.endpoint = "https://" + apiAddr
	invFile := filepath.Join(dir, "inventory.json")

	prefix := cfg.namePrefix
	if prefix == "" {
		prefix = "m-"
	}
	labArgs := []string{agentBin, "lab", "--backend", "memory", "--machines", strconv.Itoa(cfg.machines),
		"--listen", labAddr, "--inventory", invFile, "--boot-url", f.bootURL, "--name-prefix", prefix, "--log-level", "warn"}
	if cfg.latency > 0 {
		labArgs = append(labArgs, "--latency", cfg.latency.String())
	}
	if f.lab, err = peers.Start("lab", labArgs, filepath.Join(dir, "lab.log"), ""); err != nil {
		return nil, err
	}
	agentArgs := []string{agentBin, "serve", "--data-dir", f.dataDir, "--api-addr", apiAddr, "--boot-addr", bootAddr,
		"--boot-url", f.bootURL, "--tftp-addr", "127.0.0.1:" + strconv.Itoa(udp), "--token-file", tokenFile,
		"--assets-dir", assets, "--provisioning-limit", strconv.Itoa(cfg.provLimit),
		"--bmc-max-concurrent", strconv.Itoa(cfg.bmcMax)}
	agentArgs = append(agentArgs, extraAgentArgs...)
	if f.agent, err = peers.Start("agent", agentArgs, filepath.Join(dir, "agent.log"), ""); err != nil {
		return nil, err
	}

	alive := func() error {
		for _, p := range []*peers.Proc{f.lab, f.agent} {
			if p.Exited() {
				return fmt.Errorf("%s exited: %s", p.Name, p.Tail())
			}
		}
		return nil
	}
	if f.inventory, err = testenv.AwaitInventory(2*time.Minute, invFile, alive); err != nil {
		return nil, fmt.Errorf("lab not ready: %w", err)
	}
	if f.caPEM, err = testenv.AwaitReady(2*time.Minute, f.endpoint, f.dataDir, alive); err != nil {
		return nil, fmt.Errorf("agent not ready: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if f.client, err = client.New(client.Config{Endpoint: f.endpoint, Token: f.token, CACertPEM: f.caPEM, UserAgent: "provbench"}); err != nil {
		return nil, err
	}
	if _, err := f.client.CreateBootProfile(ctx, api.BootProfileRequest{
		Name:      profileName,
		Kernel:    "vmlinuz",
		Initrds:   []string{"initrd.img"},
		Cmdline:   "console=ttyS0 baremetal.templates=user-data",
		Templates: map[string]string{"user-data": "#cloud-config\nhostname: {{ .Machine.Name }}\n"},
	}); err != nil {
		return nil, fmt.Errorf("creating the boot profile: %w", err)
	}
	ok = true
	return f, nil
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return b
}

// liveFleets are the fleets an interrupt must stop: the agent and lab run
// in their own process groups, so a ^C at the terminal does not reach them.
var liveFleets sync.Map

// stopAllFleets stops every fleet still running (on an interrupt).
func stopAllFleets() {
	liveFleets.Range(func(k, _ any) bool {
		if f, ok := k.(*fleet); ok {
			f.stop()
		}
		return true
	})
}

func (f *fleet) stop() {
	liveFleets.Delete(f)
	for _, p := range []*peers.Proc{f.agent, f.lab} {
		if p != nil {
			p.Stop()
		}
	}
	removeAll(f.dir)
}

// alive fails when the agent or the lab has died: a crash must fail the
// benchmark, not look like a slow machine.
func (f *fleet) alive() error {
	for _, p := range []*peers.Proc{f.agent, f.lab} {
		if p.Exited() {
			return fmt.Errorf("%s exited during the benchmark; log tail:\n%s", p.Name, p.Tail())
		}
	}
	return nil
}

// usage is the agent's resource use, read from /proc while it runs.
type usage struct {
	cpu     time.Duration // user+system since the agent started
	peakRSS int64         // VmHWM, bytes
	store   int64         // agent.db, bytes
}

func (f *fleet) usage() (usage, error) {
	pid := f.agent.Cmd.Process.Pid
	var u usage
	var err error
	if u.cpu, err = peers.CPUTime(pid); err != nil {
		return u, err
	}
	if u.peakRSS, err = peers.PeakRSS(pid); err != nil {
		return u, err
	}
	fi, err := os.Stat(filepath.Join(f.dataDir, "agent.db"))
	if err != nil {
		return u, err
	}
	u.store = fi.Size()
	return u, nil
}

// latencies collects the client-side durations of one kind of API call.
type latencies struct {
	mu  sync.Mutex
	ms  []float64
	err int
}

func (l *latencies) observe(start time.Time, err error) {
	d := float64(time.Since(start)) / float64(time.Millisecond)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.err++
		return
	}
	l.ms = append(l.ms, d)
}

func (l *latencies) snapshot() ([]float64, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ms), l.err
}

// parallel runs do(i) for i in [0, n) on workers goroutines.
func parallel(n, workers int, do func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				do(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// apiWorkers is how many API calls the benchmark client keeps in flight
// while registering or updating machines: a handful, like Terraform's
// default parallelism of 10.
const apiWorkers = 16

// machineRequest registers lab machine e with the bench profile.
func machineRequest(e lab.InventoryEntry, state api.DesiredState) api.MachineRequest {
	req := api.MachineRequest{
		Name:        e.Name,
		BMC:         api.BMCRequest{Endpoint: e.Endpoint, Username: e.Username, Password: e.Password},
		BootProfile: profileName,
		State:       state,
	}
	if e.MAC != "" {
		req.MACs = []string{e.MAC}
	}
	return req
}

// phaseWait is the outcome of waiting for every machine to reach a phase.
type phaseWait struct {
	reached, failed int
	firstError      string // one failed machine's last_error, as an example
	// last is when the last machine got there, by the agent's own record
	// (provisioned_at, else updated_at), so the time the benchmark's
	// polling takes to notice is not counted.
	last time.Time
}

// waitConverged polls until the agent reports every machine converged on
// its desired state, or failed. The
// polling itself is part of the measured API load: four pollers that GET a
// random machine every 100 ms each (what Terraform resources waiting for
// their machines do) and a list of all machines, which is how the
// benchmark sees the end. A list costs the agent time linear in the fleet,
// so listing at a fixed rate would make the benchmark's own polling grow
// quadratically with the fleet and hide the agent's curve: the next list
// waits ten times as long as the last one took (between 500 ms and 5 s),
// which keeps the listing near a tenth of the run. The end time is read
// from the machines' records, not from when the list noticed.
// With minVersion > 0 a converged machine counts only once it was
// provisioned with at least that version of the boot profile.
func (f *fleet) waitConverged(ctx context.Context, names []string, minVersion uint64, gets, lists *latencies) (phaseWait, error) {
	pollCtx, stopPolling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-pollCtx.Done():
					return
				case <-tick.C:
				}
				start := time.Now()
				_, err := f.client.GetMachine(pollCtx, names[rand.IntN(len(names))])
				if pollCtx.Err() == nil {
					gets.observe(start, err)
				}
			}
		}()
	}
	defer func() { stopPolling(); wg.Wait() }()

	inSet := make(map[string]bool, len(names))
	for _, n := range names {
		inSet[n] = true
	}
	for {
		if err := f.alive(); err != nil {
			return phaseWait{}, err
		}
		start := time.Now()
		ms, err := f.client.ListMachines(ctx, client.MachineFilter{})
		took := time.Since(start)
		lists.observe(start, err)
		if err == nil {
			var w phaseWait
			for _, m := range ms {
				if !inSet[m.Name] {
					continue
				}
				switch {
				case m.Converged && m.ProvisionedProfileVersion < minVersion:
				case m.Converged:
					w.reached++
					at := m.UpdatedAt
					if m.Phase == api.PhaseProvisioned && !m.ProvisionedAt.IsZero() {
						at = m.ProvisionedAt
					}
					if at.After(w.last) {
						w.last = at
					}
				case m.Phase == api.PhaseFailed:
					w.failed++
					if w.firstError == "" {
						w.firstError = m.Name + ": " + m.LastError
					}
				}
			}
			if w.reached+w.failed == len(names) {
				return w, nil
			}
		}
		select {
		case <-ctx.Done():
			return phaseWait{}, fmt.Errorf("waiting for %d machines to converge: %w", len(names), ctx.Err())
		case <-time.After(min(max(500*time.Millisecond, 10*took), 5*time.Second)):
		}
	}
}
