package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
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
func Start(t testing.TB, log *Log, argv ...string) *Process {
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
func (p *Process) Stop(t testing.TB) error {
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
func StartAgent(t testing.TB, log *Log, s AgentSpec) *AgentProc {
	t.Helper()
	argv := append([]string{AgentBinary(t), "serve", "--data-dir", s.DataDir, "--token-file", s.TokenFile, "--api-addr", s.APIAddr}, s.Args...)
	fmt.Fprintf(log, "=== agent start %s\n", time.Now().Format(time.RFC3339Nano))
	p := Start(t, log, argv...)
	a := &AgentProc{Process: p, Endpoint: "https://" + s.APIAddr}
	a.awaitReady(t, s)
	return a
}

func (a *AgentProc) awaitReady(t testing.TB, s AgentSpec) {
	t.Helper()
	alive := func() error {
		if a.Exited() {
			return ErrStop{fmt.Errorf("the agent exited at start: %s", a.Log.Tail(8000))}
		}
		return nil
	}
	Eventually(t, "the agent's certificate", 60*time.Second, func() error {
		if err := alive(); err != nil {
			return err
		}
		var err error
		a.CAPEM, err = ReadCA(s.DataDir)
		return err
	})
	hc := HTTPSClient(t, a.CAPEM)
	hc.Timeout = 2 * time.Second
	Eventually(t, "the agent's /readyz", 60*time.Second, func() error {
		if err := alive(); err != nil {
			return err
		}
		res, err := hc.Get(a.Endpoint + api.PathReadyz)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: HTTP %d", res.StatusCode)
		}
		return nil
	})
	c, err := client.New(client.Config{Endpoint: a.Endpoint, Token: s.Token, CACertPEM: a.CAPEM, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	a.Client = c
}

// StartLab starts `baremetal-agent lab` with args (backend, machines,
// boot URL...), writing its inventory to a file in dir, and waits until
// the inventory lists machines.
func StartLab(t testing.TB, log *Log, dir string, args ...string) (*Process, []lab.InventoryEntry) {
	t.Helper()
	inv := filepath.Join(dir, "lab-inventory.json")
	p := Start(t, log, append([]string{AgentBinary(t), "lab", "--inventory", inv}, args...)...)
	var machines []lab.InventoryEntry
	Eventually(t, "the lab's inventory", 60*time.Second, func() error {
		if p.Exited() {
			return ErrStop{fmt.Errorf("the lab exited: %s", log.Tail(8000))}
		}
		f, err := lab.ReadInventory(inv)
		if err != nil {
			return err
		}
		if len(f.Machines) == 0 {
			return fmt.Errorf("no machines in %s yet", inv)
		}
		machines = f.Machines
		return nil
	})
	return p, machines
}

// LabInventoryFile is where StartLab had the lab write its inventory.
func LabInventoryFile(dir string) string { return filepath.Join(dir, "lab-inventory.json") }

// Ctx is a context for one test's direct client calls, ended with it.
func Ctx(t testing.TB, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}
