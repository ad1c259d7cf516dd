package client

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// waitFor is the loop behind WaitMachine and WaitCluster: long-poll, hand
// every new state to done, resume after the revision seen.
func waitFor[T any](ctx context.Context, c *Client, kind, name string,
	watch func(ctx context.Context, after uint64) (*T, error),
	revision func(*T) uint64,
	done func(*T) (bool, error),
	describe func(*T) string,
) (*T, error) {
	var (
		last     *T
		after    uint64
		failures int
		lastErr  error
	)
	for {
		start := time.Now()
		obj, err := watch(ctx, after)
		if err != nil {
			if ctx.Err() != nil {
				return last, waitStopped(ctx, kind, name, last, describe, lastErr)
			}
			if !retryable(err, true) {
				return last, err
			}
			// WatchX already retried; an agent restart can take longer
			// than that, and giving up would fail a long apply for nothing.
			lastErr = err
			failures++
			wait := c.backoff(min(failures, 16), 0)
			c.log.LogAttrs(ctx, slog.LevelWarn, "agent unavailable while waiting, will keep trying",
				slog.String(kind, name), slog.Duration("wait", wait), slog.String("error", err.Error()))
			if !sleep(ctx, wait) {
				return last, waitStopped(ctx, kind, name, last, describe, lastErr)
			}
			continue
		}
		failures, lastErr = 0, nil
		last = obj
		ok, err := done(obj)
		if err != nil {
			return obj, err
		}
		if ok {
			return obj, nil
		}
		rev := revision(obj)
		if rev <= after && time.Since(start) < c.minPoll {
			if !sleep(ctx, c.minPoll-time.Since(start)) {
				return last, waitStopped(ctx, kind, name, last, describe, nil)
			}
		}
		after = rev
	}
}

// waitStopped explains a wait ended by ctx: what was last seen and, if the
// agent was failing at the time, why; it wraps ctx.Err().
func waitStopped[T any](ctx context.Context, kind, name string, last *T, describe func(*T) string, lastErr error) error {
	seen := "never seen"
	if last != nil {
		seen = describe(last)
	}
	if lastErr != nil {
		return fmt.Errorf("waiting for %s %q: %s; last request failed: %v: %w", kind, name, seen, lastErr, ctx.Err())
	}
	return fmt.Errorf("waiting for %s %q: %s: %w", kind, name, seen, ctx.Err())
}

// sleep waits for d or ctx, reporting false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
