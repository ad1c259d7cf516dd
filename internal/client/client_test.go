package client

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

const testToken = "tok-0123456789-secret"

// seen is one request as the test server received it.
type seen struct {
	Method, Path string
	Query        url.Values
	Header       http.Header
	Body         []byte
}

// recorder is an http.Handler that records requests and answers with respond.
type recorder struct {
	mu      sync.Mutex
	reqs    []seen
	respond func(n int, r *http.Request, body []byte) (status int, header http.Header, out any)
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, seen{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.Query(), Header: r.Header.Clone(), Body: body})
	n := len(rec.reqs)
	rec.mu.Unlock()
	status, hdr, out := rec.respond(n, r, body)
	for k, v := range hdr {
		w.Header()[k] = v
	}
	switch o := out.(type) {
	case nil:
		w.WriteHeader(status)
	case string:
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(status)
		io.WriteString(w, o)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(o)
	}
}

func (rec *recorder) requests() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seen(nil), rec.reqs...)
}

// logBuffer is a concurrency-safe sink for the client's logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// newTestClient returns a client of srv with fast retries; mod adjusts cfg.
func newTestClient(t *testing.T, srvURL string, logs io.Writer, mod func(*Config)) *Client {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	cfg := Config{
		Endpoint:     srvURL,
		Token:        testToken,
		UserAgent:    "client-test/1",
		RetryMaxWait: 20 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c.baseWait = time.Millisecond
	return c
}

func TestMethods(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	machine := api.Machine{ID: "m1", Name: "m1", BMC: api.BMCInfo{Endpoint: "https://bmc:8000", Username: "admin"},
		MACs: []string{"52:54:00:00:00:01"}, State: "provisioned", Version: 3, Revision: 9, Phase: "provisioning",
		Step: "installing", CreatedAt: t0, UpdatedAt: t0}
	machineReq := api.MachineRequest{Name: "m1", BMC: api.BMCRequest{Endpoint: "https://bmc:8000", Username: "admin", Password: "pw"},
		MACs: []string{"52:54:00:00:00:01"}, BootProfile: "debian", State: "provisioned", Version: 3}
	profile := api.BootProfile{ID: "debian", Name: "debian", Kernel: "http://x/vmlinuz", Version: 2, CreatedAt: t0, UpdatedAt: t0}
	profileReq := api.BootProfileRequest{Name: "debian", Kernel: "http://x/vmlinuz", Cmdline: "console=ttyS0"}
	cluster := api.Cluster{ID: "k", Name: "k", Roles: []api.ClusterRole{{Name: "cp", BootProfile: "debian"}},
		Members: []api.ClusterMemberStatus{{Machine: "m1", Role: "cp", Phase: "provisioned"}}, Rollout: api.Rollout{MaxUnavailable: 1},
		Version: 1, Revision: 4, Phase: "ready", Endpoints: map[string][]string{"cp": {"10.0.0.5"}}, CreatedAt: t0, UpdatedAt: t0}
	clusterReq := api.ClusterRequest{Name: "k", Members: []api.ClusterMember{{Machine: "m1", Role: "cp"}},
		Roles: []api.ClusterRole{{Name: "cp", BootProfile: "debian"}}}
	events := api.EventList{Events: []api.Event{{Seq: 6, Time: t0, Machine: "m1", Type: model.EventPhaseChanged, Phase: api.PhaseProvisioning}}, Next: 6}

	tests := []struct {
		name    string
		call    func(ctx context.Context, c *Client) (any, error)
		method  string
		path    string
		query   url.Values
		body    any // request body the server must see; nil = none
		lease   bool
		status  int
		respond any
		want    any
	}{
		{"info", func(ctx context.Context, c *Client) (any, error) { return c.Info(ctx) },
			"GET", "/v1/info", nil, nil, false, 200, api.Info{Version: "1.2.3", APIVersion: "v1", Capabilities: []string{"redfish"}},
			&api.Info{Version: "1.2.3", APIVersion: "v1", Capabilities: []string{"redfish"}}},
		{"create machine", func(ctx context.Context, c *Client) (any, error) { return c.CreateMachine(ctx, machineReq) },
			"POST", "/v1/machines", nil, machineReq, true, 201, machine, &machine},
		{"get machine", func(ctx context.Context, c *Client) (any, error) { return c.GetMachine(ctx, "m1") },
			"GET", "/v1/machines/m1", nil, nil, false, 200, machine, &machine},
		{"get machine escapes name", func(ctx context.Context, c *Client) (any, error) { return c.GetMachine(ctx, "a/b?c") },
			"GET", "/v1/machines/a%2Fb%3Fc", nil, nil, false, 200, machine, &machine},
		{"watch machine", func(ctx context.Context, c *Client) (any, error) { return c.WatchMachine(ctx, "m1", 7, 20*time.Second) },
			"GET", "/v1/machines/m1", url.Values{"wait": {"20s"}, "after_revision": {"7"}}, nil, false, 200, machine, &machine},
		{"watch machine caps wait", func(ctx context.Context, c *Client) (any, error) { return c.WatchMachine(ctx, "m1", 0, 5*time.Minute) },
			"GET", "/v1/machines/m1", url.Values{"wait": {"1m0s"}, "after_revision": {"0"}}, nil, false, 200, machine, &machine},
		{"list machines filtered", func(ctx context.Context, c *Client) (any, error) {
			return c.ListMachines(ctx, MachineFilter{Cluster: "k", Role: "cp", Phase: "provisioned", State: "provisioned"})
		}, "GET", "/v1/machines", url.Values{"cluster": {"k"}, "role": {"cp"}, "phase": {"provisioned"}, "state": {"provisioned"}},
			nil, false, 200, api.MachineList{Items: []api.Machine{machine}}, []api.Machine{machine}},
		{"list machines unfiltered", func(ctx context.Context, c *Client) (any, error) { return c.ListMachines(ctx, MachineFilter{}) },
			"GET", "/v1/machines", url.Values{}, nil, false, 200, api.MachineList{Items: []api.Machine{}}, []api.Machine{}},
		{"update machine", func(ctx context.Context, c *Client) (any, error) { return c.UpdateMachine(ctx, "m1", machineReq) },
			"PUT", "/v1/machines/m1", nil, machineReq, true, 200, machine, &machine},
		{"delete machine", func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteMachine(ctx, "m1", false) },
			"DELETE", "/v1/machines/m1", url.Values{}, nil, true, 202, nil, nil},
		{"delete machine force", func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteMachine(ctx, "m1", true) },
			"DELETE", "/v1/machines/m1", url.Values{"force": {"true"}}, nil, true, 204, nil, nil},
		{"machine action", func(ctx context.Context, c *Client) (any, error) {
			return c.MachineAction(ctx, "m1", api.ActionPowerOn)
		},
			"POST", "/v1/machines/m1/actions/power_on", nil, nil, true, 202, api.ActionResponse{Machine: machine, Action: "power_on"}, &machine},
		{"renew lease", func(ctx context.Context, c *Client) (any, error) { return c.RenewLease(ctx, "m1") },
			"PUT", "/v1/machines/m1/lease", nil, nil, true, 200, api.Lease{Holder: "tf-run-1", ExpiresAt: t0, DurationSeconds: 120},
			&api.Lease{Holder: "tf-run-1", ExpiresAt: t0, DurationSeconds: 120}},
		{"release lease", func(ctx context.Context, c *Client) (any, error) { return nil, c.ReleaseLease(ctx, "m1") },
			"DELETE", "/v1/machines/m1/lease", nil, nil, true, 204, nil, nil},
		{"machine events", func(ctx context.Context, c *Client) (any, error) { return c.MachineEvents(ctx, "m1", 5, 10) },
			"GET", "/v1/machines/m1/events", url.Values{"after": {"5"}, "limit": {"10"}}, nil, false, 200, events, &events},
		{"agent events", func(ctx context.Context, c *Client) (any, error) { return c.AgentEvents(ctx, 0, 0) },
			"GET", "/v1/events", url.Values{}, nil, false, 200, events, &events},
		{"create profile", func(ctx context.Context, c *Client) (any, error) { return c.CreateBootProfile(ctx, profileReq) },
			"POST", "/v1/boot_profiles", nil, profileReq, false, 201, profile, &profile},
		{"get profile", func(ctx context.Context, c *Client) (any, error) { return c.GetBootProfile(ctx, "debian") },
			"GET", "/v1/boot_profiles/debian", nil, nil, false, 200, profile, &profile},
		{"list profiles", func(ctx context.Context, c *Client) (any, error) { return c.ListBootProfiles(ctx) },
			"GET", "/v1/boot_profiles", nil, nil, false, 200, api.BootProfileList{Items: []api.BootProfile{profile}}, []api.BootProfile{profile}},
		{"update profile", func(ctx context.Context, c *Client) (any, error) {
			return c.UpdateBootProfile(ctx, "debian", profileReq)
		},
			"PUT", "/v1/boot_profiles/debian", nil, profileReq, false, 200, profile, &profile},
		{"delete profile", func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteBootProfile(ctx, "debian") },
			"DELETE", "/v1/boot_profiles/debian", nil, nil, false, 204, nil, nil},
		{"create cluster", func(ctx context.Context, c *Client) (any, error) { return c.CreateCluster(ctx, clusterReq) },
			"POST", "/v1/clusters", nil, clusterReq, false, 201, cluster, &cluster},
		{"get cluster", func(ctx context.Context, c *Client) (any, error) { return c.GetCluster(ctx, "k") },
			"GET", "/v1/clusters/k", nil, nil, false, 200, cluster, &cluster},
		{"watch cluster", func(ctx context.Context, c *Client) (any, error) { return c.WatchCluster(ctx, "k", 4, time.Second) },
			"GET", "/v1/clusters/k", url.Values{"wait": {"1s"}, "after_revision": {"4"}}, nil, false, 200, cluster, &cluster},
		{"list clusters", func(ctx context.Context, c *Client) (any, error) { return c.ListClusters(ctx) },
			"GET", "/v1/clusters", nil, nil, false, 200, api.ClusterList{Items: []api.Cluster{cluster}}, []api.Cluster{cluster}},
		{"update cluster", func(ctx context.Context, c *Client) (any, error) { return c.UpdateCluster(ctx, "k", clusterReq) },
			"PUT", "/v1/clusters/k", nil, clusterReq, false, 200, cluster, &cluster},
		{"delete cluster", func(ctx context.Context, c *Client) (any, error) { return nil, c.DeleteCluster(ctx, "k") },
			"DELETE", "/v1/clusters/k", nil, nil, false, 202, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{respond: func(int, *http.Request, []byte) (int, http.Header, any) { return tt.status, nil, tt.respond }}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			c := newTestClient(t, srv.URL, nil, func(cfg *Config) { cfg.LeaseHolder = "tf-run-1" })

			got, err := tt.call(context.Background(), c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if tt.want != nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decoded %+v, want %+v", got, tt.want)
			}
			reqs := rec.requests()
			if len(reqs) != 1 {
				t.Fatalf("server saw %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != tt.method || r.Path != tt.path {
				t.Errorf("request %s %s, want %s %s", r.Method, r.Path, tt.method, tt.path)
			}
			if tt.query != nil && !reflect.DeepEqual(r.Query, tt.query) {
				t.Errorf("query %v, want %v", r.Query, tt.query)
			}
			if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
				t.Errorf("Authorization %q, want the bearer token", got)
			}
			if got := r.Header.Get("User-Agent"); got != "client-test/1" {
				t.Errorf("User-Agent %q", got)
			}
			wantLease := ""
			if tt.lease {
				wantLease = "tf-run-1"
			}
			if got := r.Header.Get(api.HeaderLeaseHolder); got != wantLease {
				t.Errorf("lease holder header %q, want %q", got, wantLease)
			}
			if tt.body == nil {
				if len(r.Body) != 0 {
					t.Errorf("unexpected body %s", r.Body)
				}
				return
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			want, _ := json.Marshal(tt.body)
			if !bytes.Equal(bytes.TrimSpace(r.Body), want) {
				t.Errorf("body %s, want %s", r.Body, want)
			}
		})
	}
}

func TestLeaseHeaderOmittedWhenUnset(t *testing.T) {
	rec := &recorder{respond: func(int, *http.Request, []byte) (int, http.Header, any) { return 202, nil, nil }}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil, nil)
	if err := c.DeleteMachine(context.Background(), "m1", false); err != nil {
		t.Fatal(err)
	}
	if h, ok := rec.requests()[0].Header[api.HeaderLeaseHolder]; ok {
		t.Errorf("lease header sent without a holder: %q", h)
	}
}

func TestEmptyNameRejected(t *testing.T) {
	c := newTestClient(t, "http://127.0.0.1:1", nil, nil)
	if _, err := c.GetMachine(context.Background(), ""); err == nil || !strings.Contains(err.Error(), "name must not be empty") {
		t.Errorf("GetMachine(\"\"): %v", err)
	}
	if _, err := c.MachineAction(context.Background(), "m1", ""); err == nil || !strings.Contains(err.Error(), "action must not be empty") {
		t.Errorf("MachineAction with no action: %v", err)
	}
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		endpoint, token string
		wantErr         string // "" = valid
		wantEndpoint    string
	}{
		{"https://agent:8443", "t", "", "https://agent:8443"},
		{"https://agent:8443/", "t", "", "https://agent:8443"},
		{"https://agent:8443/v1", "t", "", "https://agent:8443"},
		{"https://proxy/agent/v1/", "t", "", "https://proxy/agent"},
		{" http://127.0.0.1:8080 ", "t\n", "", "http://127.0.0.1:8080"},
		{"", "t", "endpoint is empty", ""},
		{"agent:8443", "t", "scheme must be https or http", ""},
		{"ftp://agent", "t", "scheme must be https or http", ""},
		{"https://", "t", "has no host", ""},
		{"https://u:p@agent", "t", "must not contain credentials", ""},
		{"https://agent/?x=1", "t", "query or fragment", ""},
		{"https://agent", "abc def", "whitespace or control", ""},
		{"https://agent", "abc\r\nX-Evil: 1", "whitespace or control", ""},
	}
	for _, tt := range tests {
		c, err := New(Config{Endpoint: tt.endpoint, Token: tt.token})
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("New(%q): %v", tt.endpoint, err)
				continue
			}
			if c.Endpoint() != tt.wantEndpoint {
				t.Errorf("New(%q).Endpoint() = %q, want %q", tt.endpoint, c.Endpoint(), tt.wantEndpoint)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("New(%q): error %v, want %q", tt.endpoint, err, tt.wantErr)
		}
		if err != nil && strings.Contains(tt.token, "abc") && strings.Contains(err.Error(), "abc") {
			t.Errorf("token leaked into %q", err)
		}
	}
}

func TestEndpointBasePath(t *testing.T) {
	rec := &recorder{respond: func(int, *http.Request, []byte) (int, http.Header, any) { return 200, nil, api.Info{Version: "x"} }}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c := newTestClient(t, srv.URL+"/agent/v1", nil, nil)
	if _, err := c.Info(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p := rec.requests()[0].Path; p != "/agent/v1/info" {
		t.Errorf("path %q, want /agent/v1/info", p)
	}
}

func TestOversizedResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"version":"`)
		chunk := strings.Repeat("a", 1<<20)
		for range MaxResponseBytes>>20 + 1 {
			io.WriteString(w, chunk)
		}
		io.WriteString(w, `"}`)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil, nil)
	_, err := c.Info(context.Background())
	if err == nil || !strings.Contains(err.Error(), "response larger than") {
		t.Fatalf("got %v, want a size error", err)
	}
}

func TestBadJSONResponse(t *testing.T) {
	rec := &recorder{respond: func(int, *http.Request, []byte) (int, http.Header, any) { return 200, nil, "not json" }}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil, nil)
	_, err := c.GetMachine(context.Background(), "m1")
	if err == nil || !strings.Contains(err.Error(), "GET /v1/machines/m1: decoding 200 response") {
		t.Fatalf("got %v", err)
	}
}
