package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

const (
	rwToken = "rw-token-0123456789abcdef"
	roToken = "ro-token-0123456789abcdef"
	// bmcPassword is the secret no response or log line may contain.
	bmcPassword = "S3cr3t-BMC-pa55word-XYZ"
)

// clock is a settable clock for lease tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer collects log output written from handler goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type env struct {
	t     *testing.T
	store *store.Bolt
	srv   *Server
	http  *httptest.Server
	clock *clock
	logs  *syncBuffer
	// bodies holds every response body, for the secret-leak check.
	mu     sync.Mutex
	bodies []string
}

type envOption func(*ServerConfig)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	dir := t.TempDir()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := store.OpenBolt(filepath.Join(dir, "agent.db"), store.BoltOptions{KeyFile: filepath.Join(dir, "seal.key"), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := NewTokenSet([]string{rwToken}, []string{roToken})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: st, clock: &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, logs: logs}
	cfg := ServerConfig{
		Store:        st,
		Tokens:       tokens,
		Version:      "test",
		BootURL:      "http://10.0.2.2:8081",
		Capabilities: []string{"redfish"},
		Logger:       logger,
		Now:          e.clock.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	e.srv, err = NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.http = httptest.NewServer(e.srv.Handler())
	t.Cleanup(func() {
		e.http.Close()
		st.Close()
		if strings.Contains(e.logs.String(), bmcPassword) {
			t.Errorf("the BMC password appears in the server log")
		}
		for _, tok := range []string{rwToken, roToken} {
			if strings.Contains(e.logs.String(), tok) {
				t.Errorf("an API token appears in the server log")
			}
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, b := range e.bodies {
			if strings.Contains(b, bmcPassword) {
				t.Errorf("the BMC password appears in a response body: %s", b)
			}
		}
	})
	return e
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) err() api.ErrorDetail {
	var eb api.ErrorBody
	_ = json.Unmarshal(r.body, &eb)
	return eb.Error
}

func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

// req sends a request with the read-write token; body may be a string
// (sent as is) or a value (sent as JSON).
func (e *env) req(method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	return e.reqCtx(context.Background(), rwToken, method, path, body, hdr...)
}

func (e *env) reqCtx(ctx context.Context, token, method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	r, err := http.NewRequestWithContext(ctx, method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.http.Client().Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	e.mu.Lock()
	e.bodies = append(e.bodies, string(data))
	e.mu.Unlock()
	return resp{status: res.StatusCode, header: res.Header, body: data}
}

func (e *env) must(want int, r resp) resp {
	e.t.Helper()
	if r.status != want {
		e.t.Fatalf("status %d, want %d; body %s", r.status, want, r.body)
	}
	return r
}

func machineReq(name string) api.MachineRequest {
	return api.MachineRequest{
		Name:  name,
		BMC:   api.BMCRequest{Endpoint: "https://10.0.0.5/redfish/v1/Systems/1", Username: "admin", Password: bmcPassword},
		MACs:  []string{},
		State: api.StateAvailable,
	}
}

func (e *env) createProfile(name string) api.BootProfile {
	e.t.Helper()
	var p api.BootProfile
	e.must(201, e.req("POST", api.PathProfiles, api.BootProfileRequest{Name: name, Kernel: "http://mirror/vmlinuz", Initrds: []string{"http://mirror/initrd"}})).decode(e.t, &p)
	return p
}

func (e *env) createMachine(req api.MachineRequest) api.Machine {
	e.t.Helper()
	var m api.Machine
	e.must(201, e.req("POST", api.PathMachines, req)).decode(e.t, &m)
	return m
}
