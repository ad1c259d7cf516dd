package provider

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

// The recovery tests set up each failure of issue 18 (D1-D11) with the real
// terraform and then recover by an ordinary apply: no API call, no untaint.
// They drive an in-process lab of their own (the shared lab is another
// process), so they can inject BMC faults and read the BMC's request log.
// Its machines are numbered after the shared lab's so their MACs differ.

const faultLabMachines = 30

var (
	faultLabOnce sync.Once
	faultLabInst *faultLab
)

type faultLab struct {
	lab *lab.Lab
	srv *httptest.Server
	inv map[string]lab.InventoryEntry
}

// recoveryLab returns the shared in-process lab, started on first use.
func recoveryLab(t *testing.T, a *accAgent) *faultLab {
	t.Helper()
	faultLabOnce.Do(func() {
		l, err := lab.New(lab.Config{Machines: faultLabMachines, Backend: lab.BackendMemory, NamePrefix: "rec-", BootURL: a.bootURL, PasswordSeed: "recovery"})
		if err != nil {
			t.Fatalf("starting the recovery lab: %v", err)
		}
		srv := httptest.NewServer(l.Handler())
		f := &faultLab{lab: l, srv: srv, inv: map[string]lab.InventoryEntry{}}
		for _, e := range l.Inventory(srv.URL) {
			f.inv[e.Name] = e
		}
		faultLabInst = f
	})
	if faultLabInst == nil {
		t.Fatal("the recovery lab did not start")
	}
	return faultLabInst
}

// machine returns lab machine n, which must be above the shared lab's.
func (f *faultLab) machine(t *testing.T, n int) lab.InventoryEntry {
	t.Helper()
	if n <= labMachines || n > faultLabMachines {
		t.Fatalf("recovery lab machine %d: use %d to %d", n, labMachines+1, faultLabMachines)
	}
	return f.inv[fmt.Sprintf("rec-%d", n)]
}

// powerActions counts the power actions (Reset POSTs the BMC accepted) and
// boot override PATCHes the BMC received for system since t.
func (f *faultLab) powerActions(system string, since time.Time) (resets, patches int) {
	for _, r := range f.lab.Requests() {
		if r.System != system || r.Start.Before(since) || r.Status >= 300 {
			continue
		}
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/Actions/ComputerSystem.Reset"):
			resets++
		case r.Method == http.MethodPatch:
			patches++
		}
	}
	return resets, patches
}

// agentMachine reads the machine from the agent: the tests only look.
func agentMachine(t *testing.T, a *accAgent, name string) *api.Machine {
	t.Helper()
	m, err := a.client.GetMachine(testCtx(t), name)
	if err != nil {
		t.Fatalf("reading machine %s: %v", name, err)
	}
	return m
}

// awaitMachine waits until the agent's view of the machine satisfies ok.
func awaitMachine(t *testing.T, a *accAgent, name string, what string, ok func(m *api.Machine) bool) {
	t.Helper()
	testenv.Eventually(t, "machine "+name+": "+what, 60*time.Second, func() error {
		m, err := a.client.GetMachine(testCtx(t), name)
		if err != nil {
			return err
		}
		if !ok(m) {
			return fmt.Errorf("phase %s, bmc_status %s, last_error %q", m.Phase, m.BMCStatus, m.LastError)
		}
		return nil
	})
}

func woMachineConfig(res, name string, m lab.InventoryEntry, password string, version int, body string) string {
	return fmt.Sprintf(`
resource "baremetal_machine" %q {
  name = %q
  bmc = {
    endpoint            = %q
    username            = %q
    password_wo         = %q
    password_wo_version = %d
  }
%s
}
`, res, name, m.Endpoint, m.Username, password, version, body)
}

// TestAccRecoverFailedClusterMember (D1): an installer failure (the
// worker's installer asks for a template its profile lacks; a template that
// does not render would fail at apply instead) fails a worker during a
// rollout and pauses the cluster; the next plan shows the
// unfinished rollout, and fixing the template and applying resumes it.
func TestAccRecoverFailedClusterMember(t *testing.T) {
	a := testAgent(t)
	f := recoveryLab(t, a)
	cp, wk := f.machine(t, 17), f.machine(t, 18)
	cfg := func(release, workerFetches string) string {
		return a.providerConfig() + profileConfig(a, "cp", "rec-d1-cp", "quiet") + fmt.Sprintf(`
resource "baremetal_boot_profile" "worker" {
  name    = "rec-d1-worker"
  kernel  = "%[1]s/vmlinuz"
  initrds = ["%[1]s/initrd.img"]
  cmdline = "console=ttyS0 baremetal.templates=%[2]s"
  templates = {
    user-data = "#cloud-config\nrelease: {{ .Params.release }}\n"
  }
}
`, a.assets.URL, workerFetches) + machineConfig("cp", "rec-d1-cp", cp, "") + machineConfig("wk", "rec-d1-wk", wk, "") + fmt.Sprintf(`
resource "baremetal_cluster" "c" {
  name = "rec-d1"
  members = [
    { machine = baremetal_machine.cp.name, role = "control-plane" },
    { machine = baremetal_machine.wk.name, role = "worker" },
  ]
  roles = [
    { name = "control-plane", boot_profile = baremetal_boot_profile.cp.name },
    { name = "worker", boot_profile = baremetal_boot_profile.worker.name },
  ]
  params = {
    release = %q
  }
}
`, release)
	}
	const good, broken = "user-data", "user-data,not-in-profile"
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		Steps: []resource.TestStep{
			{Config: cfg("1", good)},
			{
				// The rollout of release 2 fails the worker: its installer asks
				// for a template the profile lacks. The cluster pauses and the
				// apply fails.
				Config:      cfg("2", broken),
				ExpectError: regexp.MustCompile(`(?s)(Boot Profile "rec-d1-worker" Rollout Did Not Complete|Unable to Update Cluster "rec-d1").*rec-d1-wk`),
			},
			{
				// The unfinished rollout stays in the plan.
				Config:             cfg("2", broken),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{
				// Fixing the profile and applying resumes the rollout.
				Config: cfg("2", good),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction("baremetal_cluster.c", plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("baremetal_cluster.c", tfjsonpath.New("phase"), knownvalue.StringExact("ready")),
				},
				Check: func(*terraform.State) error {
					m := agentMachine(t, a, "rec-d1-wk")
					if m.Phase != api.PhaseProvisioned || m.LastError != "" {
						return fmt.Errorf("worker is %s (last_error %q), want provisioned", m.Phase, m.LastError)
					}
					return nil
				},
			},
		},
	})
}

// TestAccRecoverWrongBMCPassword (D2): a machine registered with a wrong
// BMC password fails; giving the right one (a new password_wo_version)
// replaces the tainted machine at once, without waiting for a power-off
// that cannot happen. Later, when the BMC starts refusing the password of
// an installed machine, a new password is an in-place update.
func TestAccRecoverWrongBMCPassword(t *testing.T) {
	a := testAgent(t)
	f := recoveryLab(t, a)
	lm := f.machine(t, 19)
	body := profileConfig(a, "p", "rec-d2-p", "quiet")
	cfg := func(password string, version int) string {
		return a.providerConfig() + body + woMachineConfig("m", "rec-d2", lm, password, version, `
  boot_profile = baremetal_boot_profile.p.name
  timeouts {
    delete = "30s"
  }
`)
	}
	const res = "baremetal_machine.m"
	var before time.Time
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		CheckDestroy:             checkMachinesGoneAndOff(a, map[string]lab.InventoryEntry{"rec-d2": lm}),
		Steps: []resource.TestStep{
			{
				Config:      cfg("wrong-password", 1),
				ExpectError: regexp.MustCompile(`(?s)Unable to Create Machine "rec-d2".*login refused.*refuses the configured credentials`),
			},
			{
				PreConfig: func() { before = time.Now() },
				Config:    cfg(lm.Password, 2),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionReplace)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("phase"), knownvalue.StringExact("provisioned")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("bmc_status"), knownvalue.StringExact("ok")),
				},
				Check: func(*terraform.State) error {
					// One power-on for the install; the destroy sent none.
					if resets, _ := f.powerActions(lm.Name, before); resets != 1 {
						return fmt.Errorf("the BMC saw %d power actions, want 1 (the install's power-on)", resets)
					}
					return nil
				},
			},
			{
				// The BMC's password changes behind the agent's back.
				PreConfig: func() {
					f.lab.SetFault(lm.Name, lab.Fault{RefuseLogin: true})
					awaitMachine(t, a, "rec-d2", "bmc_status auth_failed", func(m *api.Machine) bool { return m.BMCStatus == api.BMCStatusAuthFailed })
				},
				Config:             cfg(lm.Password, 2),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{
				// The operator sets the new password: an in-place update.
				PreConfig: func() { f.lab.SetFault(lm.Name, lab.Fault{}) },
				Config:    cfg(lm.Password, 3),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("bmc_status"), knownvalue.StringExact("ok")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("last_error"), knownvalue.StringExact("")),
				},
			},
		},
	})
}

// blockingAssets serves the kernel and initrd like the harness's asset
// server, except that a kernel request waits while the gate is closed: the
// simulated machine's install then lasts as long as the test wants.
type blockingAssets struct {
	srv  *httptest.Server
	mu   sync.Mutex
	gate chan struct{}
}

func newBlockingAssets(t *testing.T) *blockingAssets {
	b := &blockingAssets{gate: make(chan struct{})}
	close(b.gate)
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/vmlinuz" {
			b.mu.Lock()
			g := b.gate
			b.mu.Unlock()
			select {
			case <-g:
			case <-r.Context().Done():
				return
			}
		}
		http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(bytes.Repeat([]byte{0x7f}, 4096)))
	}))
	t.Cleanup(func() { b.open(); b.srv.Close() })
	return b
}

func (b *blockingAssets) close() {
	b.mu.Lock()
	b.gate = make(chan struct{})
	b.mu.Unlock()
}

func (b *blockingAssets) open() {
	b.mu.Lock()
	select {
	case <-b.gate:
	default:
		close(b.gate)
	}
	b.mu.Unlock()
}

// watchedProviderConfig points the provider at a proxy of the agent's API
// that calls seen once, when a request matching method and path passes: a
// test can then act at the moment the provider acts, not after a guess.
func watchedProviderConfig(t *testing.T, a *accAgent, method, path string, seen func()) string {
	t.Helper()
	target, err := url.Parse(a.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(a.caPEM))
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	var once sync.Once
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == method && r.URL.Path == path {
			once.Do(seen)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return providerBlock(srv.URL, a.token, string(certPEM))
}

// TestAccResumeAfterTimeout (D3): a create that runs out of time while the
// install goes on leaves the machine in state untainted, and the next
// apply waits on the same run instead of reinstalling; after an update
// timeout the next plan shows the unfinished update and applying waits.
func TestAccResumeAfterTimeout(t *testing.T) {
	a := testAgent(t)
	f := recoveryLab(t, a)
	lm := f.machine(t, 20)
	assets := newBlockingAssets(t)
	// An install goes on once the apply that resumes it has planned and
	// sent the machine's update: its plan shows the unfinished install.
	resumeCreate := watchedProviderConfig(t, a, http.MethodPut, "/v1/machines/rec-d3", assets.open)
	resumeUpdate := watchedProviderConfig(t, a, http.MethodPut, "/v1/machines/rec-d3", assets.open)
	cfgVia := func(provider, hostname string) string {
		return provider + fmt.Sprintf(`
resource "baremetal_boot_profile" "p" {
  name    = "rec-d3-p"
  kernel  = "%s/vmlinuz"
  cmdline = "console=ttyS0"
}
`, assets.srv.URL) + machineConfig("m", "rec-d3", lm, fmt.Sprintf(`
  boot_profile = baremetal_boot_profile.p.name
  params = {
    hostname = %q
  }
  timeouts {
    create = "5s"
    update = "5s"
  }
`, hostname))
	}
	cfg := func(hostname string) string { return cfgVia(a.providerConfig(), hostname) }
	const res = "baremetal_machine.m"
	onePowerOnPerInstall := func(installs int) resource.TestCheckFunc {
		return func(*terraform.State) error {
			if got := f.lab.System(lm.Name).PowerOnCount(); got != installs {
				return fmt.Errorf("the BMC powered the machine on %d times, want %d (one per install)", got, installs)
			}
			return nil
		}
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		Steps: []resource.TestStep{
			{
				// The install outlasts the create timeout: a warning, no taint.
				PreConfig:          assets.close,
				Config:             cfg("a"),
				ExpectNonEmptyPlan: true,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("phase"), knownvalue.StringExact("provisioning")),
				},
			},
			{
				// The next apply updates in place and waits on the same run.
				Config: cfgVia(resumeCreate, "a"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("phase"), knownvalue.StringExact("provisioned")),
				},
				Check: onePowerOnPerInstall(1),
			},
			{
				// A re-provision that outlasts the update timeout fails the apply...
				PreConfig:   assets.close,
				Config:      cfg("b"),
				ExpectError: regexp.MustCompile(`(?s)Unable to Update Machine "rec-d3".*within the timeout.*apply again to keep waiting`),
			},
			{
				// ...the unfinished update stays in the plan...
				Config:             cfg("b"),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{
				// ...and applying waits for the same run.
				Config: cfgVia(resumeUpdate, "b"),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("phase"), knownvalue.StringExact("provisioned")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("params").AtMapKey("hostname"), knownvalue.StringExact("b")),
				},
				Check: onePowerOnPerInstall(2),
			},
		},
	})
}

// TestAccBMCStatus (D5): when the BMC starts refusing the agent's login,
// the power polls show it in bmc_status and last_error and the next plan
// shows a change; once the BMC accepts the login again, applying checks it
// at once and the plan is empty again.
func TestAccBMCStatus(t *testing.T) {
	a := testAgent(t)
	f := recoveryLab(t, a)
	lm := f.machine(t, 21)
	body := machineConfig("m", "rec-d5", lm, `  state = "available"`)
	cfg := a.providerConfig() + body
	// The BMC accepts the login again the moment the apply writes the
	// machine: the plan before it still saw the refusal.
	fixedOnApply := watchedProviderConfig(t, a, http.MethodPut, "/v1/machines/rec-d5", func() { f.lab.SetFault(lm.Name, lab.Fault{}) }) + body
	const res = "baremetal_machine.m"
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		Steps: []resource.TestStep{
			{
				Config: cfg,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("bmc_status"), knownvalue.StringExact("ok")),
				},
			},
			{
				PreConfig: func() {
					f.lab.SetFault(lm.Name, lab.Fault{RefuseLogin: true})
					awaitMachine(t, a, "rec-d5", "bmc_status auth_failed", func(m *api.Machine) bool { return m.BMCStatus == api.BMCStatusAuthFailed })
				},
				RefreshState: true,
				Check: func(s *terraform.State) error {
					attrs := s.RootModule().Resources[res].Primary.Attributes
					if attrs["bmc_status"] != "auth_failed" || attrs["bmc_status_since"] == "" ||
						!regexp.MustCompile(`login refused.*while polling the power state; the BMC refuses the configured credentials`).MatchString(attrs["last_error"]) {
						return fmt.Errorf("after refresh: bmc_status %q since %q, last_error %q", attrs["bmc_status"], attrs["bmc_status_since"], attrs["last_error"])
					}
					return nil
				},
				ExpectNonEmptyPlan: true,
			},
			{
				Config:             cfg,
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{
				Config: fixedOnApply,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("bmc_status"), knownvalue.StringExact("ok")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("last_error"), knownvalue.StringExact("")),
				},
			},
		},
	})
}

// TestAccIPXEScriptNeedsMagic (D7): an ipxe_script that does not start
// with #!ipxe is refused at plan time, naming the attribute.
func TestAccIPXEScriptNeedsMagic(t *testing.T) {
	a := testAgent(t)
	cfg := func(script string) string {
		return a.providerConfig() + fmt.Sprintf(`
resource "baremetal_boot_profile" "s" {
  name        = "rec-d7"
  ipxe_script = %q
}
`, script)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		Steps: []resource.TestStep{
			{
				Config:      cfg("kernel http://x/vmlinuz\nboot\n"),
				ExpectError: regexp.MustCompile(`(?s)ipxe_script.*to start with #!ipxe on its first line`),
			},
			{Config: cfg("#!ipxe\nkernel http://x/vmlinuz\nboot\n")},
		},
	})
}

// TestAccMACConflictHint (D8): a create refused because another machine
// lists the MAC says so, without the import advice that fits only a taken
// name; fixing macs and applying recovers.
func TestAccMACConflictHint(t *testing.T) {
	a := testAgent(t)
	f := recoveryLab(t, a)
	m1, m2 := f.machine(t, 22), f.machine(t, 23)
	cfg := func(mac string) string {
		return a.providerConfig() + machineConfig("one", "rec-d8-1", m1, fmt.Sprintf(`  state = "available"
  macs  = [%q]`, m1.MAC)) + machineConfig("two", "rec-d8-2", m2, fmt.Sprintf(`  state = "available"
  macs  = [%q]
  depends_on = [baremetal_machine.one]`, mac))
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		Steps: []resource.TestStep{
			{
				Config:      cfg(m1.MAC),
				ExpectError: regexp.MustCompile(`(?s)Unable to Create Machine "rec-d8-2".*Another machine registered with the agent lists one of these MACs: fix macs`),
			},
			{
				Config: cfg(m2.MAC),
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
			},
		},
	})
}

// TestAccMACCheck (D9): configured MACs the BMC does not report fail the
// machine with an error naming the MACs it does report; fixing macs and
// applying installs it.
func TestAccMACCheck(t *testing.T) {
	a := testAgent(t)
	f := recoveryLab(t, a)
	lm := f.machine(t, 24)
	cfg := func(mac string) string {
		return a.providerConfig() + profileConfig(a, "p", "rec-d9-p", "quiet") + machineConfig("m", "rec-d9", lm, fmt.Sprintf(`
  boot_profile = baremetal_boot_profile.p.name
  macs         = [%q]
  timeouts {
    delete = "30s"
  }
`, mac))
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		CheckDestroy:             checkMachinesGoneAndOff(a, map[string]lab.InventoryEntry{"rec-d9": lm}),
		Steps: []resource.TestStep{
			{
				Config:      cfg("52:54:00:aa:bb:cc"),
				ExpectError: regexp.MustCompile(`(?s)configured MACs 52:54:00:aa:bb:cc are not among the NICs the BMC reports \(` + regexp.QuoteMeta(lm.MAC) + `\)`),
			},
			{
				Config: cfg(lm.MAC),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("baremetal_machine.m", tfjsonpath.New("phase"), knownvalue.StringExact("provisioned")),
				},
			},
		},
	})
}

// TestAccHardwareDrift (D10): memory changed at the BMC is seen by the
// agent's periodic inventory read, shows in the next plan as a new
// hardware_fingerprint, and applying accepts it.
func TestAccHardwareDrift(t *testing.T) {
	a := testAgent(t)
	f := recoveryLab(t, a)
	lm := f.machine(t, 25)
	t.Cleanup(func() { f.lab.System(lm.Name).SetMemoryGiB(0) })
	cfg := a.providerConfig() + machineConfig("m", "rec-d10", lm, `  state = "available"`)
	const res = "baremetal_machine.m"
	var first string
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		Steps: []resource.TestStep{
			{
				Config: cfg,
				Check: func(s *terraform.State) error {
					first = s.RootModule().Resources[res].Primary.Attributes["hardware_fingerprint"]
					if first == "" || first != s.RootModule().Resources[res].Primary.Attributes["inventory.fingerprint"] {
						return fmt.Errorf("hardware_fingerprint %q, want the inventory's", first)
					}
					return nil
				},
			},
			{
				PreConfig: func() {
					f.lab.System(lm.Name).SetMemoryGiB(0.5)
					awaitMachine(t, a, "rec-d10", "the new memory in the inventory", func(m *api.Machine) bool {
						return m.Inventory != nil && m.Inventory.MemoryGiB == 0.5
					})
				},
				Config:             cfg,
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{
				Config: cfg,
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PreApply:             []plancheck.PlanCheck{plancheck.ExpectResourceAction(res, plancheck.ResourceActionUpdate)},
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("inventory").AtMapKey("memory_gib"), knownvalue.Float64Exact(0.5)),
				},
				Check: func(s *terraform.State) error {
					attrs := s.RootModule().Resources[res].Primary.Attributes
					if fp := attrs["hardware_fingerprint"]; fp == first || fp != attrs["inventory.fingerprint"] {
						return fmt.Errorf("hardware_fingerprint %q after accepting the new hardware (was %q, inventory %q)", fp, first, attrs["inventory.fingerprint"])
					}
					return nil
				},
			},
		},
	})
}

// TestAccFailureEventsInTimeOrder (D11): the events in a failure's
// diagnostic are in the order things happened: the power-on, which the
// BMC confirms after the fast simulated machine already called back, comes
// before the callback.
func TestAccFailureEventsInTimeOrder(t *testing.T) {
	a := testAgent(t)
	f := recoveryLab(t, a)
	lm := f.machine(t, 26)
	// The installer fails on a template its profile lacks (a template that
	// does not render fails at apply, before any install).
	cfg := func(fetch string) string {
		return a.providerConfig() + fmt.Sprintf(`
resource "baremetal_boot_profile" "p" {
  name    = "rec-d11-p"
  kernel  = "%[1]s/vmlinuz"
  cmdline = "console=ttyS0 baremetal.templates=%[2]s"
  templates = {
    user-data = "ok"
  }
}
`, a.assets.URL, fetch) + machineConfig("m", "rec-d11", lm, `
  boot_profile = baremetal_boot_profile.p.name
  timeouts {
    delete = "30s"
  }
`)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		Steps: []resource.TestStep{
			{
				Config:      cfg("user-data,not-in-profile"),
				ExpectError: regexp.MustCompile(`(?s)Last events:.*power_action phase=provisioning step=powering_on[^\n]*\n.*callback_received`),
			},
			{Config: cfg("user-data")},
		},
	})
}

// TestAccAdopt: adopt registers a running machine as provisioned with no
// power action and no boot override at its BMC; a later params change
// re-provisions it as usual, with one power cycle.
func TestAccAdopt(t *testing.T) {
	a := testAgent(t)
	f := recoveryLab(t, a)
	lm := f.machine(t, 27)
	cfg := func(hostname string) string {
		return a.providerConfig() + profileConfig(a, "p", "rec-adopt-p", "quiet") + machineConfig("m", "rec-adopt", lm, fmt.Sprintf(`
  boot_profile = baremetal_boot_profile.p.name
  adopt        = true
  params = {
    hostname = %q
  }
`, hostname))
	}
	const res = "baremetal_machine.m"
	var since time.Time
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		Steps: []resource.TestStep{
			{
				PreConfig: func() {
					// The machine already runs its OS: powered on at its BMC, not by the agent.
					redfishReset(t, lm, "On")
					since = time.Now()
				},
				Config: cfg("a"),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(res, tfjsonpath.New("phase"), knownvalue.StringExact("provisioned")),
					statecheck.ExpectKnownValue(res, tfjsonpath.New("power_state"), knownvalue.StringExact("On")),
				},
				ConfigPlanChecks: resource.ConfigPlanChecks{
					PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
				},
				Check: func(*terraform.State) error {
					if resets, patches := f.powerActions(lm.Name, since); resets != 0 || patches != 0 {
						return fmt.Errorf("adoption sent %d power actions and %d boot overrides to the BMC, want none", resets, patches)
					}
					if m := agentMachine(t, a, "rec-adopt"); m.ProvisionedProfile != "rec-adopt-p" {
						return fmt.Errorf("adopted as installed with %q, want rec-adopt-p", m.ProvisionedProfile)
					}
					return nil
				},
			},
			{
				PreConfig: func() { since = time.Now() },
				Config:    cfg("b"),
				Check: func(*terraform.State) error {
					if resets, _ := f.powerActions(lm.Name, since); resets != 1 {
						return fmt.Errorf("the re-provision sent %d power actions, want 1", resets)
					}
					return nil
				},
			},
		},
	})
}

// redfishReset sends a ComputerSystem.Reset to a lab system directly, as
// someone at the BMC would.
func redfishReset(t *testing.T, m lab.InventoryEntry, resetType string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, m.Endpoint+"/Actions/ComputerSystem.Reset", strings.NewReader(`{"ResetType":"`+resetType+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(m.Username, m.Password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("reset %s: HTTP %d", resetType, resp.StatusCode)
	}
	testenv.Eventually(t, "the lab's power state "+resetType, 10*time.Second, func() error {
		if p, err := redfishPower(m); err != nil || p != resetType {
			return fmt.Errorf("power %q (err %v)", p, err)
		}
		return nil
	})
}

// TestAccTriggers: each change of reboot_trigger power-cycles the machine
// exactly once; a change of reprovision_trigger re-installs it with
// exactly one power cycle; setting them at creation does nothing.
func TestAccTriggers(t *testing.T) {
	a := testAgent(t)
	f := recoveryLab(t, a)
	lm := f.machine(t, 28)
	cfg := func(reboot, reprovision string) string {
		return a.providerConfig() + profileConfig(a, "p", "rec-trig-p", "quiet") + machineConfig("m", "rec-trig", lm, fmt.Sprintf(`
  boot_profile        = baremetal_boot_profile.p.name
  reboot_trigger      = %q
  reprovision_trigger = %q
`, reboot, reprovision))
	}
	var since time.Time
	var runs int
	mark := func() { since = time.Now(); runs = f.lab.System(lm.Name).PXEBoots() }
	cycles := func(wantResets, wantInstalls int) resource.TestCheckFunc {
		return func(*terraform.State) error {
			resets, _ := f.powerActions(lm.Name, since)
			installs := f.lab.System(lm.Name).PXEBoots() - runs
			if resets != wantResets || installs != wantInstalls {
				return fmt.Errorf("the BMC saw %d power cycles and %d network installs, want %d and %d", resets, installs, wantResets, wantInstalls)
			}
			return nil
		}
	}
	step := func(reboot, reprovision string, resets, installs int) resource.TestStep {
		return resource.TestStep{
			PreConfig: mark,
			Config:    cfg(reboot, reprovision),
			ConfigPlanChecks: resource.ConfigPlanChecks{
				PostApplyPostRefresh: []plancheck.PlanCheck{plancheck.ExpectEmptyPlan()},
			},
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue("baremetal_machine.m", tfjsonpath.New("phase"), knownvalue.StringExact("provisioned")),
			},
			Check: cycles(resets, installs),
		}
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6Factories,
		Steps: []resource.TestStep{
			step("r1", "p1", 1, 1), // the first install's power-on only
			step("r2", "p1", 1, 0),
			step("r3", "p1", 1, 0),
			step("r3", "p2", 1, 1),
		},
	})
}
