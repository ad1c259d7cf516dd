package provider

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/apiserver"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// testLease is the agent's lease duration in these tests: short, so a wait
// of a few seconds outlasts several leases.
const testLease = 3 * time.Second

// leaseLab is a real API server over a real bbolt store, without a
// reconciler: the test plays the reconciler by writing status itself.
type leaseLab struct {
	store *store.Bolt
	url   string
}

func newLeaseLab(t *testing.T) *leaseLab {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	st, err := store.OpenBolt(filepath.Join(dir, "agent.db"), store.BoltOptions{KeyFile: filepath.Join(dir, "seal.key"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := apiserver.NewTokenSet([]string{"lease-test-token-0123456789"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := apiserver.NewServer(apiserver.ServerConfig{Store: st, Tokens: tokens, LeaseDuration: testLease, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); st.Close() })
	return &leaseLab{store: st, url: hs.URL}
}

func (l *leaseLab) client(t *testing.T, holder string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Endpoint: l.url, Token: "lease-test-token-0123456789", LeaseHolder: holder})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// converge plays the reconciler finishing its work on the machine.
func (l *leaseLab) converge(t *testing.T, name string, phase model.Phase) {
	t.Helper()
	_, err := l.store.UpdateMachine(context.Background(), name, func(m *model.Machine) (bool, error) {
		m.Status.Phase, m.Status.ObservedVersion = phase, m.Version
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func leaseMachineRequest(name string) api.MachineRequest { //nolint:unparam // the machine's name reads at each call
	return api.MachineRequest{Name: name, State: api.StateAvailable, MACs: []string{},
		BMC: api.BMCRequest{Endpoint: "https://10.0.0.5/redfish/v1/Systems/1", Username: "admin", Password: "pw"}}
}

// TestAwaitHoldsLease: a wait several lease durations long keeps another
// writer out the whole time, and the machine is free the moment the wait
// succeeds; both when the provider learns the lease duration from its first
// renewal and when the agent's Info told it (no renewal at the start).
func TestAwaitHoldsLease(t *testing.T) {
	for _, tc := range []struct {
		name      string
		askedInfo bool
	}{
		{"duration learnt by renewing", false},
		{"duration from Info", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testAwaitHoldsLease(t, tc.askedInfo)
		})
	}
}

func testAwaitHoldsLease(t *testing.T, askInfo bool) {
	lab := newLeaseLab(t)
	ours, theirs := lab.client(t, "run-a"), lab.client(t, "run-b")
	ctx := context.Background()
	if askInfo {
		if _, err := ours.Info(ctx); err != nil {
			t.Fatal(err)
		}
		if got := ours.LeaseDuration(); got != testLease {
			t.Fatalf("LeaseDuration after Info = %s, want %s", got, testLease)
		}
	}
	m, err := ours.CreateMachine(ctx, leaseMachineRequest("m1"))
	if err != nil {
		t.Fatal(err)
	}

	const waitFor = 3*testLease + time.Second
	var (
		mu       sync.Mutex
		refused  int
		accepted []error
	)
	stopWriter := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		// Another configuration's run tries to change the machine throughout.
		defer close(writerDone)
		req := leaseMachineRequest("m1")
		req.Params = map[string]string{"note": "theirs"}
		for {
			select {
			case <-stopWriter:
				return
			case <-time.After(200 * time.Millisecond):
			}
			_, err := theirs.UpdateMachine(ctx, "m1", req)
			mu.Lock()
			if client.LeaseHeld(err) {
				refused++
			} else {
				accepted = append(accepted, err)
			}
			mu.Unlock()
		}
	}()
	time.AfterFunc(waitFor, func() {
		close(stopWriter)
		<-writerDone
		lab.converge(t, "m1", model.PhaseAvailable)
	})

	r := &machineResource{client: ours}
	var diags diag.Diagnostics
	start := time.Now()
	last := r.await(ctx, 20*time.Second, m, api.StateAvailable, "Create", &diags)
	if diags.HasError() {
		t.Fatalf("await: %v", diags)
	}
	if took := time.Since(start); took < waitFor {
		t.Fatalf("await returned after %s, before the machine converged", took)
	}
	if last.Phase != api.PhaseAvailable {
		t.Errorf("last phase %q", last.Phase)
	}
	mu.Lock()
	if len(accepted) > 0 || refused < 10 {
		t.Errorf("during the wait the other writer was refused %d times and not refused %d times (%v); want refused throughout", refused, len(accepted), accepted)
	}
	mu.Unlock()

	stored, err := lab.store.GetMachine(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if stored.Lease != nil {
		t.Errorf("lease %+v still held after a successful wait", stored.Lease)
	}
	if stored.Version != m.Version {
		t.Errorf("renewals changed the spec version %d -> %d", m.Version, stored.Version)
	}
	// Released, not merely expired: the other writer gets in at once.
	req := leaseMachineRequest("m1")
	req.Params = map[string]string{"note": "theirs"}
	if _, err := theirs.UpdateMachine(ctx, "m1", req); err != nil {
		t.Errorf("the other writer after the wait: %v", err)
	}
}

// TestAwaitLeaseLost: when another writer takes the lease anyway (say this
// run's renewals could not reach the agent until it expired), the wait ends
// at once with a diagnostic naming that writer instead of carrying on
// beside it.
func TestAwaitLeaseLost(t *testing.T) {
	lab := newLeaseLab(t)
	ours := lab.client(t, "run-a")
	ctx := context.Background()
	m, err := ours.CreateMachine(ctx, leaseMachineRequest("m1"))
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(testLease/2, func() {
		_, err := lab.store.UpdateMachine(ctx, "m1", func(m *model.Machine) (bool, error) {
			m.Lease = &model.Lease{Holder: "terraform@elsewhere:other#1", ExpiresAt: time.Now().Add(time.Hour)}
			return false, nil
		})
		if err != nil {
			t.Error(err)
		}
	})
	r := &machineResource{client: ours}
	var diags diag.Diagnostics
	start := time.Now()
	r.await(ctx, 20*time.Second, m, api.StateAvailable, "Create", &diags)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the wait went on for %s after losing the lease", took)
	}
	if !diags.HasError() {
		t.Fatal("await succeeded after losing the lease")
	}
	detail := diags[0].Detail()
	for _, want := range []string{"another writer took the lease", `"terraform@elsewhere:other#1"`, "holds its lease"} {
		if !strings.Contains(detail, want) {
			t.Errorf("diagnostic lacks %q:\n%s", want, detail)
		}
	}
}

// TestKeepLeaseWithoutHolder: a provider without a lease holder sends no
// renewals and its wait is never cut short.
func TestKeepLeaseWithoutHolder(t *testing.T) {
	lab := newLeaseLab(t)
	c := lab.client(t, "")
	if _, err := c.CreateMachine(context.Background(), leaseMachineRequest("m1")); err != nil {
		t.Fatal(err)
	}
	waitCtx, k := keepLease(context.Background(), c, "m1")
	select {
	case <-k.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the keeper kept running without a lease holder")
	}
	if err := waitCtx.Err(); err != nil {
		t.Errorf("the keeper ended the wait: %v", err)
	}
	if err := k.end(); err != nil {
		t.Errorf("end = %v, want nil", err)
	}
}
