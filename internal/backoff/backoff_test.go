package backoff

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExponential(t *testing.T) {
	tests := []struct {
		name      string
		base, max time.Duration
		attempt   int
		lo, hi    time.Duration
	}{
		{"first retry", 100 * time.Millisecond, time.Second, 0, 50 * time.Millisecond, 100 * time.Millisecond},
		{"doubles", 100 * time.Millisecond, time.Second, 2, 200 * time.Millisecond, 400 * time.Millisecond},
		{"capped", 100 * time.Millisecond, time.Second, 10, 500 * time.Millisecond, time.Second},
		{"huge attempt", time.Second, time.Minute, 1 << 30, 30 * time.Second, time.Minute},
		{"huge cap does not overflow", time.Second, 1<<63 - 1, 80, (1<<63 - 1) / 2, 1<<63 - 1},
		{"zero base", 0, time.Second, 3, 0, 0},
		{"zero cap", time.Second, 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 200 {
				d := Exponential(tt.base, tt.max, tt.attempt)
				require.GreaterOrEqual(t, d, tt.lo)
				require.LessOrEqual(t, d, tt.hi)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"30", 30 * time.Second, true},
		{" 5 ", 5 * time.Second, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"99999999999999999999", 0, false},
		{"9223372036854775807", 9223372036 * time.Second, true},
		{"Sun, 06 Dec 2026 04:00:30 GMT", 30 * time.Second, true},
		{"Sunday, 06-Dec-26 04:01:00 GMT", time.Minute, true},
		{"Sun Dec  6 04:00:10 2026", 10 * time.Second, true},
		{"Sun, 06 Dec 2026 03:59:00 GMT", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := RetryAfter(tt.in, now)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

// FuzzRetryAfter: a server's header never panics the parser or yields a
// negative wait.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "120", "-5", "Sun, 06 Dec 2026 04:00:30 GMT", "Sun Dec  6 04:00:10 2026", "9223372036854775807", "1e9"} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, in string) {
		d, ok := RetryAfter(in, now)
		if d < 0 || (!ok && d != 0) {
			t.Fatalf("RetryAfter(%q) = %v, %v", in, d, ok)
		}
	})
}
