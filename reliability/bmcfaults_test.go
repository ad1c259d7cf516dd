package reliability

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/agentd"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/bmc"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/provision"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

// inProcAgent is the agent as agentd assembles it, with step timeouts
// short enough for tests, against an in-process lab whose faults the test
// injects.
type inProcAgent struct {
	lab    *lab.Lab
	labURL string
	client *client.Client
}

func newInProcAgent(t *testing.T) *inProcAgent {
	t.Helper()
	boot := testenv.FreeTCP(t)
	bootURL := "http://" + boot.Addr
	l, err := lab.New(lab.Config{Machines: 1, BootURL: bootURL, PasswordSeed: t.Name(), Logger: slog.New(slog.DiscardHandler),
		HTTPClient: &http.Client{Timeout: 10 * time.Second}})
	require.NoError(t, err)
	labSrv := httptest.NewServer(l.Handler())
	// Last in, first out: the lab's PXE clients stop before the servers.
	t.Cleanup(labSrv.Close)
	t.Cleanup(func() { _ = l.Close() })
	cfg := agentd.Defaults()
	cfg.AssetsDir = testenv.Assets(t)
	cfg.TFTPRoot = cfg.AssetsDir
	a := testenv.StartInProc(t, cfg, testenv.InProcSpec{Boot: boot.Listener()},
		agentd.WithBMC(func(c *bmc.Config) {
			c.RequestTimeout, c.PowerWaitTimeout, c.PollInterval, c.GracefulTimeout = 500*time.Millisecond, time.Second, 20*time.Millisecond, time.Second
			c.MaxRetries, c.RetryBase, c.RetryMax, c.LoginBackoff = 1, 10*time.Millisecond, 50*time.Millisecond, 100*time.Millisecond
		}),
		agentd.WithProvision(func(c *provision.Config) { c.Workers, c.PowerPollInterval = 4, -1 }),
		agentd.WithStepTimeouts(provision.StepTimeouts{Inspect: 2 * time.Second, SetBoot: 2 * time.Second, PowerOn: 2 * time.Second, PowerOff: 2 * time.Second,
			Finish: 2 * time.Second, WaitPXE: 10 * time.Second, BootInstaller: 10 * time.Second, Install: 10 * time.Second, Retries: 3},
			300*time.Millisecond, 600*time.Millisecond))
	return &inProcAgent{lab: l, labURL: labSrv.URL, client: a.Client}
}

// TestBMCFaultsThroughTheAPI covers what internal/provision's TestBMCFaults,
// TestBMCFaultWithRecovery and TestBMCFaultWithoutRecovery do not: faults
// as the API (and so the provider) sees them. While a fault lasts, GET
// shows the machine still provisioning with a last_error naming the BMC and
// the problem; a fault healed mid-retry ends provisioned with last_error
// cleared; a BMC that never recovers ends failed, and the wait the provider
// runs (client.WaitMachine) returns the last error in its message.
//
// A PowerState that lies for ever (not just a while) must not fail the
// machine: its PXE request proves it is on.
//
// Already covered in internal/provision and not repeated: boot override
// reverting (healed and permanent), ignored power actions (both), latency
// healed, power state lying for a while, 503 burst healed, refused login
// without recovery (then fixed by a spec change).
func TestBMCFaultsThroughTheAPI(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault lab.Fault
		heal  bool
		want  []string // in last_error, with "BMC <lab URL>"
		// provisions: the fault never heals and must not matter.
		provisions bool
	}{
		{"login refused, healed while retrying", lab.Fault{RefuseLogin: true}, true, []string{"401"}, false},
		{"503 for ever", lab.Fault{Fail503Next: 1 << 30}, false, []string{"503", "retried 3 times"}, false},
		{"no answer within the request timeout, for ever", lab.Fault{Latency: 3 * time.Second}, false, []string{"no answer within", "retried 3 times"}, false},
		{"power state lies for ever", lab.Fault{LiePowerStateFor: time.Hour}, false, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := newInProcAgent(t)
			ctx := context.Background()
			inv := a.lab.Inventory(a.labURL)[0]
			if _, err := a.client.CreateBootProfile(ctx, api.BootProfileRequest{Name: "os", Kernel: "vmlinuz", Initrds: []string{"initrd.img"}}); err != nil {
				t.Fatal(err)
			}
			req := api.MachineRequest{Name: inv.Name, BootProfile: "os", State: "available", MACs: []string{inv.MAC},
				BMC: api.BMCRequest{Endpoint: inv.Endpoint, Username: inv.Username, Password: inv.Password}}
			m, err := a.client.CreateMachine(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			waitFor := func(what string, timeout time.Duration, done func(*api.Machine) bool) (*api.Machine, error) {
				wctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				return a.client.WaitMachine(wctx, inv.Name, func(m *api.Machine) (bool, error) {
					if m.Phase == api.PhaseFailed && !done(m) {
						return false, errors.New("the agent marked the machine failed")
					}
					return done(m), nil
				})
			}
			if _, err := waitFor("available", 20*time.Second, func(m *api.Machine) bool { return m.Phase == api.PhaseAvailable }); err != nil {
				t.Fatalf("before the fault: %v", err)
			}
			a.lab.SetFault(inv.Name, tc.fault)
			m, err = a.client.GetMachine(ctx, inv.Name)
			if err != nil {
				t.Fatal(err)
			}
			req.State, req.Version = "provisioned", m.Version
			if _, err := a.client.UpdateMachine(ctx, inv.Name, req); err != nil {
				t.Fatal(err)
			}
			wantErr := func(le string) {
				t.Helper()
				for _, w := range append(tc.want, "BMC "+a.labURL) {
					if w == "retried 3 times" && tc.heal {
						continue
					}
					if !strings.Contains(le, w) {
						t.Errorf("last_error %q does not say %q", le, w)
					}
				}
				if strings.Contains(le, inv.Password) {
					t.Fatal("last_error holds the BMC password")
				}
			}
			if tc.heal {
				m, err := waitFor("the fault reported while retrying", 30*time.Second, func(m *api.Machine) bool {
					return m.Phase == api.PhaseProvisioning && strings.Contains(m.LastError, "retry")
				})
				if err != nil {
					t.Fatal(err)
				}
				wantErr(m.LastError)
				a.lab.SetFault(inv.Name, lab.Fault{})
				m, err = waitFor("provisioned", 30*time.Second, func(m *api.Machine) bool { return m.Phase == api.PhaseProvisioned })
				if err != nil {
					t.Fatalf("after healing: %v", err)
				}
				if m.LastError != "" {
					t.Fatalf("last_error %q after recovery", m.LastError)
				}
				return
			}
			// What the provider's create does: wait for provisioned, fail on failed.
			last, err := waitFor("provisioned", 60*time.Second, func(m *api.Machine) bool { return m.Phase == api.PhaseProvisioned })
			if tc.provisions {
				if err != nil {
					t.Fatalf("%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("provisioned through a BMC that never recovered: %+v", last)
			}
			if last == nil || last.Phase != api.PhaseFailed {
				t.Fatalf("wait ended with %v, machine %+v; want failed", err, last)
			}
			// The provider's diagnostic is built from this machine
			// (provider/resource_machine.go failureDetail: "Last error: ...").
			wantErr(last.LastError)
		})
	}
}
