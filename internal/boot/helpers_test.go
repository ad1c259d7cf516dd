package boot

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

type signalRecord struct {
	Machine string
	Signal  model.Signal
	Data    map[string]string
}

// recordingLifecycle stands in for the reconciler: it records signals and
// decides callbacks the way the contract says (the run's token, once),
// against the real store.
type recordingLifecycle struct {
	st store.Store

	mu        sync.Mutex
	signals   []signalRecord
	callbacks []model.CallbackReport
	tokens    []string
	changed   chan struct{}
}

func newRecordingLifecycle(st store.Store) *recordingLifecycle {
	return &recordingLifecycle{st: st, changed: make(chan struct{}, 1)}
}

func (l *recordingLifecycle) notify() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (l *recordingLifecycle) Signal(_ context.Context, machine string, sig model.Signal, data map[string]string) {
	l.mu.Lock()
	l.signals = append(l.signals, signalRecord{machine, sig, data})
	l.mu.Unlock()
	l.notify()
}

func (l *recordingLifecycle) Callback(ctx context.Context, machine, token string, report model.CallbackReport) error {
	l.mu.Lock()
	l.tokens = append(l.tokens, token)
	l.mu.Unlock()
	_, err := l.st.UpdateMachine(ctx, machine, func(m *model.Machine) (bool, error) {
		if m.Run == nil || m.Run.TokenUsed || subtle.ConstantTimeCompare([]byte(token), []byte(m.Run.Token)) != 1 {
			return false, model.ErrTokenRejected
		}
		m.Run.TokenUsed = true
		m.Run.CallbackAt = time.Now()
		m.Status.Addresses = report.Addresses
		return false, nil
	})
	if errors.Is(err, store.ErrNotFound) {
		err = fmt.Errorf("%w: no machine %q", model.ErrTokenRejected, machine)
	}
	if err != nil {
		l.Signal(ctx, machine, model.SignalCallbackRejected, nil)
		return err
	}
	l.mu.Lock()
	l.callbacks = append(l.callbacks, report)
	l.mu.Unlock()
	l.Signal(ctx, machine, model.SignalCallbackReceived, map[string]string{"addresses": fmt.Sprint(report.Addresses)})
	return nil
}

// DeployDisks answers with the first disk and the run profile's image, as
// far as the token is good; the reconciler's choice is tested there.
func (l *recordingLifecycle) DeployDisks(ctx context.Context, machine, token string, disks []model.SeenDisk) (model.DeployTarget, error) {
	m, err := l.st.GetMachine(ctx, machine)
	if err != nil || m.Run == nil || m.Run.TokenUsed || subtle.ConstantTimeCompare([]byte(token), []byte(m.Run.Token)) != 1 {
		return model.DeployTarget{}, model.ErrTokenRejected
	}
	p, err := l.st.GetProfile(ctx, m.Run.Profile)
	if err != nil || p.Image == nil || len(disks) == 0 {
		return model.DeployTarget{}, fmt.Errorf("%w: no image or no disk", model.ErrDeployRefused)
	}
	l.Signal(ctx, machine, model.SignalDeployDisks, map[string]string{"disk": disks[0].Name})
	if m.Run.Clean != "" {
		return model.DeployTarget{Disk: disks[0], Profile: p.Name, Wipe: m.Run.Clean}, nil
	}
	return model.DeployTarget{Disk: disks[0], Image: *p.Image, Profile: p.Name}, nil
}

func (l *recordingLifecycle) DeployProgress(ctx context.Context, machine, token string, written int64, _ time.Duration) error {
	l.Signal(ctx, machine, model.SignalDeployProgress, map[string]string{"bytes_written": fmt.Sprint(written)})
	return nil
}

func (l *recordingLifecycle) recorded() []signalRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]signalRecord(nil), l.signals...)
}

func (l *recordingLifecycle) sequence(machine string) []model.Signal {
	var out []model.Signal
	for _, s := range l.recorded() {
		if s.Machine == machine {
			out = append(out, s.Signal)
		}
	}
	return out
}

// waitFor polls cond each time a signal arrives (and every 200ms) until it
// holds or the deadline passes.
func (l *recordingLifecycle) waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(d)
	for !cond() {
		select {
		case <-l.changed:
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s; signals: %+v", d, what, l.recorded())
		}
	}
}

func openTestStore(t testing.TB) store.Store {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenBolt(filepath.Join(dir, "agent.db"), store.BoltOptions{KeyFile: filepath.Join(dir, "agent.key")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func mustCreateProfile(t *testing.T, st store.Store, p *model.BootProfile) {
	t.Helper()
	if _, err := st.CreateProfile(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func mustCreateMachine(t *testing.T, st store.Store, m *model.Machine) {
	t.Helper()
	if _, err := st.CreateMachine(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// testLogger sends the server's log to the test log (shown on failure or -v).
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// as is v as a T; the test fails when it is something else.
func as[T any](t testing.TB, v any) T {
	t.Helper()
	x, ok := v.(T)
	if !ok {
		t.Fatalf("%#v is a %T, not a %T", v, v, x)
	}
	return x
}

// dig follows path (map keys and list indexes) into a decoded JSON or YAML
// document; the test fails when the document has another shape.
func dig(t testing.TB, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			v = as[map[string]any](t, v)[k]
		case int:
			l := as[[]any](t, v)
			if k >= len(l) {
				t.Fatalf("no item %d in %#v", k, l)
			}
			v = l[k]
		}
	}
	return v
}
