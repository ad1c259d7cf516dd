package provision

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// slotFallback is how soon a machine waiting for a max-active slot looks
// again by itself (plus jitter up to as much again). A released slot wakes
// the oldest waiter at once; this only bounds the wait when that wake went
// to a machine that no longer needed the slot.
const slotFallback = 5 * time.Second

// bmcStep runs one BMC call for the machine's current step, under the
// max-active limit when active is set. On failure it records the error,
// backs off and eventually fails the machine; it reports success.
func (r *Reconciler) bmcStep(ctx context.Context, m *model.Machine, what string, timeout time.Duration, active bool, call func(context.Context) error) bool {
	if active {
		select {
		case r.sem <- struct{}{}:
			r.met.activeSteps.Inc()
			r.mu.Lock()
			r.stateOf(m.Name).slotWaiting = false
			r.mu.Unlock()
			defer func() {
				<-r.sem
				r.met.activeSteps.Dec()
				r.wakeSlotWaiter()
			}()
		default:
			r.waitForSlot(m.Name)
			return false
		}
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	err := call(cctx)
	cancel()
	if err == nil {
		r.mu.Lock()
		s := r.stateOf(m.Name)
		s.failure, s.notBefore = failure{}, time.Time{}
		r.mu.Unlock()
		if m.Status.BMCStatus != model.BMCStatusOK {
			r.recordBMCStatus(ctx, m.Name, model.BMCStatusOK)
		}
		return true
	}
	if ctx.Err() != nil {
		return false // shutting down: the step is redone by the next agent
	}
	if errors.Is(err, errStale) {
		r.q.add(m.Name)
		return false
	}
	r.stepFailed(ctx, m, what, timeout, err)
	return false
}

// waitForSlot queues name for the next released max-active slot.
func (r *Reconciler) waitForSlot(name string) {
	r.mu.Lock()
	if s := r.stateOf(name); !s.slotWaiting {
		s.slotWaiting = true
		r.slotWait = append(r.slotWait, name)
	}
	r.mu.Unlock()
	r.q.addAfter(name, slotFallback+rand.N(slotFallback))
}

// wakeSlotWaiter hands a released slot to the oldest machine still
// waiting for one. If another machine takes the slot first, the woken one
// queues again, and that machine's release wakes the next.
func (r *Reconciler) wakeSlotWaiter() {
	r.mu.Lock()
	for len(r.slotWait) > 0 {
		name := r.slotWait[0]
		r.slotWait = r.slotWait[1:]
		// A forgotten machine has no state, and is not given one again.
		if s := r.machines[name]; s != nil && s.slotWaiting {
			s.slotWaiting = false
			r.mu.Unlock()
			r.q.add(name)
			return
		}
	}
	r.slotWait = nil // release the drained backing array
	r.mu.Unlock()
}
