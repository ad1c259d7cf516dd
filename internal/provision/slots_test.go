package provision

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
	const n = 10
	start := time.Now()
	e, f := fakeFleet(t, n, 1, 0x03, 10*time.Millisecond)
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

// A power-on whose outcome is unknown is not sent again: the machine goes
// on to wait for its PXE request, and the attempt is a power_action event
// with outcome unknown. One that provably did not happen is retried.
func TestPowerOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name         string
		lose, refuse int
		wantPowers   int
		wantOutcomes []string
	}{
		{"unknown: not sent again", 1, 0, 1, []string{"unknown"}},
		{"not done: sent again", 0, 1, 1, []string{"not_done", "confirmed"}},
		{"confirmed", 0, 0, 1, []string{"confirmed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f := fakeFleetOf(t, 1, 1, 0x04, &fakeBMC{lose: tc.lose, refuse: tc.refuse})
			e.awaitAll(model.PhaseProvisioned, 30*time.Second)
			f.mu.Lock()
			powers := f.powers
			f.mu.Unlock()
			require.Equal(t, tc.wantPowers, powers, "power actions carried out")
			var outcomes []string
			for _, ev := range e.events("m1") {
				if ev.Type == model.EventPowerAction {
					outcomes = append(outcomes, ev.Data["outcome"])
				}
			}
			assert.Equal(t, tc.wantOutcomes, outcomes)
		})
	}
}

// A full session table is waited out, past the step's retries.
func TestSessionLimitIsWaitedOut(t *testing.T) {
	// More failures than the step's 3 retries (the default).
	e, _ := fakeFleetOf(t, 1, 1, 0x05, &fakeBMC{sessionFull: 6})
	e.awaitAll(model.PhaseProvisioned, 30*time.Second)
	var waits int
	for _, ev := range e.events("m1") {
		if ev.Type == model.EventError {
			assert.Contains(t, ev.Message, "session table is full")
			assert.Contains(t, ev.Message, "; waiting, try ")
			waits++
		}
	}
	assert.Equal(t, 6, waits)
}
