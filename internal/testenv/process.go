package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
)

// Process is a started process (an agent, a lab) with its output in Log.
type Process struct {
	Cmd  *exec.Cmd
	Log  *Log
	done chan struct{}
	err  error
}

// Start runs argv with its output appended to log. It dies with the test
// process (Pdeathsig), and is stopped at the test's end: SIGTERM, then
// SIGKILL after 20 s; a failed test shows its log's tail.
func Start(t T, log *Log, argv ...string) *Process {
	t.Helper()
	p := &Process{Log: log, done: make(chan struct{})}
	p.Cmd = exec.Command(argv[0], argv[1:]...)
	p.Cmd.Stdout, p.Cmd.Stderr = log, log
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", strings.Join(argv, " "), err)
	}
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if !p.Exited() {
			_ = p.Cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				p.Kill()
			}
		}
		if t.Failed() {
			t.Logf("--- %s (tail) ---\n%s", filepath.Base(argv[0])+" "+argv[1], log.Tail(6000))
		}
	})
	return p
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Kill ends the process with SIGKILL (no drain, no store close) and waits.
func (p *Process) Kill() {
	if !p.Exited() {
		_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// Stop ends the process with SIGTERM and waits for it, failing the test
// when it takes over 30 s; it returns how the process exited.
func (p *Process) Stop(t T) error {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(30 * time.Second):
		t.Fatalf("did not stop within 30s of SIGTERM: %s", p.Log.Tail(8000))
		return nil
	}
}

// AgentSpec says how to start an agent process; the rest of its flags are
// in Args. Start it again with the same spec to restart it on the same
// data dir and addresses.
type AgentSpec struct {
	DataDir   string
	TokenFile string
	Token     string // the token the returned client uses
	APIAddr   string // released by the caller (TCP.Release)
	Args      []string
}

// AgentProc is a started agent process, ready.
type AgentProc struct {
	*Process
	Endpoint string
	CAPEM    string
	Client   *client.Client
}

// StartAgent starts `baremetal-agent serve` and waits until it answers
// /readyz (its store open and every listener bound) over TLS with the
// certificate it generated.
func StartAgent(t T, log *Log, s AgentSpec) *AgentProc {
	t.Helper()
	argv := append([]string{AgentBinary(t), "serve", "--data-dir", s.DataDir, "--token-file", s.TokenFile, "--api-addr", s.APIAddr}, s.Args...)
	fmt.Fprintf(log, "=== agent start %s\n", time.Now().Format(time.RFC3339Nano))
	p := Start(t, log, argv...)
	a := &AgentProc{Process: p, Endpoint: "https://" + s.APIAddr}
	a.awaitReady(t, s)
	return a
}

func (a *AgentProc) awaitReady(t T, s AgentSpec) {
	t.Helper()
	var err error
	a.CAPEM, err = AwaitReady(60*time.Second, a.Endpoint, s.DataDir, func() error {
		if a.Exited() {
			return fmt.Errorf("the agent exited at start: %s", a.Log.Tail(8000))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("waiting for the agent: %v", err)
	}
	if a.Client, err = client.New(client.Config{Endpoint: a.Endpoint, Token: s.Token, CACertPEM: a.CAPEM, MaxRetries: -1}); err != nil {
		t.Fatal(err)
	}
}

// AwaitReady waits until the agent at endpoint with data dir dataDir has
// written its certificate and answers /readyz over TLS with it (its store
// open and every listener bound), and returns the certificate. alive
// returns an error once waiting is pointless (the process died).
func AwaitReady(timeout time.Duration, endpoint, dataDir string, alive func() error) (string, error) {
	var caPEM string
	var hc *http.Client
	err := Poll(timeout, func() error {
		if err := alive(); err != nil {
			return ErrStop{err}
		}
		if hc == nil {
			pem, err := readCA(dataDir)
			if err != nil {
				return err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM([]byte(pem)) {
				return ErrStop{fmt.Errorf("the agent's certificate %s does not parse", caFile(dataDir))}
			}
			caPEM = pem
			hc = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		}
		res, err := hc.Get(endpoint + api.PathReadyz)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: HTTP %d", res.StatusCode)
		}
		return nil
	})
	return caPEM, err
}

// AwaitInventory waits until the lab's inventory file lists machines.
func AwaitInventory(timeout time.Duration, path string, alive func() error) ([]lab.InventoryEntry, error) {
	var machines []lab.InventoryEntry
	err := Poll(timeout, func() error {
		if err := alive(); err != nil {
			return ErrStop{err}
		}
		f, err := lab.ReadInventory(path)
		if err != nil {
			return err
		}
		if len(f.Machines) == 0 {
			return fmt.Errorf("no machines in %s yet", path)
		}
		machines = f.Machines
		return nil
	})
	return machines, err
}

// StartLab starts `baremetal-agent lab` with args (backend, machines,
// boot URL...), writing its inventory to a file in dir, and waits until
// the inventory lists machines.
func StartLab(t T, log *Log, dir string, args ...string) (*Process, []lab.InventoryEntry) {
	t.Helper()
	inv := LabInventoryFile(dir)
	p := Start(t, log, append([]string{AgentBinary(t), "lab", "--inventory", inv}, args...)...)
	machines, err := AwaitInventory(60*time.Second, inv, func() error {
		if p.Exited() {
			return fmt.Errorf("the lab exited: %s", log.Tail(8000))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("waiting for the lab: %v", err)
	}
	return p, machines
}

// LabInventoryFile is where StartLab had the lab write its inventory.
func LabInventoryFile(dir string) string { return filepath.Join(dir, "lab-inventory.json") }
