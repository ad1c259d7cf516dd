package testenv

import (
	"fmt"
	"os"
	"slices"
	"testing"
)

// Shared owns what a package's tests share (the acceptance tests' one agent
// and lab): it is started under the first test that needs it, outlives that
// test and is stopped by Close, from TestMain.
type Shared struct {
	dir      string
	keep     bool
	cleanups []func()
	failed   bool
}

// NewShared makes a shared environment whose files live in a new
// temporary directory; keep leaves that directory for a look afterwards.
func NewShared(prefix string, keep bool) (*Shared, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	return &Shared{dir: dir, keep: keep}, nil
}

// Dir is the shared environment's directory.
func (s *Shared) Dir() string { return s.dir }

// For is t as the shared environment sees it: a failure fails t, but what
// is started lives until Close, and its temporary directories are the
// environment's.
func (s *Shared) For(t testing.TB) T { return sharedT{TB: t, s: s} }

// Close stops what was started, last first; a failed run shows the logs'
// tails.
func (s *Shared) Close(failed bool) {
	s.failed = failed
	for _, f := range slices.Backward(s.cleanups) {
		f()
	}
	if !s.keep {
		_ = os.RemoveAll(s.dir)
	}
}

type sharedT struct {
	testing.TB
	s *Shared
}

func (t sharedT) Cleanup(f func()) { t.s.cleanups = append(t.s.cleanups, f) }
func (t sharedT) Failed() bool     { return t.s.failed }

// Logf writes to stderr: the test that started the environment has ended
// by the time Close runs the cleanups that log.
func (t sharedT) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func (t sharedT) TempDir() string {
	dir, err := os.MkdirTemp(t.s.dir, "")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}
