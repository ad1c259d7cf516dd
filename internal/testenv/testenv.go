// Package testenv is the one test environment of the module: the agent
// binary (built once, or BAREMETAL_AGENT_BIN), free loopback addresses held
// until use, one Eventually, log capture, the agent's CA file, and agents
// and labs started as processes or in process. Every harness (the agent's,
// the provider's acceptance tests, e2e, reliability, provision, the
// benches) starts what it needs through it, so a change to how the agent
// starts or reports ready is made here once.
package testenv

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/agentd"
)

// T is what testenv needs of a test. A *testing.T is one; so is what
// Shared.For returns, for what a package's tests share.
type T interface {
	Helper()
	Fatal(args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
	Name() string
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

// closer is a Shared of any environment type.
type closer interface{ close(failed bool) }

// Main runs a package's tests, then stops what they shared (a failed run
// shows the logs' tails) and removes the agent binary built for them.
func Main(m *testing.M, shared ...closer) {
	code := m.Run()
	for _, s := range shared {
		s.close(code != 0)
	}
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// AgentBinary is BAREMETAL_AGENT_BIN (make test builds bin/baremetal-agent
// first) or the agent built once from this tree for the test binary; it
// skips under -short, as starting agent processes is not short.
func AgentBinary(t T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real agent binary")
	}
	bin, err := buildAgent()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// buildAgent builds the agent once per test binary, unless
// BAREMETAL_AGENT_BIN names one.
func buildAgent() (string, error) {
	binOnce.Do(func() {
		if p := os.Getenv("BAREMETAL_AGENT_BIN"); p != "" {
			binPath, binErr = filepath.Abs(p)
			return
		}
		if binDir, binErr = os.MkdirTemp("", "testenv-agent-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "baremetal-agent")
		cmd := exec.Command("go", "build", "-o", binPath, "./agent")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./agent: %v\n%s", err, out)
		}
	})
	return binPath, binErr
}

// repoRoot is the module's root directory.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Addr is a free loopback address, held (bound) until it is used, so no
// other test or process can take it meanwhile.
type Addr struct {
	Addr string
	held io.Closer // a net.Listener or a net.PacketConn; nil once used
}

// FreeTCP holds a free loopback TCP address; it is released at the test's
// end if never used.
func FreeTCP(t T) *Addr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return hold(t, ln.Addr().String(), ln)
}

// FreeUDP holds a free loopback UDP address (TFTP).
func FreeUDP(t T) *Addr {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return hold(t, pc.LocalAddr().String(), pc)
}

func hold(t T, addr string, c io.Closer) *Addr {
	a := &Addr{Addr: addr, held: c}
	t.Cleanup(func() { a.Release() })
	return a
}

// Listener hands a held TCP address over to an in-process server, which
// then owns it.
func (a *Addr) Listener() net.Listener {
	ln, ok := a.take().(net.Listener)
	if !ok {
		panic("testenv: " + a.Addr + " is not a held TCP address")
	}
	return ln
}

// PacketConn hands a held UDP address over to an in-process server.
func (a *Addr) PacketConn() net.PacketConn {
	pc, ok := a.take().(net.PacketConn)
	if !ok {
		panic("testenv: " + a.Addr + " is not a held UDP address")
	}
	return pc
}

func (a *Addr) take() io.Closer {
	c := a.held
	a.held = nil
	return c
}

// Release frees the address for a process to bind, as late as possible:
// right before the process starts.
func (a *Addr) Release() string {
	if c := a.take(); c != nil {
		_ = c.Close()
	}
	return a.Addr
}

// Eventually calls cond until it returns nil and fails the test when
// timeout passes first, with what it waited for and cond's last error.
func Eventually(t T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := Poll(timeout, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// ErrStop ends Poll at once with the error it wraps: the awaited
// condition can no longer come true (the process died).
type ErrStop struct{ Err error }

func (e ErrStop) Error() string { return e.Err.Error() }

// Poll is Eventually for callers without a test: cond's last error, or
// nil once it held.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var stop ErrStop
		if errors.As(err, &stop) {
			return stop.Err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %w", timeout, err)
		}
		time.Sleep(wait)
		wait = min(wait*2, 250*time.Millisecond)
	}
}

// Log collects a process's or an in-process agent's output; tests read it
// while it is written.
type Log struct {
	mu   sync.Mutex
	b    bytes.Buffer
	file *os.File
}

// LogFile is a Log kept in a file too, for a run whose directory is kept
// to be read afterwards.
func LogFile(t T, path string) *Log {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return &Log{file: f}
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		_, _ = l.file.Write(p)
	}
	return l.b.Write(p)
}

func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Tail is the log's last n bytes, for failure messages.
func (l *Log) Tail(n int) string { return Tail(l.String(), n) }

// Tail is s's last n bytes.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// caFile is where an agent with data dir dataDir writes the certificate
// its clients trust.
func caFile(dataDir string) string { return filepath.Join(dataDir, agentd.CertFile) }

// readCA reads that certificate; it is there once the agent has started.
func readCA(dataDir string) (string, error) {
	pem, err := os.ReadFile(caFile(dataDir))
	return string(pem), err
}

// HTTPSClient trusts exactly the agent's certificate caPEM.
func HTTPSClient(t T, caPEM string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatal("the agent's certificate does not parse")
	}
	return &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// RandomHex is n random bytes in hex: tokens, passwords.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TokenFile writes an API token file (mode 600, as the agent requires)
// with lines, and returns its path.
func TokenFile(t T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Assets writes a directory of the files a simulated machine boots
// (vmlinuz, initrd.img), each big enough for the simulated iPXE's ranged
// GET of its first KiB.
func Assets(t T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "assets")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if err := os.WriteFile(filepath.Join(dir, f), bytes.Repeat([]byte{0x7f}, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
