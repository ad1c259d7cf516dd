package boot

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNewValidatesConfig(t *testing.T) {
	st := openTestStore(t)
	lc := newRecordingLifecycle(st)
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "boot URL"},
		{Config{BootURL: "10.0.2.2:8081"}, "absolute http(s) URL"},
		{Config{BootURL: "http://h/${x}"}, "iPXE"},
		{Config{BootURL: "http://h", TFTPRoot: "/nonexistent/root"}, "TFTP root"},
		{Config{BootURL: "http://h", TFTPRoot: t.TempDir(), AssetsDir: "/nonexistent/assets"}, "assets directory"},
	} {
		if _, err := New(tc.cfg, st, StoreSecrets(st), lc); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error about %s", tc.cfg, err, tc.want)
		}
	}
}

func TestNewNeedsItsDependencies(t *testing.T) {
	st := openTestStore(t)
	cfg := Config{BootURL: "http://h", TFTPRoot: t.TempDir(), Logger: quietLogger()}
	for _, tc := range []struct {
		name     string
		st       Reader
		generate GenerateSecret
		lc       Lifecycle
	}{
		{"no store", nil, StoreSecrets(st), newRecordingLifecycle(st)},
		{"no secret generator", st, nil, newRecordingLifecycle(st)},
		{"no lifecycle", st, StoreSecrets(st), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(cfg, tc.st, tc.generate, tc.lc)
			require.ErrorContains(t, err, "are required")
		})
	}
}

func TestRateLimiterBoundsUnknownMACs(t *testing.T) {
	now := time.Unix(0, 0)
	r := newRateLimiter(time.Minute, 3)
	r.now = func() time.Time { return now }
	if !r.allow("a") || r.allow("a") {
		t.Fatal("second event within the interval admitted")
	}
	if !r.allow("b") || !r.allow("c") {
		t.Fatal("distinct keys refused")
	}
	if r.allow("d") {
		t.Fatal("a fourth fresh key admitted beyond the cap")
	}
	now = now.Add(time.Minute)
	if !r.allow("d") || !r.allow("a") {
		t.Fatal("keys refused after the interval")
	}
	if len(r.last) > 3 {
		t.Fatalf("limiter holds %d keys, cap 3", len(r.last))
	}
}
