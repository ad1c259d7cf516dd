package cli

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

// labMachines is how many simulated machines the shared lab has; each test
// takes its own, so tests never see each other's changes.
const labMachines = 24

// agentEnv is one real baremetal-agent (serve) and one memory lab of
// Redfish BMCs with simulated PXE clients, shared by this package's tests
// and stopped by TestMain.
type agentEnv struct {
	endpoint string
	token    string
	roToken  string // read-only
	caPEM    string
	inv      map[string]lab.InventoryEntry
	assets   *httptest.Server
	client   *client.Client
	agentLog *testenv.Log

	mu   sync.Mutex
	next int // next unused lab machine
}

var shared = testenv.NewShared("baremetalctl-test-", false, startEnv)

func TestMain(m *testing.M) { testenv.Main(m, shared) }

func testEnv(t *testing.T) *agentEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real agent and lab")
	}
	return shared.Get(t)
}

// logs is the agent's log's tail, for a failure message.
func (e *agentEnv) logs() string { return e.agentLog.Tail(4000) }

func startEnv(t testenv.T) *agentEnv {
	dir := t.TempDir()
	e := &agentEnv{next: 1, token: testenv.RandomHex(16), roToken: testenv.RandomHex(16), agentLog: &testenv.Log{}}
	tokenFile := testenv.TokenFile(t, e.token, "readonly:"+e.roToken)
	api, boot := testenv.FreeTCP(t), testenv.FreeTCP(t)
	bootURL := "http://" + boot.Addr
	e.assets = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/missing") {
			// A kernel that is not there: the machine's boot stops short
			// and its run stays in progress (tests of unfinished rollouts).
			http.NotFound(w, r)
			return
		}
		// Enough bytes for the simulated iPXE's ranged GET.
		http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(bytes.Repeat([]byte{0x7f}, 4096)))
	}))
	t.Cleanup(e.assets.Close)
	_, machines := testenv.StartLab(t, &testenv.Log{}, dir, "--machines", fmt.Sprint(labMachines), "--backend", "memory",
		"--listen", testenv.FreeTCP(t).Release(), "--boot-url", bootURL)
	e.inv = map[string]lab.InventoryEntry{}
	for _, m := range machines {
		e.inv[m.Name] = m
	}
	p := testenv.StartAgent(t, e.agentLog, testenv.AgentSpec{
		DataDir: filepath.Join(dir, "data"), TokenFile: tokenFile, Token: e.token, APIAddr: api.Release(),
		Args: []string{"--boot-addr", boot.Release(), "--boot-url", bootURL, "--tftp-addr", testenv.FreeUDP(t).Release()},
	})
	e.endpoint, e.caPEM = p.Endpoint, p.CAPEM
	var err error
	if e.client, err = client.New(client.Config{Endpoint: e.endpoint, Token: e.token, CACertPEM: e.caPEM}); err != nil {
		t.Fatal(err)
	}
	return e
}

// machine registers the next unused lab machine under a name of the test's
// own, in the given desired state with the given profile.
func (e *agentEnv) machine(t *testing.T, name, profile string, state api.DesiredState) api.Machine {
	t.Helper()
	e.mu.Lock()
	n := e.next
	e.next++
	e.mu.Unlock()
	require.LessOrEqual(t, n, labMachines, "the lab has too few machines for the tests")
	inv := e.inv[fmt.Sprintf("lab-%d", n)]
	m, err := e.client.CreateMachine(context.Background(), api.MachineRequest{
		Name: name, BMC: api.BMCRequest{Endpoint: inv.Endpoint, Username: inv.Username, Password: inv.Password},
		MACs: []string{inv.MAC}, BootProfile: profile, State: state,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.client.DeleteMachine(context.Background(), name, true) })
	return *m
}

// Boot profile kinds for agentEnv.profile.
const (
	bootOK      = "ok"      // boots and installs
	bootStuck   = "stuck"   // the kernel is missing: the run never ends in a test's time
	bootFailing = "failing" // the installer asks for a template the profile lacks and reports failure
)

// profile creates a boot profile that the simulated machines boot as kind says.
func (e *agentEnv) profile(t *testing.T, name, kind string) api.BootProfile {
	t.Helper()
	kernel, templates := "/vmlinuz", "user-data"
	switch kind {
	case bootStuck:
		kernel = "/missing/vmlinuz"
	case bootFailing:
		templates = "user-data,not-in-profile"
	}
	p, err := e.client.CreateBootProfile(context.Background(), api.BootProfileRequest{
		Name: name, Kernel: e.assets.URL + kernel, Initrds: []string{e.assets.URL + "/initrd.img"},
		Cmdline:   "console=ttyS0 baremetal.templates=" + templates,
		Templates: map[string]string{"user-data": "#cloud-config\nhostname: {{ .Machine.Name }}\n"},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.client.DeleteBootProfile(context.Background(), name) })
	return *p
}

// waitPhase waits until the machine reaches phase.
func (e *agentEnv) waitPhase(t *testing.T, name string, phase api.MachinePhase) api.Machine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	m, err := e.client.WaitMachine(ctx, name, func(m *api.Machine) (bool, error) { return m.Phase == phase, nil })
	require.NoError(t, err, "waiting for %s to be %s\n%s", name, phase, e.logs())
	return *m
}

// result is one CLI run.
type result struct {
	code   int
	stdout string
	stderr string
}

// env is the process environment the CLI sees: the provider's variables.
func (e *agentEnv) env(extra ...string) Env {
	vars := map[string]string{EnvEndpoint: e.endpoint, EnvToken: e.token, EnvCACertPEM: e.caPEM}
	for i := 0; i+1 < len(extra); i += 2 {
		vars[extra[i]] = extra[i+1]
	}
	return func(k string) string { return vars[k] }
}

// run runs the CLI in process against the agent, as `baremetalctl args...`.
func (e *agentEnv) run(t *testing.T, args ...string) result {
	t.Helper()
	return e.runCtx(t, context.Background(), e.env(), args...)
}

func (e *agentEnv) runCtx(t *testing.T, ctx context.Context, env Env, args ...string) result {
	t.Helper()
	var stdout, stderr testenv.Log
	code := Run(ctx, args, env, &stdout, &stderr)
	r := result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	// Whatever happened, the token never reaches the operator's screen.
	require.NotContains(t, r.stdout+r.stderr, e.token)
	require.NotContains(t, r.stdout+r.stderr, e.roToken)
	return r
}
