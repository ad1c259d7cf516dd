package provision_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/agentd"
	. "github.com/openbaremetal/terraform-provider-baremetal/internal/provision"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"

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

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

type envOpts struct {
	machines int
	noBoot   bool   // the lab's machines never boot anything (no boot URL)
	firmware string // the lab's Firmware setting
	cfg      func(c *Config)
}

// env is a whole agent as agentd assembles it (its real bolt store, the
// real boot HTTP edge, the real Redfish client, the API) against the lab's
// memory-backed BMCs, whose simulated machines PXE boot from the boot edge.
// Tests set up and inspect state in the store beneath the API.
type env struct {
	t       *testing.T
	dataDir string
	st      store.Store
	lab     *lab.Lab
	labURL  string
	bootURL string
	boot    *testenv.Reusable
	assets  string
	// mgr is a Redfish client of the test's own, playing someone who
	// powers a machine behind the agent's back.
	mgr   *bmc.Manager
	rec   *Reconciler
	agent *testenv.InProc
	opts  []agentd.Option
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{t: t, dataDir: t.TempDir(), assets: testenv.Assets(t)}
	addr := testenv.FreeTCP(t)
	e.bootURL = "http://" + addr.Addr
	// One socket for every agent the test starts, so the boot URL the
	// lab's machines have stays right across a restart.
	e.boot = addr.Reusable(t)
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
	e.mgr = bmc.NewManager(bmc.Config{Logger: quiet()})
	t.Cleanup(func() { e.mgr.Close(context.Background()) })

	e.opts = []agentd.Option{
		agentd.WithBMC(func(c *bmc.Config) {
			c.RequestTimeout, c.PowerWaitTimeout, c.PollInterval, c.GracefulTimeout = 2*time.Second, time.Second, 10*time.Millisecond, time.Second
			// Short like the step backoff, so a refused login healed while
			// retrying is tried again within the step's retries.
			c.MaxRetries, c.RetryBase, c.RetryMax, c.LoginBackoff = 1, 10*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
		}),
		agentd.WithProvision(func(c *Config) { c.Workers, c.PowerPollInterval = 8, -1 }),
		agentd.WithStepTimeouts(StepTimeouts{Inspect: 5 * time.Second, SetBoot: 5 * time.Second, PowerOn: 5 * time.Second, PowerOff: 5 * time.Second,
			Finish: 5 * time.Second, WaitPXE: 20 * time.Second, BootInstaller: 20 * time.Second, Install: 20 * time.Second, Retries: 3},
			20*time.Millisecond, 100*time.Millisecond),
	}
	if o.cfg != nil {
		e.opts = append(e.opts, agentd.WithProvision(o.cfg))
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
	return e
}

// open assembles an agent on the env's data dir and boot address, not yet
// running: the test sets up the store first.
func (e *env) open() {
	cfg := agentd.Defaults()
	cfg.AssetsDir, cfg.DeployImageDir, cfg.TFTPRoot = e.assets, e.assets, e.t.TempDir()
	e.agent = testenv.NewInProc(e.t, cfg, testenv.InProcSpec{DataDir: e.dataDir, Boot: e.boot.View()}, e.opts...)
	e.st, e.rec = e.agent.Store(), e.agent.Reconciler()
}

func (e *env) start() { e.agent.Start(e.t) }

// crash stops the agent mid-step, as far as the store can tell: Run's
// context ends whatever the workers are doing. The store is closed so a
// new agent can open it.
func (e *env) crash() { e.agent.Stop(e.t) }

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

// await waits until cond holds; cond reports the state it saw.
func (e *env) await(what string, timeout time.Duration, cond func() (bool, string)) {
	e.t.Helper()
	testenv.Eventually(e.t, what, timeout, func() error {
		if ok, state := cond(); !ok {
			return fmt.Errorf("last: %s", state)
		}
		return nil
	})
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

func (e *env) awaitAll(ph model.Phase, timeout time.Duration) { //nolint:unparam // the phase waited for reads at each call
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
	s := fmt.Sprintf("%s: %s", m.Name, PhaseString(m))
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
