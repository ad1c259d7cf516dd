package reliability

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/apiserver"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/bmc"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/boot"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/provision"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// inProcAgent is the agent wired as agent/serve.go wires it (bolt store
// with a seal key, BMC manager, reconciler, boot HTTP edge, API server),
// with step timeouts short enough for tests, against an in-process lab
// whose faults the test injects.
type inProcAgent struct {
	lab    *lab.Lab
	labURL string
	client *client.Client
}

func newInProcAgent(t *testing.T) *inProcAgent {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("RELIABILITY_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	assets := filepath.Join(dir, "assets")
	if err := os.MkdirAll(assets, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if err := os.WriteFile(filepath.Join(assets, f), []byte(strings.Repeat("k", 4096)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st, err := store.OpenBolt(filepath.Join(dir, "agent.db"), store.BoltOptions{KeyFile: filepath.Join(dir, "seal.key"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	var bootHandler atomic.Pointer[http.Handler]
	bootSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*bootHandler.Load()).ServeHTTP(w, r) }))
	l, err := lab.New(lab.Config{Machines: 1, BootURL: bootSrv.URL, PasswordSeed: t.Name(), Logger: log,
		HTTPClient: &http.Client{Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	labSrv := httptest.NewServer(l.Handler())
	mgr := bmc.NewManager(bmc.Config{RequestTimeout: 500 * time.Millisecond, PowerWaitTimeout: time.Second, PollInterval: 20 * time.Millisecond,
		GracefulTimeout: time.Second, MaxRetries: 1, RetryBase: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		LoginBackoff: 100 * time.Millisecond, Logger: log})
	rec := provision.New(provision.Config{Workers: 4, PowerPollInterval: -1,
		Timeouts: provision.StepTimeouts{Inspect: 2 * time.Second, SetBoot: 2 * time.Second, PowerOn: 2 * time.Second, PowerOff: 2 * time.Second,
			Finish: 2 * time.Second, WaitPXE: 10 * time.Second, BootInstaller: 10 * time.Second, Install: 10 * time.Second, Retries: 3},
		RetryBase: 300 * time.Millisecond, RetryMax: 600 * time.Millisecond, Logger: log}, st, mgr)
	b, err := boot.New(boot.Config{BootURL: bootSrv.URL, AssetsDir: assets, TFTPRoot: assets, Logger: log}, st, rec)
	if err != nil {
		t.Fatal(err)
	}
	h := b.HTTPHandler()
	bootHandler.Store(&h)
	tokenFile := filepath.Join(dir, "tokens")
	token := randomHex(16)
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := apiserver.LoadTokenFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := apiserver.NewServer(apiserver.ServerConfig{Store: st, Actions: rec, Tokens: tokens, BootURL: bootSrv.URL, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	apiSrv := httptest.NewTLSServer(srv.Handler())
	c, err := client.New(client.Config{Endpoint: apiSrv.URL, Token: token, HTTPClient: apiSrv.Client(), LeaseHolder: "reliability-test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	// Last in, first out: the reconciler stops, then the lab's PXE clients,
	// then the servers, then the store.
	t.Cleanup(func() { st.Close() })
	t.Cleanup(bootSrv.Close)
	t.Cleanup(labSrv.Close)
	t.Cleanup(apiSrv.Close)
	t.Cleanup(func() { _ = l.Close() })
	t.Cleanup(func() {
		srv.StopWaiting()
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("the reconciler did not stop")
		}
		mgr.Close(context.Background())
	})
	return &inProcAgent{lab: l, labURL: labSrv.URL, client: c}
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
					if m.Phase == string(model.PhaseFailed) && !done(m) {
						return false, errors.New("the agent marked the machine failed")
					}
					return done(m), nil
				})
			}
			if _, err := waitFor("available", 20*time.Second, func(m *api.Machine) bool { return m.Phase == string(model.PhaseAvailable) }); err != nil {
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
					return m.Phase == string(model.PhaseProvisioning) && strings.Contains(m.LastError, "retry")
				})
				if err != nil {
					t.Fatal(err)
				}
				wantErr(m.LastError)
				a.lab.SetFault(inv.Name, lab.Fault{})
				m, err = waitFor("provisioned", 30*time.Second, func(m *api.Machine) bool { return m.Phase == string(model.PhaseProvisioned) })
				if err != nil {
					t.Fatalf("after healing: %v", err)
				}
				if m.LastError != "" {
					t.Fatalf("last_error %q after recovery", m.LastError)
				}
				return
			}
			// What the provider's create does: wait for provisioned, fail on failed.
			last, err := waitFor("provisioned", 60*time.Second, func(m *api.Machine) bool { return m.Phase == string(model.PhaseProvisioned) })
			if tc.provisions {
				if err != nil {
					t.Fatalf("%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("provisioned through a BMC that never recovered: %+v", last)
			}
			if last == nil || last.Phase != string(model.PhaseFailed) {
				t.Fatalf("wait ended with %v, machine %+v; want failed", err, last)
			}
			// The provider's diagnostic is built from this machine
			// (provider/resource_machine.go failureDetail: "Last error: ...").
			wantErr(last.LastError)
		})
	}
}
