package bmc

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// dmtf starts a mock of the DMTF reference server; its system is
// /redfish/v1/Systems/437XR1138R2.
func dmtf(t *testing.T, hook func(mock *mockBMC, w http.ResponseWriter, r *http.Request) bool) (*mockBMC, model.BMC) {
	t.Helper()
	mock := newMockBMC(t, "dmtf-public-rackmount1", "admin", "pw-1234")
	if hook != nil {
		mock.hook = func(w http.ResponseWriter, r *http.Request) bool { return hook(mock, w, r) }
	}
	srv := httptest.NewServer(mock)
	t.Cleanup(srv.Close)
	return mock, model.BMC{Endpoint: srv.URL, Username: "admin", Password: "pw-1234"}
}

func isSystemGET(mock *mockBMC, r *http.Request) bool {
	return r.Method == http.MethodGet && strings.TrimSuffix(r.URL.Path, "/") == mock.sysPath
}

func TestRetriesRecoverFrom503s(t *testing.T) {
	for _, n := range []int{1, 3, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var gets, failed atomic.Int32
			_, c := dmtf(t, func(mock *mockBMC, w http.ResponseWriter, r *http.Request) bool {
				if !isSystemGET(mock, r) {
					return false
				}
				if gets.Add(1) <= int32(n) {
					failed.Add(1)
					redfishErr(w, http.StatusServiceUnavailable, "busy")
					return true
				}
				return false
			})
			reg := prometheus.NewRegistry()
			cfg := testConfig()
			cfg.Registerer = reg
			m := NewManager(cfg)
			st, err := m.PowerState(testCtx(t), c)
			if err != nil || st != "On" {
				t.Fatalf("PowerState = %q, %v; want On after %d 503s", st, err, n)
			}
			if gets.Load() != int32(n+1) || failed.Load() != int32(n) {
				t.Errorf("system GETs %d (%d failed), want %d", gets.Load(), failed.Load(), n+1)
			}
			if got := testutil.ToFloat64(m.metrics.retries); got != float64(n) {
				t.Errorf("retries metric %v, want %d", got, n)
			}
			if got := testutil.ToFloat64(m.metrics.ops.WithLabelValues("power_state", "ok")); got != 1 {
				t.Errorf("ok operations metric %v, want 1", got)
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	_, c := dmtf(t, func(mock *mockBMC, w http.ResponseWriter, r *http.Request) bool {
		if !isSystemGET(mock, r) {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		at = append(at, time.Now())
		if len(at) == 1 {
			w.Header().Set("Retry-After", "1") // iDRAC: "retry in N seconds"
			redfishErr(w, http.StatusServiceUnavailable, "busy, retry later")
			return true
		}
		return false
	})
	cfg := testConfig()
	cfg.RetryBase, cfg.RetryMax = time.Millisecond, 5*time.Second
	if _, err := NewManager(cfg).PowerState(testCtx(t), c); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(at) != 2 {
		t.Fatalf("%d system GETs, want 2", len(at))
	}
	if gap := at[1].Sub(at[0]); gap < 950*time.Millisecond {
		t.Errorf("retried after %v; Retry-After asked for 1s", gap)
	}
}

func TestPermanentFailureEndsWithinDeadline(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	deadURL := closed.URL
	closed.Close()

	tests := []struct {
		name       string
		maxRetries int
		endpoint   string // "" means the 500ing server
		want       []string
		attempts   int32 // exact system GETs; 0: don't check
	}{
		{name: "500 until the deadline", maxRetries: 1000,
			want: []string{"read power state: internal fault in the BMC", "gave up after", "(500)"}},
		{name: "500 within the retry budget", maxRetries: 2, attempts: 3,
			want: []string{"read power state: internal fault in the BMC; gave up after 3 attempts (500)"}},
		{name: "connection refused", maxRetries: 1000, endpoint: deadURL,
			want: []string{"BMC " + deadURL + ": read power state: cannot reach the BMC", "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gets atomic.Int32
			_, c := dmtf(t, func(mock *mockBMC, w http.ResponseWriter, r *http.Request) bool {
				if isSystemGET(mock, r) {
					gets.Add(1)
					redfishErr(w, http.StatusInternalServerError, "internal fault in the BMC")
					return true
				}
				return false
			})
			if tt.endpoint != "" {
				c.Endpoint = tt.endpoint
			}
			cfg := testConfig()
			cfg.MaxRetries, cfg.RetryBase, cfg.RetryMax = tt.maxRetries, 10*time.Millisecond, 100*time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := NewManager(cfg).PowerState(ctx, c)
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("no error from a failing BMC")
			}
			// Without the deadline the retry budget would run for about
			// 100 s; the margin only absorbs a loaded machine's scheduling.
			if elapsed > 800*time.Millisecond+5*time.Second {
				t.Errorf("took %v: retries went on long past the 0.8s deadline", elapsed)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !IsRetryable(err) {
				t.Errorf("%v should be retryable later", err)
			}
			if tt.attempts != 0 && gets.Load() != tt.attempts {
				t.Errorf("%d system GETs, want %d", gets.Load(), tt.attempts)
			}
		})
	}
}

func TestLoginRefused(t *testing.T) {
	tests := []struct {
		name       string
		noSessions bool
	}{{"session login", false}, {"basic auth", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mock, c := dmtf(t, nil)
			mock.noSessions = tt.noSessions
			c.Password = "wrong-password"
			err := NewManager(testConfig()).Power(testCtx(t), c, PowerOn)
			want := "BMC " + c.Endpoint + ": login refused (401): check the username and password; 1 attempt in the last 1 minute"
			if err == nil || err.Error() != want {
				t.Fatalf("error %q, want %q", err, want)
			}
			var e *Error
			if !errors.As(err, &e) || e.StatusCode != 401 || IsRetryable(err) {
				t.Errorf("want a non-retryable *Error with status 401, got %#v", err)
			}
			if resets, _, _ := mock.snapshot(); len(resets) != 0 {
				t.Errorf("resets sent without a login: %v", resets)
			}
		})
	}
}

func TestBasicAuthFallback(t *testing.T) {
	mock, c := dmtf(t, nil)
	mock.noSessions = true
	m := NewManager(testConfig())
	if err := m.Power(testCtx(t), c, PowerForceOff); err != nil {
		t.Fatal(err)
	}
	mock.mu.Lock()
	defer mock.mu.Unlock()
	if len(mock.auths) == 0 || slices.ContainsFunc(mock.auths, func(a string) bool { return a != "Basic" }) {
		t.Errorf("authenticated requests used %v, want basic auth only", mock.auths)
	}
	if mock.power != "Off" {
		t.Errorf("power %s, want Off", mock.power)
	}
}

func TestSessionRecreatedAfter401(t *testing.T) {
	mock, c := dmtf(t, nil)
	m := NewManager(testConfig())
	ctx := testCtx(t)
	if _, err := m.PowerState(ctx, c); err != nil {
		t.Fatal(err)
	}
	mock.mu.Lock()
	clear(mock.sessions) // the BMC expired every session
	mock.mu.Unlock()
	if _, err := m.PowerState(ctx, c); err != nil {
		t.Fatalf("after session expiry: %v", err)
	}
	mock.mu.Lock()
	defer mock.mu.Unlock()
	if mock.sessionPosts != 2 {
		t.Errorf("%d logins, want 2 (one re-login)", mock.sessionPosts)
	}
}

func TestBootOverrideReverted(t *testing.T) {
	mock, c := dmtf(t, nil)
	mock.revert = true
	err := NewManager(testConfig()).SetBootOverride(testCtx(t), c, BootDisk, false, BootModeKeep)
	if !errors.Is(err, ErrOverrideReverted) {
		t.Fatalf("error %v, want ErrOverrideReverted", err)
	}
	if !strings.Contains(err.Error(), `reverted BootSourceOverrideTarget to "Pxe"`) {
		t.Errorf("error %q does not say what the BMC reports", err)
	}
}

func TestBootOverrideStaleETag(t *testing.T) {
	mock := newMockBMC(t, "hpegen10", "admin", "pw-1234")
	var patches atomic.Int32
	mock.hook = func(w http.ResponseWriter, r *http.Request) bool {
		// Someone else changed the system between our read and our PATCH.
		if r.Method == http.MethodPatch && patches.Add(1) == 1 {
			mock.mu.Lock()
			mock.etag = `W/"CHANGED1"`
			mock.mu.Unlock()
		}
		return false
	}
	srv := httptest.NewServer(mock)
	defer srv.Close()
	c := model.BMC{Endpoint: srv.URL, Username: "admin", Password: "pw-1234"}
	if err := NewManager(testConfig()).SetBootOverride(testCtx(t), c, BootPXE, false, BootModeKeep); err != nil {
		t.Fatal(err)
	}
	_, recs, _ := mock.snapshot()
	if len(recs) != 2 || recs[0].IfMatch != `W/"14D4047B"` || recs[1].IfMatch != `W/"CHANGED1"` {
		t.Errorf("PATCHes %+v: want a 412 then a retry with the re-read ETag", recs)
	}
}

func TestPowerSubstitutesAndFallbacks(t *testing.T) {
	tests := []struct {
		name    string
		allowed []string
		ignore  []string
		initial string
		action  PowerAction
		resets  []string
		err     error
		errText string
	}{
		{name: "restart by ForceOff then On", allowed: []string{"On", "ForceOff"}, initial: "On",
			action: PowerForceRestart, resets: []string{"ForceOff", "On"}},
		{name: "On by ForceOn", allowed: []string{"ForceOn", "ForceOff"}, initial: "Off",
			action: PowerOn, resets: []string{"ForceOn"}},
		{name: "On by power button only when Off", allowed: []string{"PushPowerButton", "ForceOff"}, initial: "Off",
			action: PowerOn, resets: []string{"PushPowerButton"}},
		{name: "restart of an Off system powers on", allowed: []string{"On", "ForceOff", "ForceRestart"}, initial: "Off",
			action: PowerCycle, resets: []string{"On"}},
		{name: "graceful ignored falls back to ForceOff", ignore: []string{"GracefulShutdown"}, initial: "On",
			action: PowerGracefulShutdown, resets: []string{"GracefulShutdown", "ForceOff"}},
		{name: "nothing offered", allowed: []string{"Nmi"}, initial: "On",
			action: PowerForceOff, err: ErrUnsupported, errText: "no reset type achieves ForceOff"},
		{name: "action accepted but ignored", ignore: []string{"ForceOff"}, initial: "On",
			action: PowerForceOff, resets: []string{"ForceOff"}, errText: `still reports PowerState "On"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mock, c := dmtf(t, nil)
			if tt.allowed != nil {
				mock.allowed = tt.allowed
			}
			for _, r := range tt.ignore {
				mock.ignoreReset[r] = true
			}
			mock.power = tt.initial
			cfg := testConfig()
			cfg.PowerWaitTimeout = 200 * time.Millisecond
			err := NewManager(cfg).Power(testCtx(t), c, tt.action)
			if tt.errText == "" && err != nil {
				t.Fatalf("Power: %v", err)
			}
			if tt.errText != "" && (err == nil || !strings.Contains(err.Error(), tt.errText)) {
				t.Fatalf("error %v, want one containing %q", err, tt.errText)
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Errorf("error %v does not wrap %v", err, tt.err)
			}
			resets, _, _ := mock.snapshot()
			if !slices.Equal(resets, tt.resets) {
				t.Errorf("resets %v, want %v", resets, tt.resets)
			}
			if len(mock.rejected) != 0 {
				t.Errorf("sent reset types outside the allowable list: %v", mock.rejected)
			}
		})
	}
}

// TestOneOperationPerBMC: concurrent calls on one BMC never overlap, while
// two BMCs are driven in parallel.
func TestOneOperationPerBMC(t *testing.T) {
	var inFlight, maxInFlight atomic.Int32
	_, c := dmtf(t, func(mock *mockBMC, w http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, mock.sysPath) {
			n := inFlight.Add(1)
			for {
				old := maxInFlight.Load()
				if n <= old || maxInFlight.CompareAndSwap(old, n) {
					break
				}
			}
			time.Sleep(2 * time.Millisecond)
			inFlight.Add(-1)
		}
		return false
	})
	m := NewManager(testConfig())
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := PowerOn
			if i%2 == 0 {
				a = PowerForceOff
			}
			errs <- m.Power(ctx, c, a)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if maxInFlight.Load() != 1 {
		t.Errorf("%d requests on one system overlapped, want 1 at a time", maxInFlight.Load())
	}

	// Two BMCs: each holds its first system read until the other's has
	// arrived, which only happens if the Manager drives both at once.
	arrived := make(chan struct{}, 2)
	var met atomic.Int32
	// rendezvous only waits: the request then goes on to the mock.
	rendezvous := func(mock *mockBMC, r *http.Request) {
		if isSystemGET(mock, r) {
			arrived <- struct{}{}
			deadline := time.After(5 * time.Second)
			for len(arrived) < 2 {
				select {
				case <-deadline:
					return
				case <-time.After(time.Millisecond):
				}
			}
			met.Add(1)
		}
	}
	_, c1 := dmtf(t, func(mock *mockBMC, w http.ResponseWriter, r *http.Request) bool {
		if len(arrived) < 2 {
			rendezvous(mock, r)
		}
		return false
	})
	_, c2 := dmtf(t, func(mock *mockBMC, w http.ResponseWriter, r *http.Request) bool {
		if len(arrived) < 2 {
			rendezvous(mock, r)
		}
		return false
	})
	var wg2 sync.WaitGroup
	for _, c := range []model.BMC{c1, c2} {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			if _, err := m.PowerState(ctx, c); err != nil {
				t.Error(err)
			}
		}()
	}
	wg2.Wait()
	if met.Load() != 2 {
		t.Errorf("the two BMCs' requests did not overlap (%d met)", met.Load())
	}
}

func TestGlobalConcurrencyLimit(t *testing.T) {
	var inFlight, maxInFlight atomic.Int32
	hook := func(mock *mockBMC, w http.ResponseWriter, r *http.Request) bool {
		n := inFlight.Add(1)
		for {
			old := maxInFlight.Load()
			if n <= old || maxInFlight.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(15 * time.Millisecond)
		inFlight.Add(-1)
		return false
	}
	var bmcs []model.BMC
	for range 6 {
		_, c := dmtf(t, hook)
		bmcs = append(bmcs, c)
	}
	cfg := testConfig()
	cfg.MaxConcurrent = 2
	m := NewManager(cfg)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for _, c := range bmcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.PowerState(ctx, c); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := maxInFlight.Load(); got != 2 {
		t.Errorf("at most %d requests in flight across BMCs, want exactly the limit 2", got)
	}
}

func TestEndpointForms(t *testing.T) {
	mock, c := dmtf(t, nil)
	m := NewManager(testConfig())
	ctx := testCtx(t)
	full := c
	full.Endpoint = c.Endpoint + mock.sysPath
	if st, err := m.PowerState(ctx, full); err != nil || st != "On" {
		t.Fatalf("full system URL: %q, %v", st, err)
	}
	wrong := c
	wrong.Endpoint = c.Endpoint + "/redfish/v1/Systems/nope"
	if _, err := m.PowerState(ctx, wrong); err == nil || !strings.Contains(err.Error(), "(404)") {
		t.Errorf("unknown system: %v, want a 404 error", err)
	}

	// A service with several systems needs one named.
	multi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redfish/v1/Systems" {
			_, _ = w.Write([]byte(`{"Members":[{"@odata.id":"/redfish/v1/Systems/a"},{"@odata.id":"/redfish/v1/Systems/b"}]}`))
			return
		}
		mock.ServeHTTP(w, r)
	}))
	defer multi.Close()
	c.Endpoint = multi.URL
	_, err := m.PowerState(ctx, c)
	if err == nil || !strings.Contains(err.Error(), "manages 2 systems") ||
		!strings.Contains(err.Error(), multi.URL+"/redfish/v1/Systems/a") || IsRetryable(err) {
		t.Errorf("several systems: %v", err)
	}
}

func TestTLS(t *testing.T) {
	mock := newMockBMC(t, "dmtf-public-rackmount1", "admin", "pw-1234")
	srv := httptest.NewTLSServer(mock)
	defer srv.Close()
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	otherPEM := selfSignedCA(t) // every httptest server shares one certificate

	tests := []struct {
		name    string
		bmc     model.BMC
		errText string
	}{
		{"unknown CA refused by default", model.BMC{}, "TLS certificate not trusted"},
		{"wrong CA refused", model.BMC{CACertPEM: otherPEM}, "TLS certificate not trusted"},
		{"per-BMC CA", model.BMC{CACertPEM: caPEM}, ""},
		{"insecure", model.BMC{Insecure: true}, ""},
		{"garbage CA", model.BMC{CACertPEM: "not a certificate"}, "ca_cert_pem holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.bmc
			c.Endpoint, c.Username, c.Password = srv.URL, "admin", "pw-1234"
			_, err := NewManager(testConfig()).PowerState(testCtx(t), c)
			if tt.errText == "" && err != nil {
				t.Fatal(err)
			}
			if tt.errText != "" && (err == nil || !strings.Contains(err.Error(), tt.errText)) {
				t.Fatalf("error %v, want %q", err, tt.errText)
			}
			if tt.errText != "" && IsRetryable(err) {
				t.Errorf("%v should not be retryable", err)
			}
		})
	}
}

// TestPasswordNeverLeaks sends a distinctive password through every failure
// path, against a BMC that quotes request bodies and headers in its errors,
// and checks errors and logs.
func TestPasswordNeverLeaks(t *testing.T) {
	const secret = "Zq9-CANARY-leak-77"
	var logs bytes.Buffer
	cfg := testConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.MaxRetries, cfg.PowerWaitTimeout = 1, 50*time.Millisecond
	m := NewManager(cfg)

	echoing := func(t *testing.T, pass string) (*mockBMC, model.BMC) {
		mock, c := dmtf(t, nil)
		mock.echo, mock.pass = true, pass
		c.Password = secret
		return mock, c
	}
	var errs []error
	record := func(err error) {
		if err == nil {
			t.Error("expected a failure")
		}
		errs = append(errs, err)
	}

	// Wrong password: the session POST's error quotes the body.
	_, c := echoing(t, "the-real-one")
	record(m.Power(testCtx(t), c, PowerOn))
	// A BMC erroring with the request body in its message.
	mock, c := echoing(t, secret)
	mock.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if isSystemGET(mock, r) {
			redfishErr(w, http.StatusInternalServerError, "failed on request with password "+secret)
			return true
		}
		return false
	}
	_, err := m.Inventory(testCtx(t), c)
	record(err)
	// Reverted override, ignored power, unsupported target.
	mock, c = echoing(t, secret)
	mock.revert, mock.ignoreReset["ForceOff"] = true, true
	record(m.SetBootOverride(testCtx(t), c, BootDisk, true, BootModeKeep))
	record(m.Power(testCtx(t), c, PowerForceOff))
	record(m.SetBootOverride(testCtx(t), c, BootTarget("Floppy"), false, BootModeKeep))
	// Unreachable, TLS-refused and malformed endpoints, one with the secret in it.
	for _, ep := range []string{"http://127.0.0.1:1", "https://admin:" + secret + "@127.0.0.1:1", "ftp://" + secret, "http://h/" + secret + "?x"} {
		c := model.BMC{Endpoint: ep, Username: "admin", Password: secret}
		_, err := m.PowerState(testCtx(t), c)
		record(err)
	}
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	defer tlsSrv.Close()
	_, err = m.PowerState(testCtx(t), model.BMC{Endpoint: tlsSrv.URL, Username: "admin", Password: secret})
	record(err)
	m.Close(testCtx(t))

	for _, err := range errs {
		for e := err; e != nil; e = errors.Unwrap(e) {
			if s := fmt.Sprintf("%v %+v %#v", e, e, e); strings.Contains(s, secret) || strings.Contains(s, basic("admin", secret)) {
				t.Errorf("password in error: %s", s)
			}
		}
	}
	if strings.Contains(logs.String(), secret) || strings.Contains(logs.String(), basic("admin", secret)) {
		t.Errorf("password in logs:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "BMC refused the login") {
		t.Errorf("logs do not show the failure paths ran:\n%s", logs.String())
	}
}

func TestMetricsRegistered(t *testing.T) {
	_, c := dmtf(t, nil)
	reg := prometheus.NewRegistry()
	cfg := testConfig()
	cfg.Registerer = reg
	m := NewManager(cfg)
	_ = NewManager(cfg) // a second Manager on the same registry shares the collectors
	if _, err := m.PowerState(testCtx(t), c); err != nil {
		t.Fatal(err)
	}
	c.Password = "wrong"
	_, _ = m.PowerState(testCtx(t), c)
	if n, err := testutil.GatherAndCount(reg, "baremetal_bmc_operations_total", "baremetal_bmc_http_requests_total"); err != nil || n < 3 {
		t.Errorf("gathered %d series, %v", n, err)
	}
	if got := testutil.ToFloat64(m.metrics.ops.WithLabelValues("power_state", "error")); got != 1 {
		t.Errorf("error operations %v, want 1", got)
	}
}

func selfSignedCA(t *testing.T) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "some other CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
