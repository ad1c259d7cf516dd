package reliability

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
)

// faultSite is the real agent process against a lab served in the test
// process, so the test reads what the BMC was asked (lab.System.Counts,
// the request log) while the agent drives it.
type faultSite struct {
	*site
	lab    *lab.Lab
	labURL string
	sys    *lab.System
	entry  lab.InventoryEntry
}

func newFaultSite(t *testing.T, agentArgs ...string) *faultSite {
	t.Helper()
	s := newSite(t, siteOpts{agentArgs: agentArgs})
	l, err := lab.New(lab.Config{Machines: 1, BootURL: s.bootURL, PasswordSeed: t.Name(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), HTTPClient: &http.Client{Timeout: 10 * time.Second}})
	require.NoError(t, err)
	srv := httptest.NewServer(l.Handler())
	// Last in, first out: the lab's PXE clients stop before its server.
	t.Cleanup(srv.Close)
	t.Cleanup(func() { _ = l.Close() })
	e := l.Inventory(srv.URL)[0]
	s.profile("os")
	return &faultSite{site: s, lab: l, labURL: srv.URL, sys: l.System(e.Name), entry: e}
}

// create registers the lab's machine, in the desired state given, with
// password pass ("" for the right one).
func (f *faultSite) create(state api.DesiredState, pass string) {
	f.t.Helper()
	if pass == "" {
		pass = f.entry.Password
	}
	req := api.MachineRequest{Name: f.entry.Name, BootProfile: "os", State: state, MACs: []string{f.entry.MAC},
		BMC: api.BMCRequest{Endpoint: f.entry.Endpoint, Username: f.entry.Username, Password: pass}}
	_, err := f.client.CreateMachine(context.Background(), req)
	require.NoError(f.t, err)
}

func (f *faultSite) machine() *api.Machine {
	f.t.Helper()
	m, err := f.client.GetMachine(context.Background(), f.entry.Name)
	require.NoError(f.t, err)
	return m
}

// awaitMachine waits until cond holds for the machine.
func (f *faultSite) awaitMachine(what string, timeout time.Duration, cond func(m *api.Machine) bool) *api.Machine {
	f.t.Helper()
	var last *api.Machine
	awaitT(f.t, what, timeout, func() (bool, string) {
		last = f.machine()
		return cond(last), string(last.Phase) + "/" + string(last.Step) + ": " + last.LastError
	})
	return last
}

func (f *faultSite) powerEvents() []api.Event {
	var out []api.Event
	for _, e := range f.events(context.Background(), f.entry.Name) {
		if e.Type == api.EventPowerAction {
			out = append(out, e)
		}
	}
	return out
}

// TestSlowResetIsNotRepeated is issue 15's first acceptance: a BMC that
// carries out the reset but answers 35 s later, past the agent's default
// 30 s request timeout, gets exactly one reset, and the machine is
// provisioned. The agent runs with its default BMC settings.
func TestSlowResetIsNotRepeated(t *testing.T) {
	f := newFaultSite(t)
	f.lab.SetFault(f.entry.Name, lab.Fault{SlowReset: 35 * time.Second})
	f.create("provisioned", "")
	m := f.awaitMachine("provisioned", 3*time.Minute, func(m *api.Machine) bool {
		require.NotEqual(t, api.PhaseFailed, m.Phase, m.LastError)
		return m.Phase == api.PhaseProvisioned
	})
	assert.Empty(t, m.LastError)
	c := f.sys.Counts()
	t.Logf("at the BMC: %d resets, %d PATCHes, %d logins; power-ons %d", c.Resets, c.Patches, c.Logins, f.sys.PowerOnCount())
	assert.Equal(t, 1, c.Resets, "resets counted at the BMC")
	assert.Equal(t, 1, f.sys.PowerOnCount())
	evs := f.powerEvents()
	require.Len(t, evs, 1, "power_action events")
	assert.Equal(t, "confirmed", evs[0].Data["outcome"])
	// The 35 s answer was given up on at 30 s: the confirmation came from
	// the evidence, not the answer.
	assert.Contains(t, f.agentLog.String(), "BMC reset carried out despite the lost answer")
}

// TestModeRevertIsAnsweredWithTheDesiredMode: a BMC that reports Legacy
// after every Boot PATCH of a UEFI system is only ever sent UEFI, and the
// machine fails naming the field and what it reverted to.
func TestModeRevertIsAnsweredWithTheDesiredMode(t *testing.T) {
	f := newFaultSite(t, "--step-retries", "1")
	f.lab.SetFault(f.entry.Name, lab.Fault{RevertModeToLegacy: true})
	f.create("provisioned", "")
	m := f.awaitMachine("failed", time.Minute, func(m *api.Machine) bool { return m.Phase == api.PhaseFailed })
	assert.Contains(t, m.LastError, `reverted BootSourceOverrideMode to "Legacy" (sent "UEFI")`)
	c := f.sys.Counts()
	t.Logf("at the BMC: %d PATCHes with modes %v, %d resets, %d logins; last_error: %s", c.Patches, c.PatchedModes, c.Resets, c.Logins, m.LastError)
	assert.Equal(t, 2, c.Patches, "one PATCH and one step retry")
	assert.Equal(t, []string{"UEFI", "UEFI"}, c.PatchedModes)
	assert.Zero(t, c.Resets, "no power action on a machine whose boot override did not hold")
}

// TestWrongPasswordDoesNotLockTheAccount: a BMC that locks an account after
// five failed logins gets at most one per attempt of the agent, with
// growing gaps, so the registration's attempts do not lock it, and the
// corrected password works at once.
func TestWrongPasswordDoesNotLockTheAccount(t *testing.T) {
	const backoff = 500 * time.Millisecond
	f := newFaultSite(t, "--step-retries", "3", "--bmc-login-backoff", backoff.String())
	f.lab.SetFault(f.entry.Name, lab.Fault{LockoutAfter: 5})
	f.create("available", "wrong-password")
	m := f.awaitMachine("failed", time.Minute, func(m *api.Machine) bool { return m.Phase == api.PhaseFailed })
	assert.Contains(t, m.LastError, "login refused (401): check the username and password; ")
	assert.Regexp(t, `\d attempts? in the last 1 minute`, m.LastError)
	assert.NotContains(t, m.LastError, "wrong-password")

	c := f.sys.Counts()
	assert.Equal(t, c.Logins, c.FailedLogins, "every failed login was a session login: none through basic auth")
	assert.LessOrEqual(t, c.FailedLogins, 4, "at most one failed login per attempt (1 + 3 retries)")
	var at []time.Time
	for _, r := range f.lab.Requests() {
		if r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/Sessions") {
			at = append(at, r.Start)
		}
	}
	require.Len(t, at, c.Logins)
	t.Logf("failed logins at the BMC: %d; last_error: %s", c.FailedLogins, m.LastError)
	for i := 1; i < len(at); i++ {
		t.Logf("gap before login %d: %s", i+1, at[i].Sub(at[i-1]).Round(time.Millisecond))
		assert.GreaterOrEqual(t, at[i].Sub(at[i-1]), backoff<<(i-1), "gap before login %d", i+1)
	}

	req := api.MachineRequest{Name: f.entry.Name, BootProfile: "os", State: "available", MACs: []string{f.entry.MAC}, Version: m.Version,
		BMC: api.BMCRequest{Endpoint: f.entry.Endpoint, Username: f.entry.Username, Password: f.entry.Password}}
	_, err := f.client.UpdateMachine(context.Background(), f.entry.Name, req)
	require.NoError(t, err)
	f.awaitMachine("available with the right password", time.Minute, func(m *api.Machine) bool { return m.Phase == api.PhaseAvailable })
}

// TestBMCFaultsCountedAtTheBMC drives the real agent against each of the
// lab's other issue 15 faults and counts at the BMC what it was sent.
func TestBMCFaultsCountedAtTheBMC(t *testing.T) {
	const reqTimeout = 2 * time.Second
	tests := []struct {
		name  string
		fault lab.Fault
		state string // asked of the machine
		// before runs against the lab before the machine is registered.
		before func(t *testing.T, f *faultSite)
		// within is how long the machine may take to satisfy done.
		within time.Duration
		done   func(m *api.Machine) bool
		check  func(t *testing.T, f *faultSite, m *api.Machine, c lab.Counts)
	}{
		{
			name: "hang: last_error within twice the request timeout", fault: lab.Fault{Hang: true}, state: "available",
			within: 2 * reqTimeout, done: func(m *api.Machine) bool { return m.LastError != "" },
			check: func(t *testing.T, f *faultSite, m *api.Machine, c lab.Counts) {
				assert.Contains(t, m.LastError, "no answer within 2s: the BMC accepted the connection and the request but did not respond")
				assert.Equal(t, 1, c.Logins, "the hung login was sent once, not retried")
			},
		},
		{
			name: "bad JSON: the URL and the first bytes", fault: lab.Fault{BadJSON: true}, state: "available",
			within: time.Minute, done: func(m *api.Machine) bool { return m.LastError != "" },
			check: func(t *testing.T, f *faultSite, m *api.Machine, c lab.Counts) {
				assert.Contains(t, m.LastError, "answered "+f.entry.Endpoint)
				assert.Contains(t, m.LastError, `starting "<html><body>Internal firmware error`)
				assert.Equal(t, 1, c.Logins)
				assert.Zero(t, c.Resets+c.Patches)
			},
		},
		{
			name: "session limit: basic auth instead", fault: lab.Fault{SessionLimit: 1}, state: "provisioned",
			before: func(t *testing.T, f *faultSite) {
				// Another tool holds the BMC's only session.
				body := `{"UserName":"` + f.entry.Username + `","Password":"` + f.entry.Password + `"}`
				resp, err := http.Post(f.labURL+"/redfish/v1/SessionService/Sessions", "application/json", strings.NewReader(body))
				require.NoError(t, err)
				resp.Body.Close()
				require.Equal(t, http.StatusCreated, resp.StatusCode)
			},
			within: time.Minute, done: func(m *api.Machine) bool { return m.Phase == api.PhaseProvisioned },
			check: func(t *testing.T, f *faultSite, m *api.Machine, c lab.Counts) {
				assert.Equal(t, 2, c.Logins, "the other tool's and the agent's one refused login")
				assert.Equal(t, 1, c.Resets)
				assert.Equal(t, 2, c.Patches, "PXE, then disk")
				assert.Contains(t, f.agentLog.String(), "BMC session table full; using basic auth")
			},
		},
		{
			name: "duplicate drive links", fault: lab.Fault{DuplicateDriveLinks: 32}, state: "available",
			within: time.Minute, done: func(m *api.Machine) bool { return m.Phase == api.PhaseAvailable },
			check: func(t *testing.T, f *faultSite, m *api.Machine, c lab.Counts) {
				assert.Equal(t, 1, c.Logins)
				assert.Zero(t, c.Resets+c.Patches, "inspection neither powers nor boots the machine")
				require.NotNil(t, m.Inventory)
				t.Logf("disks reported for 32 links to one drive: %d", len(m.Inventory.Disks))
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFaultSite(t, "--bmc-request-timeout", reqTimeout.String())
			f.lab.SetFault(f.entry.Name, tc.fault)
			if tc.before != nil {
				tc.before(t, f)
			}
			f.create(api.DesiredState(tc.state), "")
			m := f.awaitMachine(tc.name, tc.within, tc.done)
			tc.check(t, f, m, f.sys.Counts())
			assert.NotContains(t, m.LastError, f.entry.Password)
		})
	}
}

// TestLeftoverSessionsDeletedAtAgentStart: an agent killed with SIGKILL
// leaves its Redfish session open; the next start deletes it on the BMC.
func TestLeftoverSessionsDeletedAtAgentStart(t *testing.T) {
	f := newFaultSite(t)
	f.create("available", "")
	f.awaitMachine("available", time.Minute, func(m *api.Machine) bool { return m.Phase == api.PhaseAvailable })
	require.Equal(t, 1, f.sys.Counts().Logins)
	f.kill()
	deletes := func() int {
		n := 0
		for _, r := range f.lab.Requests() {
			if r.Method == http.MethodDelete && strings.Contains(r.Path, "/SessionService/Sessions/") && r.Status == http.StatusNoContent {
				n++
			}
		}
		return n
	}
	require.Zero(t, deletes(), "a killed agent logs out of nothing")
	f.start()
	awaitT(t, "the leftover session deleted", 30*time.Second, func() (bool, string) { return deletes() == 1, "" })
}
