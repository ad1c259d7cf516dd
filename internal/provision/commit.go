package provision

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// errStale aborts a status write whose decision was made on a machine that
// has moved on (a callback, a signal-driven step, an operator action).
var errStale = errors.New("machine changed since it was read")

// commit writes fn's change when the stored machine is still where m was
// (same phase, step, run and spec), together with the events that explain
// it, in one transaction. It reports whether the write happened; a stale
// write requeues the machine.
func (r *Reconciler) commit(ctx context.Context, m *model.Machine, fn func(x *model.Machine), evs ...model.Event) bool {
	_, err := r.commitErr(ctx, m, fn, evs...)
	return err == nil
}

// commitErr is commit returning why a write did not happen.
func (r *Reconciler) commitErr(ctx context.Context, m *model.Machine, fn func(x *model.Machine), evs ...model.Event) (*model.Machine, error) {
	return r.commitIf(ctx, m, nil, fn, evs...)
}

// commitIf is commitErr for a write that is also void unless still holds
// on the stored machine (nil: no further condition).
func (r *Reconciler) commitIf(ctx context.Context, m *model.Machine, still func(x *model.Machine) bool, fn func(x *model.Machine), evs ...model.Event) (*model.Machine, error) {
	out, err := r.writeStatus(ctx, m.Name, statusWrite{
		lock: lockWrite,
		guard: func(x *model.Machine) error {
			if !samePlace(x, m) || (still != nil && !still(x)) {
				return errStale
			}
			return nil
		},
		apply: func(x *model.Machine) (bool, []model.Event, error) {
			fn(x)
			events := make([]model.Event, len(evs))
			for i, e := range evs {
				if e.Phase == "" {
					e.Phase, e.Step = x.Status.Phase, x.Status.Step
				}
				events[i] = e
			}
			return false, events, nil
		},
		observe: m.Version,
	})
	switch {
	case err == nil:
	case errors.Is(err, errStale):
		r.q.add(m.Name)
		return nil, err
	case errors.Is(err, store.ErrNotFound):
		r.forget(m.Name)
		return nil, err
	case errors.Is(err, errUndeclared):
		// Logged by guardTransition; the next pass decides again.
		r.q.addAfter(m.Name, r.cfg.RetryBase)
		return nil, err
	default:
		if ctx.Err() == nil && !errors.Is(err, store.ErrMACInUse) {
			r.log.Error("writing machine status failed", "machine", m.Name, "err", err)
			r.q.addAfter(m.Name, r.cfg.RetryBase)
		}
		return nil, err
	}
	r.q.add(m.Name)
	return out, nil
}

// lockMode says how a status write is serialised with the machine's
// other status writes (the per-machine write lock).
type lockMode int

const (
	// lockNone: the writer does not serialise with other status writes;
	// its guard alone decides whether the write still applies.
	lockNone lockMode = iota
	// lockWrite: writeStatus holds the lock for the write.
	lockWrite
	// lockHeld: the caller already holds the lock, across more than the
	// write (the lock is not reentrant, so writeStatus must not take it).
	lockHeld
)

// statusWrite is one store write of a machine: the condition it needs on
// the stored machine, its change and the events that explain it.
type statusWrite struct {
	lock lockMode
	// guard voids the write, with its error, before apply runs; nil: none.
	guard func(x *model.Machine) error
	// apply changes the stored machine, reporting whether the spec changed
	// and the events recorded in the same transaction.
	apply func(x *model.Machine) (bool, []model.Event, error)
	// observe, if above the stored ObservedVersion, replaces it: the spec
	// version the write's decision was made on.
	observe uint64
}

// writeStatus is the only path to the store's machine writes, so that
// every write is checked against the state table (guardTransition) and
// none bypasses the write lock by accident. Each caller handles the error
// as its contract needs (a requeue, a refused callback, an operator error).
func (r *Reconciler) writeStatus(ctx context.Context, name string, w statusWrite) (*model.Machine, error) {
	if w.lock == lockWrite {
		wl := r.writeLock(name)
		wl.Lock()
		defer wl.Unlock()
	}
	out, _, err := r.st.UpdateMachineRecording(ctx, name, func(x *model.Machine) (bool, []model.Event, error) {
		if w.guard != nil {
			if err := w.guard(x); err != nil {
				return false, nil, err
			}
		}
		from := x.Status.Phase
		spec, evs, err := w.apply(x)
		if err != nil {
			return false, nil, err
		}
		if err := r.guardTransition(from, x); err != nil {
			return false, nil, err
		}
		if w.observe > x.Status.ObservedVersion {
			x.Status.ObservedVersion = w.observe
		}
		return spec, evs, nil
	})
	return out, err
}

// appendEvent records e. The write is not cancelled with ctx: an event
// describes something already done (a status write, a power action), and a
// shutdown in between must not erase the record of it.
func (r *Reconciler) appendEvent(ctx context.Context, e model.Event) {
	if _, err := r.st.AppendEvent(context.WithoutCancel(ctx), e); err != nil {
		r.log.Error("recording event failed", "machine", e.Machine, "type", e.Type, "err", err)
	}
}

// samePlace reports whether a stored machine is still at the point a
// decision was made on: same phase and step, same run (and token state),
// same spec version and deletion mark.
func samePlace(a, b *model.Machine) bool {
	return a.Status.Phase == b.Status.Phase && a.Status.Step == b.Status.Step &&
		runID(a) == runID(b) && tokenUsed(a) == tokenUsed(b) &&
		a.Version == b.Version && a.DeletionRequested.Equal(b.DeletionRequested)
}

func runID(m *model.Machine) string {
	if m.Run == nil {
		return ""
	}
	return m.Run.ID
}

func tokenUsed(m *model.Machine) bool { return m.Run != nil && m.Run.TokenUsed }

func setPhase(m *model.Machine, ph model.Phase, s model.Step, now time.Time) {
	if m.Status.Phase != ph {
		m.Status.PhaseSince = now
		// What the phase expects of the power changed: the next poll judges.
		m.Status.PowerDrift = false
	}
	m.Status.Phase, m.Status.Step = ph, s
}

func phaseEvent(m *model.Machine, ph model.Phase, s model.Step, why string) model.Event {
	from := string(m.Status.Phase)
	if m.Status.Step != "" {
		from += "/" + string(m.Status.Step)
	}
	d := map[string]string{"from": from}
	if id := runID(m); id != "" {
		d["run"] = id
	}
	return model.Event{Type: model.EventPhaseChanged, Phase: ph, Step: s, Message: why, Data: d}
}

func newRun(t target, now time.Time) (*model.Run, error) {
	id, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	tok, err := randomHex(32)
	if err != nil {
		return nil, err
	}
	return &model.Run{ID: id, Token: tok, Profile: t.Profile, ProfileVersion: t.Version, ParamsHash: t.ParamsHash, Snippets: t.Snippets, StartedAt: now, Clean: t.Clean}, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := cryptorand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return hex.EncodeToString(b), nil
}
