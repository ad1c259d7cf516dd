package testenv

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/agentd"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

// InProc is an agent assembled by agentd and run inside the test process.
type InProc struct {
	*agentd.Agent
	Client *client.Client
	Log    *Log
	stop   context.CancelFunc
	ran    bool
	done   chan error
}

// InProcSpec is what an in-process agent needs beyond its Config.
type InProcSpec struct {
	// DataDir is kept across restarts ("": a new temporary one).
	DataDir string
	// Boot, when set, is the boot listener: a Reusable one keeps the
	// agent's boot URL across restarts.
	Boot net.Listener
}

// StartInProc runs the agent with cfg (from agentd.Defaults, usually) on
// loopback listeners testenv holds, a token file of its own and its log
// captured (debug level; echoed to stderr when BAREMETAL_TEST_LOG is set),
// and waits until it is ready. The test's end stops it.
func StartInProc(t T, cfg agentd.Config, spec InProcSpec, opts ...agentd.Option) *InProc {
	t.Helper()
	p := NewInProc(t, cfg, spec, opts...)
	p.Start(t)
	return p
}

// NewInProc assembles the agent without running it: its store is open for
// a test to set up what the agent finds at start.
func NewInProc(t T, cfg agentd.Config, spec InProcSpec, opts ...agentd.Option) *InProc {
	t.Helper()
	token := RandomHex(16)
	cfg.TokenFile = TokenFile(t, token)
	if cfg.DataDir = spec.DataDir; cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	api := FreeTCP(t)
	boot := spec.Boot
	if boot == nil {
		boot = FreeTCP(t).Listener()
	}
	logs := &Log{}
	var w io.Writer = logs
	if os.Getenv("BAREMETAL_TEST_LOG") != "" {
		w = io.MultiWriter(logs, os.Stderr)
	}
	base := []agentd.Option{
		agentd.WithLogger(slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		agentd.WithListeners(agentd.Listeners{API: api.Listener(), Boot: boot, TFTP: FreeUDP(t).PacketConn()}),
	}
	a, err := agentd.New(cfg, append(base, opts...)...)
	if err != nil {
		t.Fatalf("assembling the agent: %v", err)
	}
	caPEM, err := readCA(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	p := &InProc{Agent: a, Log: logs, done: make(chan error, 1)}
	if p.Client, err = client.New(client.Config{Endpoint: "https://" + api.Addr, Token: token, CACertPEM: caPEM, LeaseHolder: t.Name()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.stop == nil && !p.ran {
			a.Close()
		}
	})
	return p
}

// Start runs the agent and waits until it answers as ready; the test's
// end stops it.
func (p *InProc) Start(t T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p.stop, p.ran = cancel, true
	go func() { p.done <- p.Run(ctx) }()
	t.Cleanup(func() { p.Stop(t) })
	Eventually(t, "the agent's readiness", 30*time.Second, func() error {
		_, err := p.Client.Info(context.Background())
		return err
	})
}

// Stop ends Run's context and waits for it to drain and close the store;
// an agent that does not stop (a stuck worker) fails the test. Stopping
// twice is a no-op.
func (p *InProc) Stop(t T) {
	t.Helper()
	if p.stop == nil {
		return
	}
	p.stop()
	p.stop = nil
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("the agent stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the agent did not stop within 30s of its context ending (a worker is stuck)")
	}
}

// Reusable is one listening socket shared by the in-process agents a test
// starts one after another: closing an agent's view stops that agent
// accepting, and connections wait in the socket's backlog for the next,
// as they would for a restarted agent at a fixed address.
type Reusable struct {
	ln    net.Listener
	conns chan net.Conn
}

// Reusable turns the held address into a Reusable listener, closed at the
// test's end.
func (a *Addr) Reusable(t T) *Reusable {
	r := &Reusable{ln: a.Listener(), conns: make(chan net.Conn)}
	go func() {
		for {
			c, err := r.ln.Accept()
			if err != nil {
				close(r.conns)
				return
			}
			r.conns <- c
		}
	}()
	t.Cleanup(func() {
		_ = r.ln.Close()
		for c := range r.conns {
			_ = c.Close()
		}
	})
	return r
}

// View is a listener for one agent's lifetime.
func (r *Reusable) View() net.Listener {
	return &view{r: r, closed: make(chan struct{})}
}

type view struct {
	r      *Reusable
	closed chan struct{}
	once   sync.Once
}

func (v *view) Accept() (net.Conn, error) {
	select {
	case c, ok := <-v.r.conns:
		if !ok {
			return nil, net.ErrClosed
		}
		return c, nil
	case <-v.closed:
		return nil, net.ErrClosed
	}
}

func (v *view) Close() error   { v.once.Do(func() { close(v.closed) }); return nil }
func (v *view) Addr() net.Addr { return v.r.ln.Addr() }
