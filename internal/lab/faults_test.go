package lab

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawDo sends one request with a client timeout and returns the status and
// body, or the client's error.
func rawDo(t *testing.T, srv *httptest.Server, c creds, method, path, body string, timeout time.Duration) (int, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.SetBasicAuth(c.user, c.pass)
	resp, err := srv.Client().Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func login(t *testing.T, srv *httptest.Server, user, pass string) response {
	t.Helper()
	return call(t, srv, creds{}, "POST", "/redfish/v1/SessionService/Sessions", map[string]string{"UserName": user, "Password": pass})
}

func TestIssue15Faults(t *testing.T) {
	const sys = "/redfish/v1/Systems/lab-1"
	tests := []struct {
		name  string
		fault Fault
		check func(t *testing.T, l *Lab, srv *httptest.Server, c creds)
	}{
		{"slow reset: done at once, answered late", Fault{SlowReset: time.Hour}, func(t *testing.T, l *Lab, srv *httptest.Server, c creds) {
			_, _, err := rawDo(t, srv, c, "POST", sys+"/Actions/ComputerSystem.Reset", `{"ResetType":"On"}`, 300*time.Millisecond)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Equal(t, "On", l.System("lab-1").PowerState())
			assert.Equal(t, 1, l.System("lab-1").Counts().Resets)
			doc := call(t, srv, c, "GET", sys, nil).doc
			assert.NotEmpty(t, doc["LastResetTime"], "the reset shows in LastResetTime")
		}},
		{"mode reverts to Legacy after a PATCH", Fault{RevertModeToLegacy: true}, func(t *testing.T, l *Lab, srv *httptest.Server, c creds) {
			mustStatus(t, call(t, srv, c, "PATCH", sys, map[string]any{"Boot": map[string]string{
				"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "UEFI"}}), 200)
			after := call(t, srv, c, "GET", sys, nil)
			assert.Equal(t, "Legacy", get(after.doc, "Boot", "BootSourceOverrideMode"))
			assert.Equal(t, "Pxe", get(after.doc, "Boot", "BootSourceOverrideTarget"))
			got := l.System("lab-1").Counts()
			assert.Equal(t, 1, got.Patches)
			assert.Equal(t, []string{"UEFI"}, got.PatchedModes)
		}},
		{"session limit", Fault{SessionLimit: 2}, func(t *testing.T, l *Lab, srv *httptest.Server, c creds) {
			mustStatus(t, login(t, srv, c.user, c.pass), 201)
			mustStatus(t, login(t, srv, c.user, c.pass), 201)
			r := login(t, srv, c.user, c.pass)
			mustStatus(t, r, 400)
			assert.Contains(t, redfishMessageIDs(t, r)[0], "RAC0218")
			assert.Contains(t, string(r.raw), "maximum number of user sessions")
			mustStatus(t, call(t, srv, c, "GET", sys, nil), 200) // basic auth still works
			assert.Equal(t, 3, l.System("lab-1").Counts().Logins)
		}},
		{"hang", Fault{Hang: true}, func(t *testing.T, l *Lab, srv *httptest.Server, c creds) {
			_, _, err := rawDo(t, srv, c, "GET", sys, "", 200*time.Millisecond)
			require.ErrorIs(t, err, context.DeadlineExceeded)
		}},
		{"bad JSON", Fault{BadJSON: true}, func(t *testing.T, l *Lab, srv *httptest.Server, c creds) {
			status, body, err := rawDo(t, srv, c, "GET", sys, "", 5*time.Second)
			require.NoError(t, err)
			assert.Equal(t, 200, status)
			assert.True(t, strings.HasPrefix(body, "<html>"), body)
		}},
		{"lockout after 2 failed logins", Fault{LockoutAfter: 2}, func(t *testing.T, l *Lab, srv *httptest.Server, c creds) {
			mustStatus(t, login(t, srv, c.user, "wrong"), 401)
			mustStatus(t, call(t, srv, creds{user: c.user, pass: "wrong"}, "GET", sys, nil), 401)
			mustStatus(t, login(t, srv, c.user, c.pass), 401) // locked: the right password too
			mustStatus(t, call(t, srv, c, "GET", sys, nil), 401)
			got := l.System("lab-1").Counts()
			assert.Equal(t, 2, got.Logins)
			assert.Equal(t, 4, got.FailedLogins)
			l.SetFault("lab-1", Fault{})
			mustStatus(t, login(t, srv, c.user, c.pass), 201)
		}},
		{"duplicate drive links", Fault{DuplicateDriveLinks: 32}, func(t *testing.T, l *Lab, srv *httptest.Server, c creds) {
			doc := call(t, srv, c, "GET", sys+"/Storage/1", nil).doc
			drives, _ := doc["Drives"].([]any)
			require.Len(t, drives, 32)
			for _, d := range drives {
				assert.Equal(t, sys+"/Storage/1/Drives/0", get(d, "@odata.id"))
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, srv := newTestLab(t, Config{Machines: 1})
			l.SetFault("lab-1", tc.fault)
			tc.check(t, l, srv, credsOf(l, "lab-1"))
		})
	}
}

func TestRunCommandRejectsNegativeFaults(t *testing.T) {
	for _, args := range [][]string{{"--slow-reset", "-1s"}, {"--session-limit", "-1"}, {"--lockout-after", "-2"}, {"--duplicate-drive-links", "-3"}} {
		var out, errOut strings.Builder
		err := RunCommand(context.Background(), append(args, "--listen", "127.0.0.1:0", "--inventory", t.TempDir()+"/inv.json"), &out, &errOut)
		require.Error(t, err, args)
		assert.Contains(t, err.Error(), strings.TrimPrefix(args[0], "--"))
		assert.False(t, errors.Is(err, context.Canceled))
	}
}

// TestRunCommandFaultFlags: the lab command's fault flags reach every
// machine's BMC.
func TestRunCommandFaultFlags(t *testing.T) {
	inventory := t.TempDir() + "/inv.json"
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- RunCommand(ctx, []string{"--machines", "2", "--listen", "127.0.0.1:0", "--inventory", inventory,
			"--duplicate-drive-links", "3", "--session-limit", "1", "--mode-revert"}, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	eventually(t, 10*time.Second, "the ready line", func() bool { return strings.Contains(stdout.String(), "lab: serving") })
	f, err := ReadInventory(inventory)
	require.NoError(t, err)
	do := func(e InventoryEntry, method, url, body string) (int, map[string]any) {
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		require.NoError(t, err)
		if !strings.HasSuffix(url, "/Sessions") {
			req.SetBasicAuth(e.Username, e.Password)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var doc map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&doc)
		return resp.StatusCode, doc
	}
	for _, e := range f.Machines {
		_, storage := do(e, http.MethodGet, e.Endpoint+"/Storage/1", "")
		assert.Len(t, storage["Drives"], 3, e.Name)

		sessions := strings.SplitN(e.Endpoint, "/Systems/", 2)[0] + "/SessionService/Sessions"
		creds := `{"UserName":"` + e.Username + `","Password":"` + e.Password + `"}`
		first, _ := do(e, http.MethodPost, sessions, creds)
		second, _ := do(e, http.MethodPost, sessions, creds)
		assert.Equal(t, []int{201, 400}, []int{first, second}, "session limit 1 on %s", e.Name)

		status, _ := do(e, http.MethodPatch, e.Endpoint, `{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once"}}`)
		require.Equal(t, 200, status)
		_, sys := do(e, http.MethodGet, e.Endpoint, "")
		assert.Equal(t, "Legacy", get(sys, "Boot", "BootSourceOverrideMode"), e.Name)
	}
}
