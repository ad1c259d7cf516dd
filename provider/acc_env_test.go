package provider

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
)

// labMachines is how many simulated machines the shared lab serves; each
// acceptance test uses its own, so tests never see each other's machines.
const labMachines = 16

// accAgent is one real baremetal-agent process (serve) and one real lab
// process (memory backend with simulated PXE clients), shared by the
// acceptance tests of this package and stopped by TestMain.
type accAgent struct {
	dir       string
	endpoint  string
	token     string
	caPEM     string
	bootURL   string
	inventory map[string]lab.InventoryEntry
	assets    *httptest.Server // kernel and initrd the simulated machines fetch
	client    *client.Client
	procs     []*proc
}

// proc is a started process; done closes when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

var (
	accOnce sync.Once
	acc     *accAgent
	accErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if acc != nil {
		acc.stop()
	}
	os.Exit(code)
}

// testAgent starts the shared agent and lab on first use. It skips the test
// unless TF_ACC is set, like every terraform-plugin-testing acceptance test.
func testAgent(t *testing.T) *accAgent {
	t.Helper()
	if os.Getenv("TF_ACC") == "" {
		t.Skip("acceptance test: set TF_ACC=1 to run it against a real agent and the terraform CLI")
	}
	accOnce.Do(func() { acc, accErr = startAgent() })
	if accErr != nil {
		t.Fatalf("starting the agent and lab: %v", accErr)
	}
	return acc
}

func startAgent() (*accAgent, error) {
	dir, err := os.MkdirTemp("", "baremetal-acc-")
	if err != nil {
		return nil, err
	}
	a := &accAgent{dir: dir}
	ok := false
	defer func() {
		if !ok {
			a.stop()
		}
	}()

	// BAREMETAL_AGENT_BIN runs a prebuilt agent (make test builds
	// bin/baremetal-agent first); otherwise the agent is built from this tree.
	bin := os.Getenv("BAREMETAL_AGENT_BIN")
	if bin == "" {
		bin = filepath.Join(dir, "baremetal-agent")
		build := exec.Command("go", "build", "-o", bin, "./agent")
		build.Dir = ".."
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./agent: %v\n%s", err, out)
		}
	}

	a.token = randomHex(16)
	tokenFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokenFile, []byte("# acceptance tests\n"+a.token+"\n"), 0o600); err != nil {
		return nil, err
	}
	// The simulated machines fetch the deploy ramdisk's first KiB only.
	deployDir := filepath.Join(dir, "deploy-image")
	if err := os.MkdirAll(deployDir, 0o755); err != nil {
		return nil, err
	}
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if err := os.WriteFile(filepath.Join(deployDir, f), bytes.Repeat([]byte{0x7f}, 4096), 0o644); err != nil {
			return nil, err
		}
	}
	tcp := freeTCP(3)
	apiAddr, bootAddr, labAddr := tcp[0], tcp[1], tcp[2]
	tftpAddr := freeUDP()
	a.bootURL = "http://" + bootAddr
	a.endpoint = "https://" + apiAddr
	dataDir := filepath.Join(dir, "data")
	invFile := filepath.Join(dir, "lab-inventory.json")

	a.assets = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/vmlinuz", "/initrd.img":
			// Enough bytes for the simulated iPXE's ranged GET.
			http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(bytes.Repeat([]byte{0x7f}, 4096)))
		case "/image.raw":
			http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(accImage))
		default:
			http.NotFound(w, r)
		}
	}))

	if err := a.spawn(bin, "lab.log", "lab", "--machines", fmt.Sprint(labMachines), "--backend", "memory",
		"--listen", labAddr, "--inventory", invFile, "--boot-url", a.bootURL); err != nil {
		return nil, err
	}
	if err := a.spawn(bin, "agent.log", "serve", "--data-dir", dataDir, "--api-addr", apiAddr,
		"--boot-addr", bootAddr, "--boot-url", a.bootURL, "--tftp-addr", tftpAddr, "--token-file", tokenFile,
		"--deploy-image-dir", deployDir); err != nil {
		return nil, err
	}

	insecure := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // only probing for readiness
	}}
	err = poll(60*time.Second, func() error {
		if err := a.exited(); err != nil {
			return backoffStop{err}
		}
		if _, err := os.Stat(invFile); err != nil {
			return fmt.Errorf("lab inventory not written yet: %w", err)
		}
		resp, err := insecure.Get(a.endpoint + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz: HTTP %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%v\n%s", err, a.logs())
	}

	inv, err := lab.ReadInventory(invFile)
	if err != nil {
		return nil, err
	}
	a.inventory = map[string]lab.InventoryEntry{}
	for _, m := range inv.Machines {
		a.inventory[m.Name] = m
	}
	if pem, err := os.ReadFile(filepath.Join(dataDir, "api-cert.pem")); err == nil {
		a.caPEM = string(pem)
	}
	a.client, err = client.New(client.Config{Endpoint: a.endpoint, Token: a.token, CACertPEM: a.caPEM, Insecure: a.caPEM == ""})
	if err != nil {
		return nil, err
	}
	ok = true
	return a, nil
}

func (a *accAgent) spawn(bin, logName string, args ...string) error {
	logf, err := os.Create(filepath.Join(a.dir, logName))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s %s: %w", bin, args[0], err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	a.procs = append(a.procs, p)
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(p.done) }()
	return nil
}

// exited reports a process that died during startup.
func (a *accAgent) exited() error {
	for _, p := range a.procs {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %s", strings.Join(p.cmd.Args[:2], " "), p.cmd.ProcessState)
		default:
		}
	}
	return nil
}

func (a *accAgent) logs() string {
	var b strings.Builder
	for _, name := range []string{"agent.log", "lab.log"} {
		data, _ := os.ReadFile(filepath.Join(a.dir, name))
		if len(data) > 6000 {
			data = data[len(data)-6000:]
		}
		fmt.Fprintf(&b, "--- %s (tail) ---\n%s\n", name, data)
	}
	return b.String()
}

func (a *accAgent) stop() {
	for _, p := range a.procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	grace := time.NewTimer(10 * time.Second)
	defer grace.Stop()
	expired := false
	for _, p := range a.procs {
		if !expired {
			select {
			case <-p.done:
				continue
			case <-grace.C:
				expired = true
			}
		}
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	if a.assets != nil {
		a.assets.Close()
	}
	if os.Getenv("BAREMETAL_ACC_KEEP") == "" {
		_ = os.RemoveAll(a.dir)
	}
}

// providerConfig points the provider at the test agent, verifying its
// generated certificate when the agent wrote one where expected.
func (a *accAgent) providerConfig() string {
	if a.caPEM != "" {
		return fmt.Sprintf(`
provider "baremetal" {
  endpoint    = %q
  token       = %q
  ca_cert_pem = <<-PEM
%s
PEM
}
`, a.endpoint, a.token, strings.TrimSpace(a.caPEM))
	}
	return fmt.Sprintf(`
provider "baremetal" {
  endpoint = %q
  token    = %q
  insecure = true
}
`, a.endpoint, a.token)
}

// machine returns lab machine n's inventory entry (lab-1, lab-2, ...).
func (a *accAgent) machine(t *testing.T, n int) lab.InventoryEntry {
	t.Helper()
	for _, m := range a.inventory {
		if strings.HasSuffix(m.Name, fmt.Sprintf("-%d", n)) {
			return m
		}
	}
	t.Fatalf("lab has no machine %d (inventory %v)", n, a.inventory)
	return lab.InventoryEntry{}
}

// redfishPower reads a lab system's PowerState over Redfish with the
// machine's own credentials, independently of the agent.
func redfishPower(m lab.InventoryEntry) (string, error) {
	req, err := http.NewRequest(http.MethodGet, m.Endpoint, nil)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth(m.Username, m.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: HTTP %d", m.Endpoint, resp.StatusCode)
	}
	var sys struct{ PowerState string }
	if err := json.Unmarshal(body, &sys); err != nil {
		return "", fmt.Errorf("GET %s: %w", m.Endpoint, err)
	}
	return sys.PowerState, nil
}

// backoffStop ends poll early with its error.
type backoffStop struct{ err error }

func (b backoffStop) Error() string { return b.err.Error() }

// poll retries f until it succeeds, returns backoffStop, or timeout passes.
func poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	wait := 20 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		var stop backoffStop
		if errors.As(err, &stop) {
			return stop.err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(wait)
		wait = min(wait*2, 500*time.Millisecond)
	}
}

// freeTCP returns n distinct loopback addresses that were free a moment
// ago; all are held open together so the kernel cannot hand one out twice.
func freeTCP(n int) []string {
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		defer l.Close()
		addrs[i] = l.Addr().String()
	}
	return addrs
}

func freeUDP() string {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ctx bounds a direct client call made by a test.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func regexpMust(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// accImage is the raw image the acceptance tests' image profiles deploy.
var accImage = bytes.Repeat([]byte("an OS image for the acceptance tests\n"), 1000)
