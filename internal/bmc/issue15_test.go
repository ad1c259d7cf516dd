package bmc

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// TestBootModeUnderRevert: a BMC that flips the mode to Legacy after every
// PATCH is answered with the desired mode again, never with the read-back
// one, and the error names the field and what it reverted to.
func TestBootModeUnderRevert(t *testing.T) {
	for _, tc := range []struct {
		name   string
		asked  BootMode
		want   string // the mode every PATCH must carry
		revert bool
	}{
		{"kept UEFI, reverting BMC", BootModeKeep, "UEFI", true},
		{"asked UEFI, reverting BMC", BootModeUEFI, "UEFI", true},
		{"kept UEFI, healthy BMC", BootModeKeep, "UEFI", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, inv, _ := startLab(t, 1)
			sys := l.System(inv[0].Name)
			require.Equal(t, "UEFI", sys.BootOverride().Mode)
			l.SetFault(inv[0].Name, lab.Fault{RevertModeToLegacy: tc.revert})
			m := NewManager(testConfig())
			c := labBMC(inv[0])
			for range 3 { // as the reconciler's step retries would
				err := m.SetBootOverride(testCtx(t), c, BootPXE, false, tc.asked)
				if !tc.revert {
					require.NoError(t, err)
					continue
				}
				require.ErrorIs(t, err, ErrOverrideReverted)
				assert.Contains(t, err.Error(), `BootSourceOverrideMode to "Legacy" (sent "UEFI")`)
			}
			got := sys.Counts().PatchedModes
			require.Len(t, got, 3)
			for _, mode := range got {
				assert.Equal(t, tc.want, mode)
			}
		})
	}
}

func TestBootModeNotAllowable(t *testing.T) {
	mock, c := dmtf(t, nil)
	mock.boot["BootSourceOverrideMode@Redfish.AllowableValues"] = []string{"UEFI"}
	err := NewManager(testConfig()).SetBootOverride(testCtx(t), c, BootPXE, false, BootModeLegacy)
	require.ErrorIs(t, err, ErrUnsupported)
	assert.Contains(t, err.Error(), "boot mode Legacy (it allows UEFI)")
	_, patches, _ := mock.snapshot()
	assert.Empty(t, patches)

	require.NoError(t, NewManager(testConfig()).SetBootOverride(testCtx(t), c, BootPXE, false, BootModeUEFI))
	_, patches, _ = mock.snapshot()
	require.Len(t, patches, 1)
	boot, _ := patches[0].Body["Boot"].(map[string]any)
	assert.Equal(t, "UEFI", boot["BootSourceOverrideMode"])

	// Legacy asked of a system reporting UEFI, on a BMC listing no modes.
	delete(mock.boot, "BootSourceOverrideMode@Redfish.AllowableValues")
	mock.boot["BootSourceOverrideMode"] = "UEFI"
	require.NoError(t, NewManager(testConfig()).SetBootOverride(testCtx(t), c, BootPXE, false, BootModeLegacy))
	_, patches, _ = mock.snapshot()
	require.Len(t, patches, 2)
	boot, _ = patches[1].Body["Boot"].(map[string]any)
	assert.Equal(t, "Legacy", boot["BootSourceOverrideMode"])
}

// TestBootModeKeepNeverSendsLegacyToUEFI: a system reporting UEFI is never
// sent Legacy unless asked, even once a revert made it report Legacy.
func TestBootModeKeepNeverSendsLegacyToUEFI(t *testing.T) {
	l, inv, _ := startLab(t, 1)
	m := NewManager(testConfig())
	c := labBMC(inv[0])
	l.SetFault(inv[0].Name, lab.Fault{RevertModeToLegacy: true})
	err := m.SetBootOverride(testCtx(t), c, BootPXE, false, BootModeKeep)
	require.True(t, errors.Is(err, ErrOverrideReverted), "%v", err)
	l.SetFault(inv[0].Name, lab.Fault{})
	require.Equal(t, "Legacy", l.System(inv[0].Name).BootOverride().Mode)
	require.NoError(t, m.SetBootOverride(testCtx(t), c, BootDisk, false, BootModeKeep))
	assert.Equal(t, []string{"UEFI", "UEFI"}, l.System(inv[0].Name).Counts().PatchedModes)
	assert.Equal(t, "UEFI", l.System(inv[0].Name).BootOverride().Mode)
}

// TestWrongPasswordBacksOff: one login per try, never retried through
// basic auth, and the tries that reach the BMC are spaced by a doubling
// wait; another password is tried at once.
func TestWrongPasswordBacksOff(t *testing.T) {
	var mu sync.Mutex
	var posts []time.Time
	mock, c := dmtf(t, func(mock *mockBMC, w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/Sessions") {
			mu.Lock()
			posts = append(posts, time.Now())
			mu.Unlock()
		}
		return false
	})
	cfg := testConfig()
	cfg.LoginBackoff, cfg.LoginBackoffMax = 40*time.Millisecond, time.Second
	m := NewManager(cfg)
	c.Password = "wrong-password"
	nPosts := func() int { mu.Lock(); defer mu.Unlock(); return len(posts) }

	tries := 0
	for nPosts() < 4 {
		before := nPosts()
		_, err := m.PowerState(testCtx(t), c)
		tries++
		require.ErrorIs(t, err, ErrLoginRefused)
		assert.False(t, IsRetryable(err))
		assert.LessOrEqual(t, nPosts()-before, 1, "one login per try")
		if nPosts() == before {
			assert.Contains(t, err.Error(), "next attempt in")
		} else {
			assert.Contains(t, err.Error(), fmt.Sprintf("login refused (401): check the username and password; %s in the last 1 minute", plural(nPosts(), "attempt")))
		}
		time.Sleep(5 * time.Millisecond) // a caller's own retry pace
	}
	assert.Greater(t, tries, 4, "tries within the backoff never reached the BMC")
	mu.Lock()
	for i := 1; i < len(posts); i++ {
		assert.GreaterOrEqual(t, posts[i].Sub(posts[i-1]), cfg.LoginBackoff<<(i-1), "gap %d", i)
	}
	mu.Unlock()
	mock.mu.Lock()
	assert.Empty(t, mock.auths, "no request with the refused credentials through basic auth")
	mock.mu.Unlock()

	// Within the backoff, an operator's explicit request gets one login at
	// once, and the automatic try after it backs off again.
	_, err := m.PowerState(testCtx(t), c)
	require.ErrorContains(t, err, "next attempt in")
	before := nPosts()
	_, err = m.PowerState(OperatorAsked(testCtx(t)), c)
	require.ErrorIs(t, err, ErrLoginRefused)
	assert.Equal(t, before+1, nPosts(), "the operator's request reached the BMC")
	_, err = m.PowerState(testCtx(t), c)
	require.ErrorContains(t, err, "next attempt in")
	assert.Equal(t, before+1, nPosts(), "the automatic try after it waits")

	c.Password = "pw-1234"
	_, err = m.PowerState(testCtx(t), c)
	require.NoError(t, err, "a corrected password is tried at once")
}

// TestOperatorErrors: failures an operator can act on say what to do, and
// are not retried when retrying cannot help.
func TestOperatorErrors(t *testing.T) {
	var hung atomic.Int32
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hung.Add(1)
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsSrv.Close)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { silent.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			t.Cleanup(func() { conn.Close() })
		}
	}()
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}))
	_, tlsPort, _ := net.SplitHostPort(tlsSrv.Listener.Addr().String())
	badJSON, badC := dmtf(t, nil)
	badJSON.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if isSystemGET(badJSON, r) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, "<html><body>Internal firmware error</body></html>")
			return true
		}
		return false
	}

	tests := []struct {
		name      string
		c         model.BMC
		want      []string
		notWant   string
		retryable bool
	}{
		{"http to an https port", model.BMC{Endpoint: tlsSrv.URL[len("https://"):], Username: "admin", Password: "pw-1234"},
			[]string{"the BMC answers https on this port: use https://" + tlsSrv.Listener.Addr().String()}, "", false},
		{"https to an http port", model.BMC{Endpoint: "https://" + plain.Listener.Addr().String(), Username: "admin", Password: "pw-1234"},
			[]string{"the BMC answers http on this port: use http://" + plain.Listener.Addr().String()}, "", false},
		{"certificate for another name", model.BMC{Endpoint: "https://localhost:" + tlsPort, Username: "admin", Password: "pw-1234", CACertPEM: caPEM},
			[]string{"TLS certificate name mismatch", "names localhost", "certificate is for example.com, *.example.com, 127.0.0.1, ::1"}, "CA", false},
		{"hung BMC", model.BMC{Endpoint: hang.URL, Username: "admin", Password: "pw-1234"},
			[]string{"no answer within 300ms: the BMC accepted the connection and the request but did not respond"}, "", true},
		{"hung BMC, TLS", model.BMC{Endpoint: "https://" + silent.Addr().String(), Username: "admin", Password: "pw-1234"},
			[]string{"no answer within 300ms: the BMC accepted the connection but did not complete the TLS handshake"}, "", true},
		{"invalid JSON", badC, []string{"answered " + badC.Endpoint + badJSON.sysPath, `starting "<html><body>Internal firmware error`}, "invalid character", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "http to an https port" {
				tc.c.Endpoint = "http://" + tc.c.Endpoint
			}
			cfg := testConfig()
			cfg.RequestTimeout, cfg.ConnectTimeout = 300*time.Millisecond, 300*time.Millisecond
			_, err := NewManager(cfg).PowerState(testCtx(t), tc.c)
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			if tc.notWant != "" {
				assert.NotContains(t, err.Error(), tc.notWant)
			}
			assert.Equal(t, tc.retryable, IsRetryable(err), "%v", err)
		})
	}
	assert.Equal(t, int32(1), hung.Load(), "a hung BMC is asked once per operation, not once per retry")
	assert.Equal(t, int32(1), accepted.Load(), "a BMC hung in the TLS handshake is connected to once")
}

// FuzzBMCBodies: whatever a BMC answers, the JSON check passes valid JSON
// through unchanged and names the URL otherwise, and the allowed boot
// modes parse without panicking.
func FuzzBMCBodies(f *testing.F) {
	for _, s := range []string{`{"Boot":{"BootSourceOverrideMode@Redfish.AllowableValues":["UEFI","Legacy"]}}`,
		`null`, `<html>`, `{"Boot":{"BootSourceOverrideMode@Redfish.AllowableValues":"UEFI"}}`, "\x15\x03\x01\x00\x02\x02", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		_ = allowedModes(body)
		req := httptest.NewRequest(http.MethodGet, "http://bmc.example/redfish/v1/Systems/1", nil)
		resp := &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(string(body)))}
		out, err := checkJSON(req, resp)
		if err != nil {
			var je *JSONError
			require.ErrorAs(t, err, &je)
			assert.Contains(t, je.Error(), "http://bmc.example/redfish/v1/Systems/1")
			return
		}
		got, _ := io.ReadAll(out.Body)
		assert.Equal(t, body, got)
	})
}

// memSessions is a SessionStore in memory.
type memSessions struct {
	mu sync.Mutex
	m  map[string]model.BMCSession
}

func (s *memSessions) PutBMCSession(_ context.Context, x model.BMCSession) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[x.Base+x.URI] = x
	return nil
}

func (s *memSessions) DeleteBMCSession(_ context.Context, base, uri string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, base+uri)
	return nil
}

func (s *memSessions) ListBMCSessions(context.Context) ([]model.BMCSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []model.BMCSession
	for _, x := range s.m {
		out = append(out, x)
	}
	return out, nil
}

func (s *memSessions) len() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.m) }

// TestLeftoverSessionsDeletedAtStart: a Manager that dies without logging
// out leaves its session recorded; the next one deletes it on the BMC.
func TestLeftoverSessionsDeletedAtStart(t *testing.T) {
	l, inv, _ := startLab(t, 1)
	store := &memSessions{m: map[string]model.BMCSession{}}
	cfg := testConfig()
	cfg.Sessions = store
	_, err := NewManager(cfg).PowerState(testCtx(t), labBMC(inv[0]))
	require.NoError(t, err)
	require.Equal(t, 1, store.len(), "the open session is recorded")
	// The Manager is dropped without Close, as a SIGKILL would.
	NewManager(cfg).CleanupSessions(testCtx(t))
	assert.Zero(t, store.len())
	var deletes int
	for _, r := range l.Requests() {
		if r.Method == http.MethodDelete && strings.Contains(r.Path, "/Sessions/") && r.Status == http.StatusNoContent {
			deletes++
		}
	}
	assert.Equal(t, 1, deletes, "the leftover session deleted on the BMC")

	// A clean shutdown forgets what it logged out of.
	m := NewManager(cfg)
	_, err = m.PowerState(testCtx(t), labBMC(inv[0]))
	require.NoError(t, err)
	require.Equal(t, 1, store.len())
	m.Close(testCtx(t))
	assert.Zero(t, store.len())
}

func TestSessionLimit(t *testing.T) {
	t.Run("falls back to basic auth", func(t *testing.T) {
		l, inv, _ := startLab(t, 1)
		l.SetFault(inv[0].Name, lab.Fault{SessionLimit: 1})
		_, err := NewManager(testConfig()).PowerState(testCtx(t), labBMC(inv[0])) // takes the one session
		require.NoError(t, err)
		state, err := NewManager(testConfig()).PowerState(testCtx(t), labBMC(inv[0]))
		require.NoError(t, err)
		assert.Equal(t, "Off", state)
		assert.Equal(t, 2, l.System(inv[0].Name).Counts().Logins, "one refused session login, no retry of it")
	})
	t.Run("waits when basic auth is refused too", func(t *testing.T) {
		mock, c := dmtf(t, nil)
		mock.hook = func(w http.ResponseWriter, r *http.Request) bool {
			switch {
			case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/Sessions"):
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(w, `{"error":{"code":"Base.1.8.GeneralError","message":"A general error has occurred.",
"@Message.ExtendedInfo":[{"MessageId":"IDRAC.2.8.RAC0218","Message":"The maximum number of user sessions is reached."}]}}`)
				return true
			case r.Header.Get("Authorization") != "":
				redfishErr(w, http.StatusUnauthorized, "basic auth disabled")
				return true
			}
			return false
		}
		_, err := NewManager(testConfig()).PowerState(testCtx(t), c)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "session table is full (The maximum number of user sessions is reached. (400))")
		assert.Contains(t, err.Error(), "waiting, with backoff")
		assert.True(t, IsRetryable(err))
		assert.False(t, errors.Is(err, ErrLoginRefused), "a full session table is no refused password")
	})
}

// TestPowerAnswerLost: a reset whose answer is lost is never sent again
// blind; the outcome comes from the evidence the system offers.
func TestPowerAnswerLost(t *testing.T) {
	t.Run("slow reset confirmed by LastResetTime", func(t *testing.T) {
		l, inv, _ := startLab(t, 1)
		l.SetFault(inv[0].Name, lab.Fault{SlowReset: time.Hour})
		cfg := testConfig()
		cfg.RequestTimeout = 200 * time.Millisecond
		err := NewManager(cfg).Power(testCtx(t), labBMC(inv[0]), PowerOn)
		require.NoError(t, err)
		assert.Equal(t, PowerConfirmed, OutcomeOf(err))
		assert.Equal(t, 1, l.System(inv[0].Name).Counts().Resets)
		assert.Equal(t, "On", l.System(inv[0].Name).PowerState())
	})

	lostReset := func(status int, apply bool) func(mock *mockBMC, w http.ResponseWriter, r *http.Request) bool {
		return func(mock *mockBMC, w http.ResponseWriter, r *http.Request) bool {
			if r.Method != http.MethodPost || !strings.Contains(r.URL.Path, "/Actions/ComputerSystem.Reset") {
				return false
			}
			_, _ = io.Copy(io.Discard, r.Body) // so the server notices the client leave
			mock.mu.Lock()
			mock.resets = append(mock.resets, "lost")
			if apply {
				mock.power = "On" // a restart of a running system: no visible change
			}
			mock.mu.Unlock()
			if status != 0 {
				redfishErr(w, status, "internal error")
				return true
			}
			<-r.Context().Done()
			return true
		}
	}
	for _, tc := range []struct {
		name    string
		capture string // hpegen10 keeps no LastResetTime, the DMTF mockup does
		power   string
		action  PowerAction
		status  int // 0: no answer at all
		apply   bool
		want    PowerOutcome
	}{
		{"restart without evidence: unknown", "hpegen10", "On", PowerForceRestart, 0, true, PowerUnknown},
		{"restart answered 500 without evidence: unknown", "hpegen10", "On", PowerForceRestart, http.StatusInternalServerError, true, PowerUnknown},
		{"restart, LastResetTime unchanged: not done", "dmtf-public-rackmount1", "On", PowerForceRestart, 0, false, PowerNotDone},
		{"on answered 503, still off: not done", "hpegen10", "Off", PowerOn, http.StatusServiceUnavailable, false, PowerNotDone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mock := newMockBMC(t, tc.capture, "admin", "pw-1234")
			hook := lostReset(tc.status, tc.apply)
			mock.hook = func(w http.ResponseWriter, r *http.Request) bool { return hook(mock, w, r) }
			srv := httptest.NewServer(mock)
			t.Cleanup(srv.Close)
			c := model.BMC{Endpoint: srv.URL, Username: "admin", Password: "pw-1234"}
			mock.power = tc.power
			cfg := testConfig()
			cfg.RequestTimeout, cfg.PowerWaitTimeout = 200*time.Millisecond, 200*time.Millisecond
			err := NewManager(cfg).Power(testCtx(t), c, tc.action)
			require.Equal(t, tc.want, OutcomeOf(err), "%v", err)
			resets, _, _ := mock.snapshot()
			assert.Len(t, resets, 1, "the reset was sent once")
			if tc.want == PowerUnknown {
				assert.Contains(t, err.Error(), "whether it was carried out is unknown")
				assert.False(t, IsRetryable(err))
			}
		})
	}
}

// TestTransportNeverResendsAnAction: the transport retries a failed GET but
// never an action that reached the BMC, except after a 429.
func TestTransportNeverResendsAnAction(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		path   string
		status int
		want   int32 // requests the BMC saw
	}{
		{"action answered 503", http.MethodPost, "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", http.StatusServiceUnavailable, 1},
		{"action answered 429", http.MethodPost, "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", http.StatusTooManyRequests, 3},
		{"GET answered 503", http.MethodGet, "/redfish/v1/Systems/1", http.StatusServiceUnavailable, 3},
		{"action, connection dropped", http.MethodPost, "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				if tc.status == 0 {
					hj, ok := w.(http.Hijacker)
					if !ok {
						t.Error("the test server's writer cannot hijack")
						return
					}
					conn, _, _ := hj.Hijack()
					conn.Close()
					return
				}
				w.WriteHeader(tc.status)
			}))
			t.Cleanup(srv.Close)
			cfg := testConfig()
			cfg.MaxRetries = 2
			m := NewManager(cfg)
			hc, err := m.newHTTPClient(false, "")
			require.NoError(t, err)
			req, err := http.NewRequestWithContext(testCtx(t), tc.method, srv.URL+tc.path, strings.NewReader(`{"ResetType":"On"}`))
			require.NoError(t, err)
			resp, err := hc.Do(req)
			if err == nil {
				resp.Body.Close()
			} else {
				var al *AnswerLostError
				assert.ErrorAs(t, err, &al)
			}
			assert.Equal(t, tc.want, n.Load())
		})
	}
}

func TestCheckJSONPassesOversizedBodiesThrough(t *testing.T) {
	big := strings.Repeat("x", maxJSON+10)
	req := httptest.NewRequest(http.MethodGet, "http://bmc.example/redfish/v1/Systems/1", nil)
	out, err := checkJSON(req, &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(big))})
	require.NoError(t, err, "too large to check is not invalid")
	got, err := io.ReadAll(out.Body)
	require.NoError(t, err)
	assert.Equal(t, len(big), len(got))
	require.NoError(t, out.Body.Close())
}
