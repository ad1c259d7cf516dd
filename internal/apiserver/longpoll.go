package apiserver

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// parseLongPoll reads ?wait= (capped at api.MaxWait) and ?after_revision=.
func parseLongPoll(r *http.Request) (time.Duration, uint64, error) {
	q := r.URL.Query()
	var wait time.Duration
	if v := q.Get(api.QueryWait); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return 0, 0, badRequest(api.QueryWait, "wait must be a non-negative Go duration such as 30s, not %q", v)
		}
		wait = min(d, api.MaxWait)
	}
	var after uint64
	if v := q.Get(api.QueryAfterRevision); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, badRequest(api.QueryAfterRevision, "after_revision must be a non-negative integer, not %q", v)
		}
		after = n
	}
	return wait, after, nil
}

// longPoll calls poll until it reports done, then returns (true, nil). It
// re-polls after each store change that relevant accepts (and after a
// resync), for at most wait. When wait runs out it returns (true, nil) too,
// so the caller answers with the current state; when the client goes away
// it returns (false, nil) and the caller writes nothing. StopWaiting ends
// it like the end of wait.
//
// With settle > 0 it re-polls at most once per settle, after the first
// relevant change of each round, for polls that cost more than a change.
//
// It subscribes before the first poll, so a change that lands between the
// poll and the wait cannot be missed.
func (s *Server) longPoll(ctx context.Context, wait, settle time.Duration, relevant func(store.Change) bool, poll func() (bool, error)) (bool, error) {
	if wait <= 0 {
		_, err := poll()
		return err == nil, err
	}
	changes, cancel := s.store.Subscribe()
	defer cancel()
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	if done, err := poll(); done || err != nil {
		return err == nil, err
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var settled <-chan time.Time // non-nil while a round of changes settles
	for {
		select {
		case <-settled:
			settled = nil
			if done, err := poll(); done || err != nil {
				return err == nil, err
			}
		case <-ctx.Done():
			return false, nil
		case <-timer.C:
			return true, nil
		case <-s.stopWaiting:
			return true, nil
		case c, ok := <-changes:
			if !ok {
				// The store is closing (agent shutdown): answer with what we have.
				return true, nil
			}
			if c.Kind != "" && !relevant(c) {
				continue
			}
			if settle > 0 {
				if settled == nil {
					settled = time.After(settle)
				}
				continue
			}
			if done, err := poll(); done || err != nil {
				return err == nil, err
			}
		}
	}
}
