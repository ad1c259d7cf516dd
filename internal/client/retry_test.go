package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// failThen answers failures times with status (and Retry-After when set), then 200 with ok.
func failThen(failures, status int, retryAfter string, ok any) *recorder {
	return &recorder{respond: func(n int, _ *http.Request, _ []byte) (int, http.Header, any) {
		if n <= failures {
			h := http.Header{}
			if retryAfter != "" {
				h.Set("Retry-After", retryAfter)
			}
			return status, h, errBody(api.CodeUnavailable, "store busy", "")
		}
		return 200, nil, ok
	}}
}

func TestRetries(t *testing.T) {
	machine := api.Machine{Name: "m1", Phase: "available"}
	req := api.MachineRequest{Name: "m1", BMC: api.BMCRequest{Endpoint: "https://bmc", Username: "u", Password: "p"}}
	tests := []struct {
		name       string
		call       func(ctx context.Context, c *Client) error
		failures   int
		status     int
		maxRetries int
		wantReqs   int
		wantErr    error // nil = success
	}{
		{"GET 503 then ok", func(ctx context.Context, c *Client) error { _, err := c.GetMachine(ctx, "m1"); return err },
			3, 503, 5, 4, nil},
		{"GET 502 then ok", func(ctx context.Context, c *Client) error { _, err := c.ListMachines(ctx, MachineFilter{}); return err },
			1, 502, 5, 2, nil},
		{"PUT 504 then ok", func(ctx context.Context, c *Client) error { _, err := c.UpdateMachine(ctx, "m1", req); return err },
			2, 504, 5, 3, nil},
		{"DELETE 503 then ok", func(ctx context.Context, c *Client) error { return c.DeleteMachine(ctx, "m1", false) },
			2, 503, 5, 3, nil},
		{"GET gives up after MaxRetries", func(ctx context.Context, c *Client) error { _, err := c.GetMachine(ctx, "m1"); return err },
			100, 503, 2, 3, &APIError{StatusCode: 503}},
		{"retries disabled", func(ctx context.Context, c *Client) error { _, err := c.GetMachine(ctx, "m1"); return err },
			100, 503, -1, 1, &APIError{StatusCode: 503}},
		{"POST create not retried on 503", func(ctx context.Context, c *Client) error { _, err := c.CreateMachine(ctx, req); return err },
			1, 503, 5, 1, &APIError{StatusCode: 503}},
		{"POST action not retried on 503", func(ctx context.Context, c *Client) error {
			_, err := c.MachineAction(ctx, "m1", api.ActionReset)
			return err
		}, 1, 503, 5, 1, &APIError{StatusCode: 503}},
		{"GET 500 not retried", func(ctx context.Context, c *Client) error { _, err := c.GetMachine(ctx, "m1"); return err },
			1, 500, 5, 1, &APIError{StatusCode: 500}},
		{"GET 404 not retried", func(ctx context.Context, c *Client) error { _, err := c.GetMachine(ctx, "m1"); return err },
			1, 404, 5, 1, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := failThen(tt.failures, tt.status, "", machine)
			srv := httptest.NewServer(rec)
			defer srv.Close()
			c := newTestClient(t, srv.URL, nil, func(cfg *Config) { cfg.MaxRetries = tt.maxRetries })

			err := tt.call(context.Background(), c)
			if got := len(rec.requests()); got != tt.wantReqs {
				t.Errorf("server saw %d requests, want %d", got, tt.wantReqs)
			}
			switch want := tt.wantErr.(type) {
			case nil:
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
			case *APIError:
				var ae *APIError
				if !errors.As(err, &ae) || ae.StatusCode != want.StatusCode {
					t.Fatalf("error %v, want status %d", err, want.StatusCode)
				}
				if gaveUp := fmt.Sprintf("(gave up after %d attempts)", tt.wantReqs); tt.wantReqs > 1 && !strings.HasSuffix(err.Error(), gaveUp) {
					t.Errorf("error %q should end with %q", err, gaveUp)
				}
			default:
				if !errors.Is(err, want) {
					t.Fatalf("error %v, want %v", err, want)
				}
			}
			// Every attempt re-sends the same body.
			reqs := rec.requests()
			for _, r := range reqs[1:] {
				if !bytes.Equal(r.Body, reqs[0].Body) {
					t.Errorf("retry sent body %q, first attempt %q", r.Body, reqs[0].Body)
				}
			}
			if len(reqs) > 1 && reqs[0].Method == http.MethodPut && len(reqs[0].Body) == 0 {
				t.Error("PUT sent no body")
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter string
		maxWait    time.Duration
		minGap     time.Duration
		maxTotal   time.Duration
	}{
		// Retry-After: 1 capped at 60ms: the gap is the cap, far above the
		// 1ms base backoff the client would use by itself.
		{"seconds capped", "1", 60 * time.Millisecond, 55 * time.Millisecond, 2 * time.Second},
		{"huge value capped", "3600", 30 * time.Millisecond, 25 * time.Millisecond, 2 * time.Second},
		{"http date", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), 40 * time.Millisecond, 35 * time.Millisecond, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				mu    sync.Mutex
				times []time.Time
			)
			rec := failThen(2, 503, tt.retryAfter, api.Info{Version: "v"})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				times = append(times, time.Now())
				mu.Unlock()
				rec.ServeHTTP(w, r)
			}))
			defer srv.Close()
			c := newTestClient(t, srv.URL, nil, func(cfg *Config) { cfg.RetryMaxWait = tt.maxWait })

			start := time.Now()
			if _, err := c.Info(context.Background()); err != nil {
				t.Fatal(err)
			}
			if total := time.Since(start); total > tt.maxTotal {
				t.Errorf("took %v: Retry-After not capped", total)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(times) != 3 {
				t.Fatalf("%d requests, want 3", len(times))
			}
			for i := 1; i < len(times); i++ {
				if gap := times[i].Sub(times[i-1]); gap < tt.minGap {
					t.Errorf("gap %d = %v, want >= %v (Retry-After ignored)", i, gap, tt.minGap)
				}
			}
		})
	}
}

func TestBackoffCapped(t *testing.T) {
	c := newTestClient(t, "http://127.0.0.1:1", nil, func(cfg *Config) { cfg.RetryMaxWait = 40 * time.Millisecond })
	c.baseWait = 10 * time.Millisecond
	for attempt := range 40 {
		d := c.backoff(attempt, 0)
		if d <= 0 || d > 40*time.Millisecond {
			t.Fatalf("attempt %d: backoff %v outside (0, cap]", attempt, d)
		}
	}
}

func TestContextCancelStopsRetries(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{respond: func(n int, _ *http.Request, _ []byte) (int, http.Header, any) {
		if n == 3 {
			cancel()
		}
		return 503, nil, errBody(api.CodeUnavailable, "starting", "")
	}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil, func(cfg *Config) { cfg.MaxRetries = 1000 })

	_, err := c.GetMachine(ctx, "m1")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if n := len(rec.requests()); n != 3 {
		t.Errorf("server saw %d requests, want 3 (none after cancel)", n)
	}
}

// cancelOnWrite cancels a context when the client logs a retry, i.e. just
// before it starts waiting out the backoff.
type cancelOnWrite struct{ cancel context.CancelFunc }

func (w cancelOnWrite) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("retrying")) {
		w.cancel()
	}
	return len(p), nil
}

func TestContextCancelDuringBackoff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := failThen(100, 503, "", nil)
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c := newTestClient(t, srv.URL, cancelOnWrite{cancel}, func(cfg *Config) { cfg.RetryMaxWait = time.Hour })
	c.baseWait = time.Hour

	start := time.Now()
	_, err := c.GetMachine(ctx, "m1")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Error("backoff did not stop on cancel")
	}
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 503 || !strings.Contains(err.Error(), "gave up retrying") {
		t.Errorf("error %q should keep the 503 that was being retried", err)
	}
	if n := len(rec.requests()); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
}

// flakyDialer refuses the first failures dials the way a stopped agent does.
type flakyDialer struct {
	failures int32
	dials    atomic.Int32
}

func (d *flakyDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.dials.Add(1) <= d.failures {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func TestPOSTRetriedOnlyWhenNothingWasSent(t *testing.T) {
	req := api.MachineRequest{Name: "m1", BMC: api.BMCRequest{Endpoint: "https://bmc", Username: "u", Password: "p"}}

	t.Run("dial refused", func(t *testing.T) {
		rec := &recorder{respond: func(int, *http.Request, []byte) (int, http.Header, any) { return 201, nil, api.Machine{Name: "m1"} }}
		srv := httptest.NewServer(rec)
		defer srv.Close()
		d := &flakyDialer{failures: 2}
		c := newTestClient(t, srv.URL, nil, func(cfg *Config) {
			cfg.HTTPClient = &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
		})
		m, err := c.CreateMachine(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if m.Name != "m1" || d.dials.Load() != 3 || len(rec.requests()) != 1 {
			t.Errorf("machine %q, %d dials, %d requests; want m1, 3, 1", m.Name, d.dials.Load(), len(rec.requests()))
		}
		if !strings.Contains(string(rec.requests()[0].Body), `"password":"p"`) {
			t.Errorf("body lost on retry: %s", rec.requests()[0].Body)
		}
	})

	// The connection drops after the request was read: the agent may have
	// acted, so a POST must not be repeated, while a GET is.
	for _, tt := range []struct {
		name     string
		call     func(c *Client) error
		wantReqs int
	}{
		{"POST after send", func(c *Client) error { _, err := c.CreateMachine(context.Background(), req); return err }, 1},
		{"GET after send", func(c *Client) error { _, err := c.GetMachine(context.Background(), "m1"); return err }, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) <= 2 {
					hj, ok := w.(http.Hijacker)
					if !ok {
						t.Error("the test server's writer cannot hijack")
						return
					}
					conn, _, err := hj.Hijack()
					if err == nil {
						conn.Close()
					}
					return
				}
				_, _ = w.Write([]byte(`{"name":"m1"}`)) // a failed write is the client's to see
			}))
			defer srv.Close()
			c := newTestClient(t, srv.URL, nil, func(cfg *Config) {
				cfg.HTTPClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			})
			err := tt.call(c)
			if got := int(n.Load()); got != tt.wantReqs {
				t.Errorf("server saw %d requests, want %d (err %v)", got, tt.wantReqs, err)
			}
			if tt.wantReqs == 1 {
				if err == nil || !strings.Contains(err.Error(), hintReachable) {
					t.Errorf("error %v, want the reachability hint", err)
				}
			} else if err != nil {
				t.Errorf("GET not recovered: %v", err)
			}
		})
	}
}

func TestConnectionRefusedError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	var logs logBuffer
	c := newTestClient(t, url, &logs, func(cfg *Config) { cfg.MaxRetries = 2 })

	_, err := c.ListMachines(context.Background(), MachineFilter{})
	if err == nil {
		t.Fatal("no error from a closed port")
	}
	msg := err.Error()
	for _, want := range []string{"agent " + url, "GET /v1/machines", "connection refused", hintReachable} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("errors.Is(err, ECONNREFUSED) = false for %v", err)
	}
	if strings.Contains(msg, testToken) || strings.Contains(logs.String(), testToken) {
		t.Error("token leaked")
	}
	if got := strings.Count(logs.String(), "retrying"); got != 2 {
		t.Errorf("%d retries logged, want 2", got)
	}
}
