// Package reliability holds the cross-package reliability and security
// tests of issue 8: the real agent process killed mid-provisioning, hostile
// input against every listener, BMC faults seen through the API, secrets
// absent from every output. Each package keeps its own unit tests; these
// exercise the pieces wired together as an operator runs them.
package reliability

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// agentBinary is BAREMETAL_AGENT_BIN (make test builds bin/baremetal-agent
// first) or the agent built once from this tree for the package's tests.
func agentBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real agent binary")
	}
	binOnce.Do(func() {
		if p := os.Getenv("BAREMETAL_AGENT_BIN"); p != "" {
			binPath, binErr = filepath.Abs(p)
			return
		}
		if binDir, binErr = os.MkdirTemp("", "reliability-bin-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "baremetal-agent")
		cmd := exec.Command("go", "build", "-o", binPath, "./agent")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./agent: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func freeTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func freeUDP(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// syncBuffer collects a process's output; the test reads it while the
// process writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is one started process of the agent binary.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func spawn(t *testing.T, bin string, out *syncBuffer, args ...string) *proc {
	t.Helper()
	p := &proc{out: out, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// site is a real lab process (memory backend: simulated BMCs and PXE
// clients) and a real agent process on one data dir, restartable.
type site struct {
	t         *testing.T
	bin       string
	dir       string
	dataDir   string
	tokenFile string
	token     string
	apiAddr   string
	bootAddr  string
	tftpAddr  string
	bootURL   string
	agentArgs []string
	inventory []lab.InventoryEntry

	lab   *proc
	agent *proc
	// agentLog is every agent run's output, kills included.
	agentLog *syncBuffer
	labLog   *syncBuffer
	client   *client.Client
}

type siteOpts struct {
	machines int
	// extra serve flags (timeouts, limits).
	agentArgs []string
	// noLabBoot leaves the lab's machines without a boot URL: powered on,
	// they never ask for PXE, so a test can play the machine itself.
	noLabBoot bool
	// extra lab flags (e.g. --latency for slow BMCs).
	labArgs []string
}

func newSite(t *testing.T, o siteOpts) *site {
	t.Helper()
	s := &site{t: t, bin: agentBinary(t), dir: t.TempDir(), agentLog: &syncBuffer{}, labLog: &syncBuffer{}}
	s.dataDir = filepath.Join(s.dir, "data")
	s.tokenFile = filepath.Join(s.dir, "tokens")
	s.token = randomHex(16)
	if err := os.WriteFile(s.tokenFile, []byte("# reliability tests\n"+s.token+"\nreadonly:ro-"+s.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	assets := filepath.Join(s.dir, "assets")
	if err := os.MkdirAll(assets, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		// Enough bytes for the simulated ROM's ranged GET of the first KiB.
		if err := os.WriteFile(filepath.Join(assets, f), bytes.Repeat([]byte{0x7f}, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.apiAddr, s.bootAddr, s.tftpAddr = freeTCP(t), freeTCP(t), freeUDP(t)
	s.bootURL = "http://" + s.bootAddr
	s.agentArgs = append([]string{"serve", "--data-dir", s.dataDir, "--token-file", s.tokenFile,
		"--api-addr", s.apiAddr, "--boot-addr", s.bootAddr, "--boot-url", s.bootURL, "--tftp-addr", s.tftpAddr,
		"--assets-dir", assets, "--tftp-root", assets}, o.agentArgs...)

	if o.machines > 0 {
		inv := filepath.Join(s.dir, "lab-inventory.json")
		args := []string{"lab", "--backend", "memory", "--machines", fmt.Sprint(o.machines), "--listen", freeTCP(t), "--inventory", inv}
		if !o.noLabBoot {
			args = append(args, "--boot-url", s.bootURL)
		}
		args = append(args, o.labArgs...)
		s.lab = spawn(t, s.bin, s.labLog, args...)
		awaitT(t, "the lab's inventory", 30*time.Second, func() (bool, string) {
			if s.lab.exited() {
				t.Fatalf("lab exited: %s", s.labLog)
			}
			f, err := lab.ReadInventory(inv)
			if err != nil {
				return false, err.Error()
			}
			s.inventory = f.Machines
			return len(f.Machines) == o.machines, fmt.Sprint(len(f.Machines))
		})
	}
	s.start()
	return s
}

// start runs the agent on the site's data dir and waits until it answers
// /readyz: the store opened, every listener is bound.
func (s *site) start() {
	t := s.t
	t.Helper()
	fmt.Fprintf(s.agentLog, "=== agent start %s\n", time.Now().Format(time.RFC3339Nano))
	s.agent = spawn(t, s.bin, s.agentLog, s.agentArgs...)
	var caPEM []byte
	awaitT(t, "the agent's certificate", 60*time.Second, func() (bool, string) {
		if s.agent.exited() {
			t.Fatalf("agent exited at start: %s", tail(s.agentLog.String()))
		}
		var err error
		caPEM, err = os.ReadFile(filepath.Join(s.dataDir, "api-cert.pem"))
		return err == nil, fmt.Sprint(err)
	})
	c, err := client.New(client.Config{Endpoint: "https://" + s.apiAddr, Token: s.token, CACertPEM: string(caPEM), MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.client = c
	awaitT(t, "the agent's /readyz", 60*time.Second, func() (bool, string) {
		if s.agent.exited() {
			t.Fatalf("agent exited at start: %s", tail(s.agentLog.String()))
		}
		_, err := c.Info(context.Background())
		return err == nil, fmt.Sprint(err)
	})
}

// httpsClient trusts exactly the certificate the agent generated.
func (s *site) httpsClient() *http.Client {
	s.t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(s.dataDir, "api-cert.pem"))
	if err != nil {
		s.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		s.t.Fatal("the agent's certificate does not parse")
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// kill ends the agent with SIGKILL: no drain, no store close.
func (s *site) kill() {
	fmt.Fprintf(s.agentLog, "=== agent SIGKILL %s\n", time.Now().Format(time.RFC3339Nano))
	s.agent.kill()
}

// stop ends the agent with SIGTERM and waits for a clean exit.
func (s *site) stop() {
	t := s.t
	t.Helper()
	if err := s.agent.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.agent.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("agent did not stop within 30s of SIGTERM: %s", tail(s.agentLog.String()))
	}
}

// profile registers a boot profile that boots the assets the site serves.
func (s *site) profile(name string) {
	s.t.Helper()
	_, err := s.client.CreateBootProfile(context.Background(), api.BootProfileRequest{
		Name:      name,
		Kernel:    "vmlinuz",
		Initrds:   []string{"initrd.img"},
		Cmdline:   "console=ttyS0 baremetal.templates=user-data",
		Templates: map[string]string{"user-data": "#cloud-config\nhostname: {{ .Machine.Name }}\n"},
	})
	if err != nil {
		s.t.Fatalf("creating profile %s: %v", name, err)
	}
}

func (s *site) machineRequest(i int, profile, state string) api.MachineRequest {
	lm := s.inventory[i]
	return api.MachineRequest{
		Name:        lm.Name,
		BMC:         api.BMCRequest{Endpoint: lm.Endpoint, Username: lm.Username, Password: lm.Password},
		MACs:        []string{lm.MAC},
		BootProfile: profile,
		State:       state,
	}
}

// events returns every event of a machine, oldest first.
func (s *site) events(ctx context.Context, name string) []model.Event {
	s.t.Helper()
	var out []model.Event
	var after uint64
	for {
		page, err := s.client.MachineEvents(ctx, name, after, 0)
		if err != nil {
			s.t.Fatalf("events of %s: %v", name, err)
		}
		out = append(out, page.Events...)
		if len(page.Events) == 0 || page.Next <= after {
			return out
		}
		after = page.Next
	}
}

// awaitT polls cond until it holds or the timeout passes.
func awaitT(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last: %s)", timeout, what, last)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func tail(s string) string {
	if len(s) > 8000 {
		return "..." + s[len(s)-8000:]
	}
	return s
}

var errNotYet = errors.New("not yet")

func containsAny(s string, subs ...string) string {
	for _, x := range subs {
		if x != "" && strings.Contains(s, x) {
			return x
		}
	}
	return ""
}
