package provision_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	. "github.com/openbaremetal/terraform-provider-baremetal/internal/provision"
)

// With one slot and ten machines, each machine's steps start as soon as
// the previous step ends: were the waiters left to their fallback timer,
// the machines after the first could not start before SlotFallback.
func TestReleasedSlotStartsTheNextMachineAtOnce(t *testing.T) {
	const n = 10
	start := time.Now()
	e, f := fakeFleet(t, n, 1, 0x03, 10*time.Millisecond)
	e.awaitAll(model.PhaseProvisioned, 3*SlotFallback)
	// Without the wake, every machine but the first would wait at least
	// SlotFallback for its first slot.
	if took := time.Since(start); took >= SlotFallback {
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
