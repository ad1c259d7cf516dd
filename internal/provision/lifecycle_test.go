package provision_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/bmc"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	. "github.com/openbaremetal/terraform-provider-baremetal/internal/provision"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

var provisionTrail = []string{
	"inspecting", "available", "provisioning/setting_boot", "provisioning/powering_on", "provisioning/waiting_pxe",
}

// assertTrail checks the phases recorded in events: a prefix, then the
// run's later steps in order (signals may skip some), ending provisioned.
func assertProvisionTrail(t *testing.T, name string, evs []model.Event) {
	t.Helper()
	trail := phaseTrail(evs)
	if len(trail) < len(provisionTrail) || !slices.Equal(trail[:len(provisionTrail)], provisionTrail) {
		t.Fatalf("%s: trail %v does not start with %v", name, trail, provisionTrail)
	}
	order := map[string]int{"provisioning/waiting_pxe": 0, "provisioning/booting_installer": 1, "provisioning/installing": 2, "provisioning/finishing": 3, "provisioned": 4}
	last := 0
	for _, s := range trail[len(provisionTrail)-1:] {
		o, ok := order[s]
		if !ok || o < last {
			t.Fatalf("%s: trail %v goes back or sideways at %s", name, trail, s)
		}
		last = o
	}
	if trail[len(trail)-1] != "provisioned" {
		t.Fatalf("%s: trail %v does not end provisioned", name, trail)
	}
}

func TestProvision(t *testing.T) {
	e := newEnv(t, envOpts{machines: 3})
	for _, n := range e.lab.Names() {
		e.update(n, func(m *model.Machine) { m.State = model.StateProvisioned })
	}
	e.start()
	e.awaitAll(model.PhaseProvisioned, 30*time.Second)

	for _, n := range e.lab.Names() {
		m := e.machine(n)
		sys := e.lab.System(n)
		if !slices.Equal(m.MACs, []string{sys.MAC()}) {
			t.Errorf("%s: MACs %v, want %v from the inventory", n, m.MACs, sys.MAC())
		}
		if m.Version != 2 {
			t.Errorf("%s: version %d: discovering MACs or progress moved the spec version", n, m.Version)
		}
		res, err := sys.LastPXE()
		if err != nil || res.Address == "" {
			t.Fatalf("%s: PXE boot %+v, %v", n, res, err)
		}
		if !slices.Equal(m.Status.Addresses, []string{res.Address}) {
			t.Errorf("%s: addresses %v, want %s from the callback", n, m.Status.Addresses, res.Address)
		}
		if len(res.Templates) != 1 || !strings.Contains(res.Templates[0].Body, "hostname: "+n) {
			t.Errorf("%s: rendered templates %+v", n, res.Templates)
		}
		if m.Run == nil || !m.Run.TokenUsed || m.Run.PowerOns != 1 || m.Run.CallbackAt.IsZero() {
			t.Errorf("%s: run %+v", n, m.Run)
		}
		if got := sys.PowerOnCount(); got != 1 {
			t.Errorf("%s: powered on %d times, want 1", n, got)
		}
		if b := sys.BootOverride(); b.Target != "Hdd" {
			t.Errorf("%s: boot override %+v, want the next boot from disk", n, b)
		}
		if m.Status.ProvisionedProfile != "os" || m.Status.ProvisionedProfileVersion != 1 || m.Status.ProvisionedParamsHash == "" || m.Status.PowerState != model.PowerOn {
			t.Errorf("%s: status %+v", n, m.Status)
		}
		if m.Status.LastError != "" || m.Status.ObservedVersion != m.Version {
			t.Errorf("%s: last_error %q, observed %d of %d", n, m.Status.LastError, m.Status.ObservedVersion, m.Version)
		}
		e.awaitTrail(n, "provisioned")
		evs := e.events(n)
		assertProvisionTrail(t, n, evs)
		var types []string
		for _, ev := range evs {
			types = append(types, ev.Type)
			for k, v := range ev.Data {
				if strings.Contains(v, m.Run.Token) || strings.Contains(ev.Message, m.Run.Token) {
					t.Errorf("%s: event %s leaks the token in %s", n, ev.Type, k)
				}
			}
		}
		for _, want := range []string{model.EventRunStarted, model.EventBootOverride, model.EventPowerAction, string(model.SignalPXERequested),
			string(model.SignalScriptServed), string(model.SignalKernelFetched), string(model.SignalInitrdFetched), string(model.SignalTemplatesFetched),
			string(model.SignalCallbackReceived)} {
			if !slices.Contains(types, want) {
				t.Errorf("%s: no %s event in %v", n, want, types)
			}
		}
	}
}

func TestReprovisionOnProfileChange(t *testing.T) {
	e := newEnv(t, envOpts{machines: 1})
	n := e.lab.Names()[0]
	e.update(n, func(m *model.Machine) { m.State = model.StateProvisioned })
	e.start()
	first := e.awaitPhase(n, model.PhaseProvisioned, 20*time.Second)
	oldRun := first.Run

	_, err := e.st.UpdateProfile(context.Background(), "os", func(p *model.BootProfile) error {
		p.Templates = map[string]string{"user-data": "#cloud-config\nhostname: {{ .Machine.Name }}\nversion: two\n"}
		return nil
	})
	must(t, err)
	e.await("re-provisioned with profile v2", 20*time.Second, func() (bool, string) {
		m := e.machine(n)
		return m.Status.Phase == model.PhaseProvisioned && m.Status.ProvisionedProfileVersion == 2, describe(m)
	})
	m := e.machine(n)
	if m.Run.ID == oldRun.ID || m.Run.Token == oldRun.Token {
		t.Fatal("the re-provision reused the run or its token")
	}
	res, _ := e.lab.System(n).LastPXE()
	if !strings.Contains(res.Templates[0].Body, "version: two") {
		t.Fatalf("the machine did not install the new profile: %q", res.Templates[0].Body)
	}
	if got := e.lab.System(n).PowerOnCount(); got != 2 {
		t.Fatalf("powered on %d times, want 2 (one per run)", got)
	}
	err = e.rec.Callback(context.Background(), n, oldRun.Token, model.CallbackReport{Status: "ok"})
	if !isRejected(err) {
		t.Fatalf("old run's token: %v, want rejected", err)
	}
	if err := e.rec.Callback(context.Background(), n, m.Run.Token, model.CallbackReport{Status: "ok"}); !isRejected(err) {
		t.Fatalf("replayed token: %v, want rejected", err)
	}
	if strings.Contains(err.Error(), oldRun.Token) {
		t.Fatal("the rejection names the token")
	}

	// A params change re-provisions too.
	e.update(n, func(m *model.Machine) { m.Params = map[string]string{"site": "other"} })
	e.await("re-provisioned with new params", 20*time.Second, func() (bool, string) {
		x := e.machine(n)
		return x.Status.Phase == model.PhaseProvisioned && x.Status.ProvisionedParamsHash != m.Status.ProvisionedParamsHash, describe(x)
	})
	res, _ = e.lab.System(n).LastPXE()
	if !strings.Contains(res.Templates[0].Body, "hostname: "+n) {
		t.Fatalf("template: %q", res.Templates[0].Body)
	}
}

func TestDeprovision(t *testing.T) {
	e := newEnv(t, envOpts{machines: 3})
	e.profile(&model.BootProfile{Name: "wipe", Kernel: "vmlinuz", Cmdline: "wipe=all baremetal.templates=wipe-script",
		Templates: map[string]string{"wipe-script": "wipe {{ .Machine.Name }}"}})
	e.profile(&model.BootProfile{Name: "os-wiped", Kernel: "vmlinuz", Cmdline: "baremetal.templates=user-data",
		Templates: map[string]string{"user-data": "hostname: {{ .Machine.Name }}"}, WipeProfile: "wipe"})
	names := e.lab.Names()
	for _, n := range names {
		e.update(n, func(m *model.Machine) { m.State = model.StateProvisioned })
	}
	e.update(names[1], func(m *model.Machine) { m.BootProfile = "os-wiped" })
	e.start()
	e.awaitAll(model.PhaseProvisioned, 30*time.Second)
	ctx := context.Background()

	// Deprovision action: back to available, powered off.
	must(t, e.rec.MachineAction(ctx, names[0], ActionDeprovision))
	m := e.awaitPhase(names[0], model.PhaseAvailable, 20*time.Second)
	if m.State != model.StateAvailable || m.Status.PowerState != model.PowerOff || e.lab.System(names[0]).PowerState() != "Off" {
		t.Fatalf("after deprovision: state %s, power %s (lab %s)", m.State, m.Status.PowerState, e.lab.System(names[0]).PowerState())
	}
	trail := e.awaitTrail(names[0], "available")
	if !slices.Equal(trail[len(trail)-2:], []string{"deprovisioning/powering_off", "available"}) {
		t.Fatalf("trail %v", trail)
	}

	// A wipe profile runs before the power-off.
	e.update(names[1], func(m *model.Machine) { m.State = model.StateAvailable })
	m = e.awaitPhase(names[1], model.PhaseAvailable, 20*time.Second)
	res, _ := e.lab.System(names[1]).LastPXE()
	if res == nil || len(res.Templates) != 1 || res.Templates[0].Body != "wipe "+names[1] || !strings.Contains(res.Cmdline, "wipe=all") {
		t.Fatalf("the wipe profile did not run: %+v", res)
	}
	if m.Run.Profile != "wipe" || !m.Run.TokenUsed || m.Status.PowerState != model.PowerOff {
		t.Fatalf("after wipe: run %+v power %s", m.Run, m.Status.PowerState)
	}
	trail = e.awaitTrail(names[1], "available")
	i := slices.Index(trail, "deprovisioning/setting_boot")
	if i < 0 || !slices.Contains(trail[i:], "deprovisioning/powering_off") || trail[len(trail)-1] != "available" {
		t.Fatalf("wipe trail %v", trail)
	}

	// Deletion: powered off, then gone from the store.
	_, err := e.st.UpdateMachine(ctx, names[2], func(m *model.Machine) (bool, error) {
		m.DeletionRequested = time.Now()
		return true, nil
	})
	must(t, err)
	e.await(names[2]+" deleted", 20*time.Second, func() (bool, string) {
		m, err := e.st.GetMachine(ctx, names[2])
		if err == nil {
			return false, describe(m)
		}
		return err != nil && strings.Contains(err.Error(), store.ErrNotFound.Error()), err.Error()
	})
	if p := e.lab.System(names[2]).PowerState(); p != "Off" {
		t.Fatalf("deleted machine left powered %s", p)
	}
}

func TestBMCFaultWithRecovery(t *testing.T) {
	e := newEnv(t, envOpts{machines: 1})
	n := e.lab.Names()[0]
	e.update(n, func(m *model.Machine) { m.State = model.StateProvisioned })
	// Enough 503s to outlast the BMC client's own retry, so the reconciler
	// has to back off and retry the step.
	e.lab.SetFault(n, lab.Fault{Fail503Next: 6})
	e.start()
	m := e.awaitPhase(n, model.PhaseProvisioned, 30*time.Second)
	if m.Status.LastError != "" {
		t.Fatalf("last_error not cleared: %q", m.Status.LastError)
	}
	var errs []string
	for _, ev := range e.events(n) {
		if ev.Type == model.EventError {
			errs = append(errs, ev.Message)
		}
	}
	if len(errs) == 0 || !strings.Contains(errs[0], "BMC "+e.labURL) || !strings.Contains(errs[0], "503") || !strings.Contains(errs[0], "retry 1 of 3") {
		t.Fatalf("error events %q: want retries naming the BMC and the 503", errs)
	}
	if got := e.lab.System(n).PowerOnCount(); got != 1 {
		t.Fatalf("powered on %d times", got)
	}
}

func TestBMCFaultWithoutRecovery(t *testing.T) {
	e := newEnv(t, envOpts{machines: 1})
	n := e.lab.Names()[0]
	inv := e.lab.Inventory(e.labURL)[0]
	e.update(n, func(m *model.Machine) { m.State = model.StateProvisioned })
	e.lab.SetFault(n, lab.Fault{RefuseLogin: true})
	e.start()
	m := e.awaitPhase(n, model.PhaseFailed, 30*time.Second)
	le := m.Status.LastError
	for _, want := range []string{"BMC " + e.labURL, "401", "while reading the inventory", "retried 3 times"} {
		if !strings.Contains(le, want) {
			t.Errorf("last_error %q does not say %q", le, want)
		}
	}
	if strings.Contains(le, inv.Password) {
		t.Fatal("last_error contains the BMC password")
	}
	for _, ev := range e.events(n) {
		if strings.Contains(ev.Message, inv.Password) {
			t.Fatalf("event %s contains the BMC password", ev.Type)
		}
	}
	// failed stays failed until the operator changes something.
	v := m.Revision
	time.Sleep(300 * time.Millisecond) // a window for a wrong retry to show; nothing to poll for
	if x := e.machine(n); x.Revision != v || x.Status.Phase != model.PhaseFailed {
		t.Fatalf("a failed machine moved on its own: %s", describe(x))
	}
	// The operator fixes the BMC and touches the spec: it retries from the start.
	e.lab.SetFault(n, lab.Fault{})
	e.update(n, func(m *model.Machine) { m.Params = map[string]string{"fixed": "bmc"} })
	m = e.awaitPhase(n, model.PhaseProvisioned, 30*time.Second)
	if m.Status.LastError != "" {
		t.Fatalf("last_error %q after recovery", m.Status.LastError)
	}
}

func TestWaitPXETimeout(t *testing.T) {
	e := newEnv(t, envOpts{machines: 1, noBoot: true, cfg: func(c *Config) {
		c.Timeouts.WaitPXE = 300 * time.Millisecond
		c.Timeouts.Retries = 2
	}})
	n := e.lab.Names()[0]
	e.update(n, func(m *model.Machine) { m.State = model.StateProvisioned })
	e.start()
	m := e.awaitPhase(n, model.PhaseFailed, 30*time.Second)
	if !strings.Contains(m.Status.LastError, "no PXE request") || !strings.Contains(m.Status.LastError, "3 power-ons") {
		t.Fatalf("last_error %q", m.Status.LastError)
	}
	if got := e.lab.System(n).PowerOnCount(); got != 3 {
		t.Fatalf("powered on %d times, want 3 (first try and 2 retries)", got)
	}
	if m.Run.PowerOns != 3 || m.Run.Attempts != 2 || !m.Run.TokenUsed {
		t.Fatalf("run %+v: want 3 power-ons, 2 attempts, token dead", m.Run)
	}
	trail := e.awaitTrail(n, "failed")
	if c := strings.Count(strings.Join(trail, " "), "provisioning/waiting_pxe"); c != 3 {
		t.Fatalf("trail %v: want 3 waits for PXE", trail)
	}
	// The operator's provision action retries a failed machine at once.
	must(t, e.rec.MachineAction(context.Background(), n, ActionProvision))
	x := e.machine(n)
	if x.Status.Phase != model.PhaseProvisioning || x.Run.ID == m.Run.ID || x.Run.Token == m.Run.Token || x.Status.LastError != "" {
		t.Fatalf("after the provision action: %s, run %s", describe(x), x.Run.ID)
	}
	e.await("the new run powers the machine on", 10*time.Second, func() (bool, string) {
		return e.lab.System(n).PowerOnCount() == 4, fmt.Sprint(e.lab.System(n).PowerOnCount())
	})
}

func TestCallbackTokens(t *testing.T) {
	e := newEnv(t, envOpts{machines: 2, noBoot: true})
	names := e.lab.Names()
	for _, n := range names {
		e.update(n, func(m *model.Machine) { m.State = model.StateProvisioned })
	}
	e.start()
	ctx := context.Background()
	for _, n := range names {
		e.await(n+" waiting for PXE", 20*time.Second, func() (bool, string) {
			m := e.machine(n)
			return m.Status.Step == model.StepWaitingPXE, describe(m)
		})
	}
	a, b := e.machine(names[0]), e.machine(names[1])
	// A power action in the middle of a run is refused, not interleaved.
	if err := e.rec.MachineAction(ctx, names[0], ActionPowerOff); err == nil || !strings.Contains(err.Error(), store.ErrConflict.Error()) {
		t.Fatalf("power_off during provisioning: %v, want a conflict", err)
	}
	for _, tc := range []struct{ name, token string }{
		{"empty", ""},
		{"wrong", strings.Repeat("0", 64)},
		{"prefix", a.Run.Token[:32]},
		{"other machine's", b.Run.Token},
	} {
		if err := e.rec.Callback(ctx, names[0], tc.token, model.CallbackReport{Status: "ok"}); !isRejected(err) {
			t.Fatalf("%s token: %v, want rejected", tc.name, err)
		}
	}
	if err := e.rec.Callback(ctx, "ghost", a.Run.Token, model.CallbackReport{}); !isRejected(err) {
		t.Fatalf("unknown machine: %v", err)
	}
	if x := e.machine(names[0]); x.Status.Phase != model.PhaseProvisioning || x.Run.TokenUsed {
		t.Fatalf("a rejected callback changed the machine: %s", describe(x))
	}
	var rejected int
	for _, ev := range e.events(names[0]) {
		if ev.Type == string(model.SignalCallbackRejected) {
			rejected++
			if strings.Contains(ev.Message, a.Run.Token) || strings.Contains(ev.Message, b.Run.Token) {
				t.Fatal("rejection event contains a token")
			}
		}
	}
	if rejected != 4 {
		t.Fatalf("%d callback_rejected events, want 4", rejected)
	}

	// The right token completes the run from whatever step it is in.
	must(t, e.rec.Callback(ctx, names[0], a.Run.Token, model.CallbackReport{Addresses: []string{"10.1.2.3", "not-an-ip"}, Status: "ok"}))
	m := e.awaitPhase(names[0], model.PhaseProvisioned, 20*time.Second)
	if !slices.Equal(m.Status.Addresses, []string{"10.1.2.3"}) {
		t.Fatalf("addresses %v", m.Status.Addresses)
	}
	if err := e.rec.Callback(ctx, names[0], a.Run.Token, model.CallbackReport{}); !isRejected(err) {
		t.Fatalf("replay: %v", err)
	}
	// An installer reporting failure fails the machine with its log.
	must(t, e.rec.Callback(ctx, names[1], b.Run.Token, model.CallbackReport{Status: "failed", LogTail: "step 1\npartitioning /dev/sda: no such device\x1b[0m"}))
	m = e.awaitPhase(names[1], model.PhaseFailed, 5*time.Second)
	if !strings.Contains(m.Status.LastError, "installer reported failure") || !strings.Contains(m.Status.LastError, "partitioning /dev/sda: no such device") ||
		strings.ContainsAny(m.Status.LastError, "\n\x1b") {
		t.Fatalf("last_error %q", m.Status.LastError)
	}
}

func TestPowerDriftAndActions(t *testing.T) {
	e := newEnv(t, envOpts{machines: 1, cfg: func(c *Config) { c.PowerPollInterval = 50 * time.Millisecond }})
	n := e.lab.Names()[0]
	e.update(n, func(m *model.Machine) { m.State = model.StateProvisioned })
	e.start()
	m := e.awaitPhase(n, model.PhaseProvisioned, 20*time.Second)
	ctx := context.Background()

	// Polls that find nothing new are not written every time.
	reads := func() int {
		c := 0
		for _, r := range e.lab.Requests() {
			if r.Method == "GET" && strings.HasSuffix(r.Path, "/Systems/"+n) {
				c++
			}
		}
		return c
	}
	before, rev := reads(), e.machine(n).Revision
	e.await("eight drift polls", 10*time.Second, func() (bool, string) {
		return reads() >= before+8, fmt.Sprint(reads() - before)
	})
	if bumps := e.machine(n).Revision - rev; bumps > 2 {
		t.Fatalf("8 unchanged drift polls made %d writes", bumps)
	}

	// Someone powers it off behind the agent's back.
	must(t, e.mgr.Power(ctx, m.BMC, bmc.PowerForceOff))
	e.await("drift recorded", 10*time.Second, func() (bool, string) {
		x := e.machine(n)
		return x.Status.PowerDrift && x.Status.PowerState == model.PowerOff, describe(x)
	})
	// The operator powers it back on through the agent: drift clears.
	must(t, e.rec.MachineAction(ctx, n, ActionPowerOn))
	if x := e.machine(n); x.Status.PowerDrift || x.Status.PowerState != model.PowerOn {
		t.Fatalf("after power_on: drift %v power %s", x.Status.PowerDrift, x.Status.PowerState)
	}
	var drift, actions int
	for _, ev := range e.events(n) {
		switch ev.Type {
		case model.EventPowerDrift:
			drift++
		case model.EventPowerAction:
			if ev.Data["operator"] == "true" {
				actions++
			}
		}
	}
	if drift != 2 || actions != 1 {
		t.Fatalf("%d drift events (want detected + cleared), %d operator power events", drift, actions)
	}
	if e.lab.System(n).PowerOnCount() != 2 {
		t.Fatalf("power-ons %d", e.lab.System(n).PowerOnCount())
	}
	if err := e.rec.MachineAction(ctx, n, "explode"); err == nil {
		t.Fatal("unknown action accepted")
	}
	if err := e.rec.MachineAction(ctx, "ghost", ActionReset); err == nil || !strings.Contains(err.Error(), store.ErrNotFound.Error()) {
		t.Fatalf("action on a missing machine: %v", err)
	}
	// provision forces a new run now.
	old := e.machine(n).Run.ID
	must(t, e.rec.MachineAction(ctx, n, ActionProvision))
	e.await("forced run done", 20*time.Second, func() (bool, string) {
		x := e.machine(n)
		return x.Run.ID != old && x.Status.Phase == model.PhaseProvisioned, describe(x)
	})
}

func TestDesiredOff(t *testing.T) {
	e := newEnv(t, envOpts{machines: 1, cfg: func(c *Config) { c.PowerPollInterval = 50 * time.Millisecond }})
	n := e.lab.Names()[0]
	e.start()
	e.awaitPhase(n, model.PhaseAvailable, 10*time.Second)
	ctx := context.Background()
	// Registration leaves the power as it is: power it on and nothing
	// turns it off or calls it drift.
	must(t, e.rec.MachineAction(ctx, n, ActionPowerOn))
	if m := e.machine(n); m.Status.PowerDrift || m.Status.PowerState != model.PowerOn {
		t.Fatalf("available machine powered on: %+v", m.Status)
	}
	e.update(n, func(m *model.Machine) { m.State = model.StateOff })
	m := e.awaitPhase(n, model.PhaseOff, 10*time.Second)
	if e.lab.System(n).PowerState() != "Off" || m.Status.PowerState != model.PowerOff {
		t.Fatalf("desired off: lab %s, status %s", e.lab.System(n).PowerState(), m.Status.PowerState)
	}
	// Phase off expects Off: powering it on behind the agent's back is drift.
	must(t, e.mgr.Power(ctx, m.BMC, bmc.PowerOn))
	e.await("drift in phase off", 10*time.Second, func() (bool, string) {
		x := e.machine(n)
		return x.Status.PowerDrift, describe(x)
	})
	// Desired available from off: the phase changes, the power is left alone.
	e.update(n, func(m *model.Machine) { m.State = model.StateAvailable })
	e.awaitPhase(n, model.PhaseAvailable, 10*time.Second)
	if e.lab.System(n).PowerState() != "On" {
		t.Fatal("going from off to available touched the power")
	}
	if c := e.lab.System(n).PowerOnCount(); c != 2 {
		t.Fatalf("power-ons %d, want 2 (the operator's and the intruder's)", c)
	}
}

// The machine's boot_mode decides the mode sent with every override; a mode
// the BMC does not allow fails the run before any override is sent, naming
// what the BMC allows; unset, a UEFI machine is kept UEFI.
func TestBootMode(t *testing.T) {
	e := newEnv(t, envOpts{machines: 3, firmware: lab.FirmwareMixed})
	wantMode := map[string]model.BootMode{"lab-1": model.BootModeUEFI, "lab-2": "", "lab-3": model.BootModeLegacy}
	for n, mode := range wantMode {
		e.update(n, func(m *model.Machine) { m.State = model.StateProvisioned; m.BootMode = mode })
	}
	e.start()
	m := e.awaitPhase("lab-1", model.PhaseFailed, 30*time.Second)
	require.Contains(t, m.Status.LastError, `boot_mode "uefi" is not offered by the BMC, which allows legacy`)
	e.awaitPhase("lab-2", model.PhaseProvisioned, 30*time.Second)
	e.awaitPhase("lab-3", model.PhaseProvisioned, 30*time.Second)

	patches := map[string]int{}
	for _, r := range e.lab.Requests() {
		if r.Method == http.MethodPatch {
			patches[r.System]++
		}
	}
	assert.Zero(t, patches["lab-1"], "boot overrides sent to the machine whose mode the BMC refuses")
	assert.Equal(t, "UEFI", e.lab.System("lab-2").BootOverride().Mode, "the UEFI machine's override mode")
	assert.Equal(t, "Legacy", e.lab.System("lab-3").BootOverride().Mode, "the legacy machine's override mode")
}

// TestCallbackBoundToScriptSource: a run's callback is accepted only from
// the address its boot script was first served to; a later script fetch
// from elsewhere does not rebind it, and a profile may opt out.
func TestCallbackBoundToScriptSource(t *testing.T) {
	e := newEnv(t, envOpts{machines: 2, noBoot: true})
	names := e.lab.Names()
	// The opt-out profile exists before the runs start: changing a
	// profile mid-run would start a new run with a new token, and the
	// callback below would then (rightly) be refused for a stale token.
	base, err := e.st.GetProfile(context.Background(), "os")
	require.NoError(t, err)
	anySource := model.BootProfile{Name: "os-any-source", Kernel: base.Kernel, Initrds: base.Initrds, Cmdline: base.Cmdline,
		Templates: base.Templates, Params: base.Params, CallbackAnySource: true}
	e.profile(&anySource)
	for _, n := range names {
		e.update(n, func(m *model.Machine) { m.State = model.StateProvisioned })
	}
	e.update(names[1], func(m *model.Machine) { m.BootProfile = anySource.Name })
	e.start()
	ctx := context.Background()
	for _, n := range names {
		e.await(n+" waiting for PXE", 20*time.Second, func() (bool, string) {
			m := e.machine(n)
			return m.Status.Step == model.StepWaitingPXE, describe(m)
		})
	}
	a := e.machine(names[0])
	ok := model.CallbackReport{Status: "ok", Addresses: []string{"10.6.6.6"}}
	from := func(addr string) model.CallbackReport { r := ok; r.From = addr; return r }
	require.True(t, isRejected(e.rec.Callback(ctx, names[0], a.Run.Token, from("192.0.2.10"))), "no script served yet")
	served := func(remote string) {
		e.rec.Signal(ctx, names[0], model.SignalScriptServed, map[string]string{"run": a.Run.ID, "remote": remote})
	}
	served("192.0.2.10")
	served("192.0.2.66")
	require.Equal(t, "192.0.2.10", e.machine(names[0]).Run.ScriptFrom)
	require.True(t, isRejected(e.rec.Callback(ctx, names[0], a.Run.Token, from("192.0.2.66"))), "callback from another address")
	x := e.machine(names[0])
	require.False(t, x.Run.TokenUsed)
	require.Empty(t, x.Status.Addresses)
	require.NoError(t, e.rec.Callback(ctx, names[0], a.Run.Token, from("192.0.2.10")))

	// The opt-out: any address, even with no script served.
	b := e.machine(names[1])
	require.NoError(t, e.rec.Callback(ctx, names[1], b.Run.Token, from("198.51.100.7")))
}
