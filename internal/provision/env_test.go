package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/bmc"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/boot"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// The reconciler is what the boot edge and the API call.
var (
	_ boot.Lifecycle = (*Reconciler)(nil)
	_ api.Actions    = (*Reconciler)(nil)
	_ BMC            = (*bmc.Manager)(nil)
)

func quiet() *slog.Logger {
	if os.Getenv("PROVISION_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// swapHandler lets a test replace the agent behind a fixed boot URL, as a
// restarted agent keeps its address. While no agent is installed, requests
// wait (as a client's TCP connect to a restarting agent would retry)
// rather than fail.
type swapHandler struct {
	mu    sync.Mutex
	h     http.Handler
	ready chan struct{}
	wg    sync.WaitGroup
}

func newSwapHandler() *swapHandler { return &swapHandler{ready: make(chan struct{})} }

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for {
		s.mu.Lock()
		h, ready := s.h, s.ready
		if h != nil {
			s.wg.Add(1)
		}
		s.mu.Unlock()
		if h != nil {
			defer s.wg.Done()
			h.ServeHTTP(w, r)
			return
		}
		select {
		case <-ready:
		case <-r.Context().Done():
			return
		}
	}
}

func (s *swapHandler) set(h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.h = h
	close(s.ready)
}

// unset holds new requests and waits for the ones in flight.
func (s *swapHandler) unset() {
	s.mu.Lock()
	s.h = nil
	s.ready = make(chan struct{})
	s.mu.Unlock()
	s.wg.Wait()
}

type envOpts struct {
	machines int
	noBoot   bool   // the lab's machines never boot anything (no boot URL)
	firmware string // the lab's Firmware setting
	cfg      func(c *Config)
}

// env is a whole agent minus the API: a real bolt store, the real boot
// HTTP edge, the real Redfish client and the lab's memory-backed BMCs
// whose simulated machines PXE boot from the boot edge.
type env struct {
	t       *testing.T
	dbPath  string
	st      *store.Bolt
	lab     *lab.Lab
	labURL  string
	bootURL string
	swap    *swapHandler
	assets  string
	mgr     *bmc.Manager
	rec     *Reconciler
	cfg     Config
	stop    context.CancelFunc
	done    chan error
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dbPath: filepath.Join(dir, "agent.db"), swap: newSwapHandler(), assets: filepath.Join(dir, "assets")}
	must(t, os.MkdirAll(e.assets, 0o755))
	must(t, os.WriteFile(filepath.Join(e.assets, "vmlinuz"), []byte(strings.Repeat("k", 4096)), 0o644))
	must(t, os.WriteFile(filepath.Join(e.assets, "initrd.img"), []byte("initrd"), 0o644))

	bootSrv := httptest.NewServer(e.swap)
	t.Cleanup(bootSrv.Close)
	e.bootURL = bootSrv.URL
	lcfg := lab.Config{Machines: o.machines, BootURL: e.bootURL, PasswordSeed: t.Name(), Logger: quiet(),
		HTTPClient: &http.Client{Timeout: 10 * time.Second}, Firmware: o.firmware}
	if o.noBoot {
		lcfg.BootURL = ""
	}
	l, err := lab.New(lcfg)
	must(t, err)
	e.lab = l
	labSrv := httptest.NewServer(l.Handler())
	e.labURL = labSrv.URL
	// Cleanups run last-in first-out: the lab's PXE clients stop before
	// the servers they talk to.
	t.Cleanup(labSrv.Close)
	t.Cleanup(func() { _ = l.Close() })

	e.cfg = Config{
		Workers: 8, PowerPollInterval: -1,
		Timeouts:  StepTimeouts{Inspect: 5 * time.Second, SetBoot: 5 * time.Second, PowerOn: 5 * time.Second, PowerOff: 5 * time.Second, Finish: 5 * time.Second, WaitPXE: 20 * time.Second, BootInstaller: 20 * time.Second, Install: 20 * time.Second, Retries: 3},
		RetryBase: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		Logger: quiet(),
	}
	if o.cfg != nil {
		o.cfg(&e.cfg)
	}
	e.open()
	ctx := context.Background()
	e.profile(&model.BootProfile{Name: "os", Kernel: "vmlinuz", Initrds: []string{"initrd.img"},
		Cmdline:   "console=ttyS0 baremetal.templates=user-data",
		Templates: map[string]string{"user-data": "#cloud-config\nhostname: {{ .Machine.Name }}\nsite: {{ .Params.site }}\n"},
		Params:    map[string]string{"site": "lab"}})
	for _, inv := range l.Inventory(e.labURL) {
		_, err := e.st.CreateMachine(ctx, &model.Machine{Name: inv.Name, State: model.StateAvailable, BootProfile: "os",
			BMC: model.BMC{Endpoint: inv.Endpoint, Username: inv.Username, Password: inv.Password}})
		must(t, err)
	}
	t.Cleanup(e.shutdown)
	return e
}

// open opens the store and wires a fresh reconciler and boot edge to it.
func (e *env) open() {
	t := e.t
	st, err := store.OpenBolt(e.dbPath, store.BoltOptions{Logger: quiet()})
	must(t, err)
	e.st = st
	// A restarted agent has a new Redfish client too (no sessions kept).
	e.mgr = bmc.NewManager(bmc.Config{RequestTimeout: 2 * time.Second, PowerWaitTimeout: time.Second, PollInterval: 10 * time.Millisecond,
		GracefulTimeout: time.Second, MaxRetries: 1, RetryBase: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		// Short like the step backoff, so a refused login healed while
		// retrying is tried again within the step's retries.
		LoginBackoff: 50 * time.Millisecond, Logger: quiet()})
	e.rec = New(e.cfg, st, e.mgr)
	b, err := boot.New(boot.Config{BootURL: e.bootURL, AssetsDir: e.assets, DeployImageDir: e.assets, TFTPRoot: t.TempDir(), Logger: quiet()}, st, e.rec)
	must(t, err)
	e.swap.set(b.HTTPHandler())
}

func (e *env) start() {
	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	e.done = make(chan error, 1)
	rec := e.rec
	go func() { e.done <- rec.Run(ctx) }()
}

// crash stops the agent the way a kill would as far as the store can
// tell: Run's context ends mid-step and nothing is cleaned up; the file
// is closed only so a new agent can open it.
func (e *env) crash() {
	e.swap.unset()
	e.stop()
	if err := e.wait(); err != nil {
		e.t.Fatalf("Run: %v", err)
	}
	e.stop = nil
	must(e.t, e.st.Close())
}

// wait waits for Run to return after its context ended; a reconciler
// that does not stop (a deadlocked worker) fails the test instead of
// hanging it.
func (e *env) wait() error {
	select {
	case err := <-e.done:
		return err
	case <-time.After(30 * time.Second):
		return errors.New("Run did not return within 30s of its context ending (a worker is stuck)")
	}
}

func (e *env) shutdown() {
	if e.stop != nil {
		e.stop()
		if err := e.wait(); err != nil {
			e.t.Errorf("Run: %v", err)
		}
		e.stop = nil
	}
	e.swap.unset()
	_ = e.st.Close()
}

func (e *env) profile(p *model.BootProfile) {
	_, err := e.st.CreateProfile(context.Background(), p)
	must(e.t, err)
}

func (e *env) machine(name string) *model.Machine {
	m, err := e.st.GetMachine(context.Background(), name)
	must(e.t, err)
	return m
}

func (e *env) update(name string, fn func(m *model.Machine)) {
	_, err := e.st.UpdateMachine(context.Background(), name, func(m *model.Machine) (bool, error) {
		fn(m)
		return true, nil
	})
	must(e.t, err)
}

func (e *env) events(name string) []model.Event {
	evs, err := e.st.ListEvents(context.Background(), name, 0, 10000)
	must(e.t, err)
	return evs
}

// await polls cond until it holds or the deadline passes.
func (e *env) await(what string, timeout time.Duration, cond func() (bool, string)) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) awaitPhase(name string, ph model.Phase, timeout time.Duration) *model.Machine {
	e.t.Helper()
	var m *model.Machine
	e.await(name+" "+string(ph), timeout, func() (bool, string) {
		var err error
		m, err = e.st.GetMachine(context.Background(), name)
		if err != nil {
			return false, err.Error()
		}
		return m.Status.Phase == ph, describe(m)
	})
	return m
}

func (e *env) awaitAll(ph model.Phase, timeout time.Duration) {
	e.t.Helper()
	e.await("every machine "+string(ph), timeout, func() (bool, string) {
		ms, err := e.st.ListMachines(context.Background())
		if err != nil {
			return false, err.Error()
		}
		var not []string
		for _, m := range ms {
			if m.Status.Phase != ph {
				not = append(not, describe(m))
			}
		}
		return len(not) == 0, strings.Join(not, "; ")
	})
}

// awaitTrail waits until the machine's last phase event is last (the
// events of a write follow it).
func (e *env) awaitTrail(name, last string) []string {
	e.t.Helper()
	var trail []string
	e.await(name+" trail ending "+last, 10*time.Second, func() (bool, string) {
		trail = phaseTrail(e.events(name))
		return len(trail) > 0 && trail[len(trail)-1] == last, strings.Join(trail, " ")
	})
	return trail
}

func describe(m *model.Machine) string {
	s := fmt.Sprintf("%s: %s", m.Name, phaseString(m))
	if m.Status.LastError != "" {
		s += " (" + m.Status.LastError + ")"
	}
	return s
}

// phaseTrail is the machine's phase/step history from its events.
func phaseTrail(evs []model.Event) []string {
	var out []string
	for _, e := range evs {
		if e.Type == model.EventPhaseChanged {
			s := string(e.Phase)
			if e.Step != "" {
				s += "/" + string(e.Step)
			}
			out = append(out, s)
		}
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func isRejected(err error) bool { return errors.Is(err, model.ErrTokenRejected) }
