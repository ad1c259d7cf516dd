package provision

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// A released slot wakes the oldest machine still waiting: not one that
// already got a slot, not a forgotten one, and each waiter only once.
func TestSlotWaitersWakeOldestFirst(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "agent.db"), store.BoltOptions{Logger: quiet()})
	must(t, err)
	t.Cleanup(func() { _ = st.Close() })
	r := New(Config{MaxActive: 1, Logger: quiet()}, st, &fakeBMC{})
	for _, name := range []string{"a", "b", "c", "b", "d"} {
		r.waitForSlot(name)
	}
	r.forget("a")
	r.mu.Lock()
	delete(r.slotWaiting, "c") // c got a slot on its own
	r.mu.Unlock()
	ready := func() []string {
		r.q.mu.Lock()
		defer r.q.mu.Unlock()
		return append([]string(nil), r.q.order...)
	}
	for _, want := range []string{"b", "d"} {
		r.wakeSlotWaiter()
		got := ready()
		if len(got) == 0 || got[len(got)-1] != want {
			t.Fatalf("after a release the ready queue is %v, want %q last", got, want)
		}
	}
	before := len(ready())
	r.wakeSlotWaiter() // nobody left
	if n := len(ready()); n != before {
		t.Fatalf("a release with no waiter readied %d machines", n-before)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.slotWait) != 0 || len(r.slotWaiting) != 0 {
		t.Fatalf("waiters left behind: %v %v", r.slotWait, r.slotWaiting)
	}
}

// With one slot and ten machines, each machine's steps start as soon as
// the previous step ends: were the waiters left to their fallback timer,
// the machines after the first could not start before slotFallback.
func TestReleasedSlotStartsTheNextMachineAtOnce(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "agent.db"), store.BoltOptions{Logger: quiet()})
	must(t, err)
	t.Cleanup(func() { _ = st.Close() })
	ctx := context.Background()
	_, err = st.CreateProfile(ctx, &model.BootProfile{Name: "os", Kernel: "vmlinuz"})
	must(t, err)
	const n = 10
	for i := 1; i <= n; i++ {
		_, err := st.CreateMachine(ctx, &model.Machine{Name: fmt.Sprintf("m%d", i), State: model.StateProvisioned, BootProfile: "os",
			MACs: []string{fmt.Sprintf("52:54:00:00:03:%02x", i)},
			BMC:  model.BMC{Endpoint: fmt.Sprintf("https://bmc.example/redfish/v1/Systems/m%d", i), Username: "u", Password: "p"}})
		must(t, err)
	}
	f := &fakeBMC{delay: 10 * time.Millisecond, st: st, power: map[string]string{}, pxe: map[string]bool{}}
	rec := New(Config{MaxActive: 1, Workers: n, PowerPollInterval: -1, Logger: quiet(),
		Timeouts: StepTimeouts{WaitPXE: 10 * time.Second}, RetryBase: 10 * time.Millisecond}, st, f)
	f.rec = rec
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- rec.Run(runCtx) }()
	defer func() {
		cancel()
		<-done
		f.wg.Wait()
	}()
	e := &env{t: t, st: st}
	e.awaitAll(model.PhaseProvisioned, 3*slotFallback)
	// Without the wake, every machine but the first would wait at least
	// slotFallback for its first slot.
	if took := time.Since(start); took >= slotFallback {
		t.Fatalf("%d machines through one slot took %s", n, took)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxActive != 1 {
		t.Fatalf("%d BMC steps ran at once, want the limit of 1", f.maxActive)
	}
}
