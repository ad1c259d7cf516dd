package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
)

// labMachines is how many simulated machines the shared lab has; each test
// takes its own, so tests never see each other's changes.
const labMachines = 24

// agentEnv is one real baremetal-agent (serve) and one memory lab of
// Redfish BMCs with simulated PXE clients, shared by this package's tests
// and stopped by TestMain.
type agentEnv struct {
	dir      string
	endpoint string
	token    string
	roToken  string // read-only
	caPEM    string
	inv      map[string]lab.InventoryEntry
	assets   *httptest.Server
	client   *client.Client
	procs    []*exec.Cmd
	done     []chan struct{}

	mu   sync.Mutex
	next int // next unused lab machine
}

var (
	envOnce sync.Once
	shared  *agentEnv
	envErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	os.Exit(code)
}

func testEnv(t *testing.T) *agentEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real agent and lab")
	}
	envOnce.Do(func() { shared, envErr = startEnv() })
	require.NoError(t, envErr, "starting the agent and the lab")
	return shared
}

func startEnv() (*agentEnv, error) {
	dir, err := os.MkdirTemp("", "baremetalctl-test-")
	if err != nil {
		return nil, err
	}
	e := &agentEnv{dir: dir, next: 1}
	ok := false
	defer func() {
		if !ok {
			e.stop()
		}
	}()
	// BAREMETAL_AGENT_BIN runs a prebuilt agent (make test builds one);
	// otherwise it is built from this tree.
	bin := os.Getenv("BAREMETAL_AGENT_BIN")
	if bin == "" {
		bin = filepath.Join(dir, "baremetal-agent")
		build := exec.Command("go", "build", "-o", bin, "./agent")
		build.Dir = "../.."
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./agent: %v\n%s", err, out)
		}
	}
	for _, tok := range []*string{&e.token, &e.roToken} {
		buf := make([]byte, 16)
		if _, err := rand.Read(buf); err != nil {
			return nil, err
		}
		*tok = hex.EncodeToString(buf)
	}
	tokenFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokenFile, []byte(e.token+"\nreadonly:"+e.roToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	addrs, err := freeAddrs(3)
	if err != nil {
		return nil, err
	}
	apiAddr, bootAddr, labAddr := addrs[0], addrs[1], addrs[2]
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tftpAddr := udp.LocalAddr().String()
	udp.Close()
	bootURL := "http://" + bootAddr
	e.endpoint = "https://" + apiAddr
	dataDir := filepath.Join(dir, "data")
	invFile := filepath.Join(dir, "inventory.json")
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
	if err := e.spawn(bin, "lab.log", "lab", "--machines", fmt.Sprint(labMachines), "--backend", "memory",
		"--listen", labAddr, "--inventory", invFile, "--boot-url", bootURL); err != nil {
		return nil, err
	}
	if err := e.spawn(bin, "agent.log", "serve", "--data-dir", dataDir, "--api-addr", apiAddr, "--boot-addr", bootAddr,
		"--boot-url", bootURL, "--tftp-addr", tftpAddr, "--token-file", tokenFile); err != nil {
		return nil, err
	}
	probe := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // only probing for readiness
	}}
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := e.ready(probe, invFile)
		if err == nil {
			break
		}
		if time.Now().After(deadline) || errors.Is(err, errExited) {
			return nil, fmt.Errorf("%v\n%s", err, e.logs())
		}
		time.Sleep(100 * time.Millisecond) // polling a process we do not control
	}
	inv, err := lab.ReadInventory(invFile)
	if err != nil {
		return nil, err
	}
	e.inv = map[string]lab.InventoryEntry{}
	for _, m := range inv.Machines {
		e.inv[m.Name] = m
	}
	pem, err := os.ReadFile(filepath.Join(dataDir, "api-cert.pem"))
	if err != nil {
		return nil, err
	}
	e.caPEM = string(pem)
	if e.client, err = client.New(client.Config{Endpoint: e.endpoint, Token: e.token, CACertPEM: e.caPEM}); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

var errExited = errors.New("exited during startup")

func (e *agentEnv) ready(probe *http.Client, invFile string) error {
	for i, d := range e.done {
		select {
		case <-d:
			return fmt.Errorf("%s %w", strings.Join(e.procs[i].Args[:2], " "), errExited)
		default:
		}
	}
	if _, err := os.Stat(invFile); err != nil {
		return err
	}
	resp, err := probe.Get(e.endpoint + api.PathHealthz)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: HTTP %d", resp.StatusCode)
	}
	return nil
}

func freeAddrs(n int) ([]string, error) {
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

func (e *agentEnv) spawn(bin, logName string, args ...string) error {
	logf, err := os.Create(filepath.Join(e.dir, logName))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	e.procs, e.done = append(e.procs, cmd), append(e.done, done)
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(done) }()
	return nil
}

func (e *agentEnv) logs() string {
	var b strings.Builder
	for _, name := range []string{"agent.log", "lab.log"} {
		data, _ := os.ReadFile(filepath.Join(e.dir, name))
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "--- %s (tail) ---\n%s\n", name, data)
	}
	return b.String()
}

func (e *agentEnv) stop() {
	for _, p := range e.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	for i, d := range e.done {
		select {
		case <-d:
		case <-time.After(10 * time.Second):
			_ = e.procs[i].Process.Kill()
			<-d
		}
	}
	if e.assets != nil {
		e.assets.Close()
	}
	_ = os.RemoveAll(e.dir)
}

// machine registers the next unused lab machine under a name of the test's
// own, in the given desired state with the given profile.
func (e *agentEnv) machine(t *testing.T, name, profile, state string) api.Machine {
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
func (e *agentEnv) waitPhase(t *testing.T, name, phase string) api.Machine {
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
	var stdout, stderr lockedBuffer
	code := Run(ctx, args, env, &stdout, &stderr)
	r := result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	// Whatever happened, the token never reaches the operator's screen.
	require.NotContains(t, r.stdout+r.stderr, e.token)
	require.NotContains(t, r.stdout+r.stderr, e.roToken)
	return r
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
