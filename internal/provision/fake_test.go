package provision_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/bmc"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	. "github.com/openbaremetal/terraform-provider-baremetal/internal/provision"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// fakeBMC is a BMC whose machines, once powered on with a PXE override,
// boot straight into the reconciler's Signal and Callback (no HTTP), and
// which measures how many power/boot calls run at once.
type fakeBMC struct {
	delay time.Duration
	st    store.Store
	rec   *Reconciler

	mu        sync.Mutex
	power     map[string]string
	pxe       map[string]bool
	active    int
	maxActive int
	wg        sync.WaitGroup
	// lose is how many power actions are carried out but answered with an
	// unknown outcome (a BMC answering after the request timeout);
	// refuse, how many are not carried out. powers counts those carried out.
	lose, refuse int
	powers       int
	// sessionFull is how many calls fail for a full session table.
	sessionFull int
}

func (f *fakeBMC) fullSessionTable() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sessionFull > 0 {
		f.sessionFull--
		return &bmc.Error{Msg: "the BMC's session table is full: waiting, with backoff", Err: bmc.ErrSessionLimit}
	}
	return nil
}

func (f *fakeBMC) enter() func() {
	f.mu.Lock()
	f.active++
	f.maxActive = max(f.maxActive, f.active)
	f.mu.Unlock()
	time.Sleep(f.delay) // the BMC taking its time is what is being measured
	return func() {
		f.mu.Lock()
		f.active--
		f.mu.Unlock()
	}
}

func (f *fakeBMC) PowerState(_ context.Context, c model.BMC) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.power[c.Endpoint]; p != "" {
		return p, nil
	}
	return model.PowerOff, nil
}

func (f *fakeBMC) Power(_ context.Context, c model.BMC, a bmc.PowerAction) (err error) {
	defer f.enter()()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse > 0 {
		f.refuse--
		return &bmc.Error{Msg: "refused", StatusCode: 400}
	}
	f.powers++
	var lost error
	if f.lose > 0 {
		f.lose--
		lost = &bmc.Error{Msg: "answer lost", Err: bmc.ErrPowerOutcomeUnknown}
	}
	defer func() { err = lost }()
	switch a {
	case bmc.PowerOn, bmc.PowerForceRestart:
		f.power[c.Endpoint] = model.PowerOn
		if f.pxe[c.Endpoint] {
			f.pxe[c.Endpoint] = false
			f.wg.Add(1)
			go f.boot(c.Endpoint)
		}
	default:
		f.power[c.Endpoint] = model.PowerOff
	}
	return nil
}

// boot plays the machine: it asks for PXE and calls back with its token
// (which a real one reads from its kernel command line).
func (f *fakeBMC) boot(endpoint string) {
	defer f.wg.Done()
	name := endpoint[strings.LastIndex(endpoint, "/")+1:]
	ctx := context.Background()
	m, err := f.st.GetMachine(ctx, name)
	if err != nil || m.Run == nil {
		return
	}
	f.rec.Signal(ctx, name, model.SignalPXERequested, map[string]string{"run": m.Run.ID, "token": m.Run.Token})
	_ = f.rec.Callback(ctx, name, m.Run.Token, model.CallbackReport{Addresses: []string{"192.0.2.1"}, Status: "ok"})
}

func (f *fakeBMC) SetBootOverride(_ context.Context, c model.BMC, t bmc.BootTarget, _ bool, _ bmc.BootMode) error {
	defer f.enter()()
	if err := f.fullSessionTable(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pxe[c.Endpoint] = t == bmc.BootPXE
	return nil
}

func (f *fakeBMC) Inventory(ctx context.Context, c model.BMC) (*model.Inventory, error) {
	p, _ := f.PowerState(ctx, c)
	return &model.Inventory{PowerState: p, CPUs: 2}, nil
}

// fakeFleet runs a reconciler with at most maxActive BMC steps at once
// over n machines (MACs 52:54:00:00:<macByte>:xx) whose fake BMC takes
// delay per call, until the test ends.
func fakeFleet(t *testing.T, n, maxActive int, macByte byte, delay time.Duration) (*env, *fakeBMC) {
	t.Helper()
	return fakeFleetOf(t, n, maxActive, macByte, &fakeBMC{delay: delay})
}

// fakeFleetOf is fakeFleet with a fake BMC set up by the caller.
func fakeFleetOf(t *testing.T, n, maxActive int, macByte byte, f *fakeBMC) (*env, *fakeBMC) {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "agent.db"), store.BoltOptions{Logger: quiet()})
	must(t, err)
	t.Cleanup(func() { _ = st.Close() })
	ctx := context.Background()
	_, err = st.CreateProfile(ctx, &model.BootProfile{Name: "os", Kernel: "vmlinuz"})
	must(t, err)
	for i := 1; i <= n; i++ {
		_, err := st.CreateMachine(ctx, &model.Machine{Name: fmt.Sprintf("m%d", i), State: model.StateProvisioned, BootProfile: "os",
			MACs: []string{fmt.Sprintf("52:54:00:00:%02x:%02x", macByte, i)},
			BMC:  model.BMC{Endpoint: fmt.Sprintf("https://bmc.example/redfish/v1/Systems/m%d", i), Username: "u", Password: "p"}})
		must(t, err)
	}
	f.st, f.power, f.pxe = st, map[string]string{}, map[string]bool{}
	rec := New(Config{MaxActive: maxActive, Workers: n, PowerPollInterval: -1, Logger: quiet(),
		Timeouts: StepTimeouts{WaitPXE: 10 * time.Second}, RetryBase: 10 * time.Millisecond}, st, f)
	f.rec = rec
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rec.Run(runCtx) }()
	// Registered after the store's Close, so it runs first.
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("reconciler: %v", err)
		}
		f.wg.Wait()
	})
	return &env{t: t, st: st}, f
}

func TestMaxActiveBoundsPowerAndBootSteps(t *testing.T) {
	const n = 8
	e, f := fakeFleet(t, n, 2, 0x01, 40*time.Millisecond)
	e.awaitAll(model.PhaseProvisioned, 30*time.Second)
	f.mu.Lock()
	most := f.maxActive
	f.mu.Unlock()
	if most != 2 {
		t.Fatalf("at most %d power/boot calls ran at once, want exactly the limit of 2", most)
	}
	for i := 1; i <= n; i++ {
		for _, ev := range e.events(fmt.Sprintf("m%d", i)) {
			if _, leaked := ev.Data["token"]; leaked {
				t.Fatal("a token passed in signal data reached the event log")
			}
		}
	}
}

func TestUnknownMACEventsAreBounded(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "agent.db"), store.BoltOptions{Logger: quiet()})
	must(t, err)
	t.Cleanup(func() { _ = st.Close() })
	rec := New(Config{Logger: quiet()}, st, &fakeBMC{})
	ctx := context.Background()
	for range 50 {
		rec.Signal(ctx, "", model.SignalUnknownMAC, map[string]string{"mac": "aa:bb:cc:dd:ee:01"})
	}
	rec.Signal(ctx, "", model.SignalUnknownMAC, map[string]string{"mac": "aa:bb:cc:dd:ee:02"})
	evs, err := st.ListEvents(ctx, "", 0, 100)
	must(t, err)
	if len(evs) != 2 {
		t.Fatalf("%d agent events for 51 requests from 2 unknown MACs, want 2", len(evs))
	}
}

func TestCallbackUnknownStatusFails(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "agent.db"), store.BoltOptions{Logger: quiet()})
	must(t, err)
	t.Cleanup(func() { _ = st.Close() })
	ctx := context.Background()
	_, err = st.CreateMachine(ctx, &model.Machine{Name: "m1", State: model.StateProvisioned, MACs: []string{"52:54:00:00:02:01"},
		BMC: model.BMC{Endpoint: "https://bmc.example", Username: "u", Password: "p"}})
	must(t, err)
	_, err = st.UpdateMachine(ctx, "m1", func(m *model.Machine) (bool, error) {
		m.Status.Phase, m.Status.Step = model.PhaseProvisioning, model.StepInstalling
		m.Run = &model.Run{ID: "r1", Token: "tok-r1", Profile: "os"}
		return false, nil
	})
	must(t, err)
	rec := New(Config{Logger: quiet()}, st, &fakeBMC{})
	must(t, rec.Callback(ctx, "m1", "tok-r1", model.CallbackReport{Status: "Partially\x00Done"}))
	m, err := st.GetMachine(ctx, "m1")
	must(t, err)
	if m.Status.Phase != model.PhaseFailed || !strings.Contains(m.Status.LastError, `installer reported status "PartiallyDone"`) {
		t.Fatalf("%s: %q", m.Status.Phase, m.Status.LastError)
	}
}
