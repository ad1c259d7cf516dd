package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// fakeAgent serves GET /v1/machines/{name} and /v1/clusters/{name} with the
// long-poll semantics of the real agent: it answers once the object's
// revision exceeds after_revision, or when wait elapses.
type fakeAgent struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	machine *api.Machine  // nil = not found
	cluster *api.Cluster
	afters  []uint64 // after_revision of every long poll
	waits   []string
	// unavailable answers this many requests with 503 first.
	unavailable int
}

func newFakeAgent() *fakeAgent { return &fakeAgent{changed: make(chan struct{})} }

func (f *fakeAgent) setMachine(m *api.Machine) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m != nil {
		c := *m
		m = &c
	}
	f.machine = m
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	after, _ := strconv.ParseUint(r.URL.Query().Get(api.QueryAfterRevision), 10, 64)
	wait, _ := time.ParseDuration(r.URL.Query().Get(api.QueryWait))
	deadline := time.After(wait)
	for {
		f.mu.Lock()
		if f.unavailable > 0 {
			f.unavailable--
			f.mu.Unlock()
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var (
			obj any
			rev uint64
		)
		if strings.HasPrefix(r.URL.Path, "/v1/clusters/") {
			if f.cluster != nil {
				c := *f.cluster
				obj, rev = &c, c.Revision
			}
		} else if f.machine != nil {
			m := *f.machine
			obj, rev = &m, m.Revision
		}
		changed := f.changed
		if obj == nil || rev > after || wait == 0 {
			f.afters = append(f.afters, after)
			f.waits = append(f.waits, r.URL.Query().Get(api.QueryWait))
			f.mu.Unlock()
			if obj == nil {
				writeJSON(w, 404, errBody(api.CodeNotFound, "not found", ""))
				return
			}
			writeJSON(w, 200, obj)
			return
		}
		f.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			after = 0 // answer with the unchanged object, as the agent does on timeout
			wait = 0
		case <-r.Context().Done():
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (f *fakeAgent) polls() ([]uint64, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.afters...), append([]string(nil), f.waits...)
}

func newWaitClient(t *testing.T, f *fakeAgent) *Client {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c := newTestClient(t, srv.URL, nil, func(cfg *Config) { cfg.MaxRetries = 1 })
	c.pollWait = 2 * time.Second
	c.minPoll = 10 * time.Millisecond
	return c
}

func phaseIs(p api.MachinePhase) func(*api.Machine) (bool, error) {
	return func(m *api.Machine) (bool, error) { return m.Phase == p, nil }
}

func TestWaitMachineEndsOnCondition(t *testing.T) {
	f := newFakeAgent()
	f.setMachine(&api.Machine{Name: "m1", Phase: "registering", Revision: 1})
	c := newWaitClient(t, f)

	// The reconciler moves the machine along while the client waits; each
	// step starts once the client has seen the previous one.
	var seenPhases []api.MachinePhase
	done := func(m *api.Machine) (bool, error) {
		seenPhases = append(seenPhases, m.Phase)
		next := map[api.MachinePhase]api.MachinePhase{"registering": "inspecting", "inspecting": "provisioning", "provisioning": "provisioned"}[m.Phase]
		if next != "" {
			go f.setMachine(&api.Machine{Name: "m1", Phase: next, Revision: m.Revision + 1})
		}
		return m.Phase == "provisioned", nil
	}
	m, err := c.WaitMachine(context.Background(), "m1", done)
	if err != nil {
		t.Fatal(err)
	}
	if m.Phase != "provisioned" || m.Revision != 4 {
		t.Errorf("returned %s@%d, want provisioned@4", m.Phase, m.Revision)
	}
	if got := strings.Join(api.Strings(seenPhases), ","); got != "registering,inspecting,provisioning,provisioned" {
		t.Errorf("done saw %s", got)
	}
	afters, waits := f.polls()
	if fmt.Sprint(afters) != "[0 1 2 3]" {
		t.Errorf("after_revision sequence %v, want [0 1 2 3]", afters)
	}
	for _, w := range waits {
		if w != "2s" {
			t.Errorf("wait %q, want 2s", w)
		}
	}
}

func TestWaitMachineNotFound(t *testing.T) {
	f := newFakeAgent()
	f.setMachine(&api.Machine{Name: "m1", Phase: "deprovisioning", Revision: 5})
	c := newWaitClient(t, f)
	calls := 0
	m, err := c.WaitMachine(context.Background(), "m1", func(m *api.Machine) (bool, error) {
		if calls++; calls == 1 {
			go f.setMachine(nil) // the reconciler finishes the deletion
		}
		return false, nil
	})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("error %v, want ErrNotFound", err)
	}
	if m == nil || m.Phase != "deprovisioning" {
		t.Errorf("last seen %+v, want the deprovisioning machine", m)
	}
}

func TestWaitMachineDeadlineReturnsLastSeen(t *testing.T) {
	f := newFakeAgent()
	f.setMachine(&api.Machine{Name: "m1", Phase: "provisioning", Step: "waiting_pxe", LastError: "no DHCP request yet", Revision: 7})
	c := newWaitClient(t, f)
	c.pollWait = 50 * time.Millisecond

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	m, err := c.WaitMachine(ctx, "m1", phaseIs("provisioned"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want DeadlineExceeded", err)
	}
	if m == nil || m.Phase != "provisioning" || m.Revision != 7 {
		t.Fatalf("last seen %+v, want the provisioning machine", m)
	}
	want := `waiting for machine "m1": last seen in phase "provisioning", step "waiting_pxe", last error: no DHCP request yet`
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}
	if afters, _ := f.polls(); len(afters) < 2 {
		t.Errorf("only %d polls in 300ms with 50ms long polls", len(afters))
	}
}

func TestWaitMachineDoneError(t *testing.T) {
	f := newFakeAgent()
	f.setMachine(&api.Machine{Name: "m1", Phase: "failed", LastError: "BMC refused power on", Revision: 3})
	c := newWaitClient(t, f)
	boom := errors.New("machine failed")
	m, err := c.WaitMachine(context.Background(), "m1", func(m *api.Machine) (bool, error) {
		if m.Phase == "failed" {
			return false, boom
		}
		return false, nil
	})
	if !errors.Is(err, boom) || m == nil || m.LastError != "BMC refused power on" {
		t.Fatalf("got %+v, %v", m, err)
	}
}

func TestWaitMachineRidesOutAgentRestart(t *testing.T) {
	f := newFakeAgent()
	f.setMachine(&api.Machine{Name: "m1", Phase: "provisioned", Revision: 2})
	f.unavailable = 5 // more than MaxRetries, so WatchMachine itself gives up twice
	c := newWaitClient(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := c.WaitMachine(ctx, "m1", phaseIs("provisioned"))
	if err != nil || m.Phase != "provisioned" {
		t.Fatalf("got %+v, %v", m, err)
	}
}

func TestWaitMachineStopsOnPermanentError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 401, errBody(api.CodeUnauthorized, "invalid token", ""))
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil, nil)
	_, err := c.WaitMachine(context.Background(), "m1", phaseIs("provisioned"))
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("error %v, want ErrUnauthorized", err)
	}
}

// A server that ignores ?wait= must not be polled in a tight loop.
func TestWaitMachinePacesPolls(t *testing.T) {
	var (
		mu sync.Mutex
		n  int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		writeJSON(w, 200, api.Machine{Name: "m1", Phase: "provisioning", Revision: 1})
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil, nil)
	c.minPoll = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.WaitMachine(ctx, "m1", phaseIs("provisioned"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n > 10 {
		t.Errorf("%d polls in 300ms with a 50ms minimum interval", n)
	}
}

func TestWaitCluster(t *testing.T) {
	f := newFakeAgent()
	f.mu.Lock()
	f.cluster = &api.Cluster{Name: "k", Phase: "converging", Revision: 1}
	f.mu.Unlock()
	c := newWaitClient(t, f)
	cl, err := c.WaitCluster(context.Background(), "k", func(cl *api.Cluster) (bool, error) {
		if cl.Phase == "converging" {
			go func() {
				f.mu.Lock()
				f.cluster = &api.Cluster{Name: "k", Phase: "ready", Revision: 2, Endpoints: map[string][]string{"cp": {"10.0.0.5"}}}
				close(f.changed)
				f.changed = make(chan struct{})
				f.mu.Unlock()
			}()
		}
		return cl.Phase == "ready", nil
	})
	if err != nil || cl.Phase != "ready" || cl.Endpoints["cp"][0] != "10.0.0.5" {
		t.Fatalf("got %+v, %v", cl, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	c.pollWait = 30 * time.Millisecond
	cl, err = c.WaitCluster(ctx, "k", func(cl *api.Cluster) (bool, error) { return cl.Phase == "never", nil })
	if !errors.Is(err, context.DeadlineExceeded) || cl == nil || !strings.Contains(err.Error(), `cluster "k": last seen in phase "ready"`) {
		t.Fatalf("got %+v, %v", cl, err)
	}
}
