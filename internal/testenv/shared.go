package testenv

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
)

// Shared is what a package's tests share (one agent and lab for all the
// acceptance tests): started by start under the first test that asks for
// it, it outlives that test and is stopped when testenv.Main closes it
// after the run.
type Shared[E any] struct {
	prefix string
	keep   bool
	start  func(T) *E

	once     sync.Once
	v        *E
	dir      string
	cleanups []func()
	failed   bool
}

// NewShared is a shared environment whose files live in a temporary
// directory named after prefix; keep leaves it for a look afterwards.
func NewShared[E any](prefix string, keep bool, start func(T) *E) *Shared[E] {
	return &Shared[E]{prefix: prefix, keep: keep, start: start}
}

// Get starts the environment under t if no test has yet; a failure to
// start fails t, and every later test that asks.
func (s *Shared[E]) Get(t testing.TB) *E {
	t.Helper()
	s.once.Do(func() {
		dir, err := os.MkdirTemp("", s.prefix) //nolint:usetesting // shared by every test of the binary: it outlives t, and close removes it
		if err != nil {
			t.Fatal(err)
		}
		s.dir = dir
		s.v = s.start(sharedT{TB: t, dir: dir, cleanups: &s.cleanups, failed: &s.failed})
	})
	if s.v == nil {
		t.Fatal("the shared environment did not start (see the first test that asked for it)")
	}
	return s.v
}

func (s *Shared[E]) close(failed bool) {
	s.failed = failed
	for _, f := range slices.Backward(s.cleanups) {
		f()
	}
	if s.dir != "" && !s.keep {
		_ = os.RemoveAll(s.dir)
	}
}

// sharedT is the test a shared environment starts under, as the
// environment sees it: a failure fails that test, but cleanups wait for
// Main and temporary directories are the environment's.
type sharedT struct {
	testing.TB
	dir      string
	cleanups *[]func()
	failed   *bool
}

func (t sharedT) Cleanup(f func()) { *t.cleanups = append(*t.cleanups, f) }
func (t sharedT) Failed() bool     { return *t.failed }

// Logf writes to stderr: the test that started the environment has ended
// by the time Main runs the cleanups that log.
func (t sharedT) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func (t sharedT) TempDir() string {
	dir, err := os.MkdirTemp(t.dir, "")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}
