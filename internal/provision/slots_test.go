package provision

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// A released slot wakes the oldest machine still waiting: not one that
// already got a slot, not a forgotten one, and each waiter only once.
func TestSlotWaitersWakeOldestFirst(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "agent.db"), store.BoltOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	r := New(Config{MaxActive: 1, Logger: slog.New(slog.DiscardHandler)}, st, nil)
	for _, name := range []string{"a", "b", "c", "b", "d"} {
		r.waitForSlot(name)
	}
	r.forget("a")
	r.mu.Lock()
	r.stateOf("c").slotWaiting = false // c got a slot on its own
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
	var waiting []string
	for name, s := range r.machines {
		if s.slotWaiting {
			waiting = append(waiting, name)
		}
	}
	if len(r.slotWait) != 0 || len(waiting) != 0 {
		t.Fatalf("waiters left behind: %v %v", r.slotWait, waiting)
	}
}
