// Package backoff is the one retry timing of the agent and its clients:
// capped exponential backoff with jitter, and the server's Retry-After.
package backoff

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Exponential is the wait before retry attempt (0 for the first retry):
// base doubled per attempt up to maxWait, then drawn uniformly from
// [d/2, d]. The jitter keeps clients that failed together from retrying
// together; the floor of d/2 keeps a retry from coming back at once.
func Exponential(base, maxWait time.Duration, attempt int) time.Duration {
	d := base
	for i := 0; i < attempt && d < maxWait; i++ {
		if d > maxWait/2 {
			d = maxWait
			break
		}
		d *= 2
	}
	d = min(d, maxWait)
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// RetryAfter reads a Retry-After value, delay-seconds or an HTTP-date
// (RFC 9110, 10.2.3), as a wait from now; ok is false when v is empty or
// neither. A date already past is a wait of 0. Callers cap the wait: the
// value comes from the server.
func RetryAfter(v string, now time.Time) (wait time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0, false
		}
		// Beyond this the Duration would overflow; no cap is that long.
		if secs > int(time.Duration(1<<63-1)/time.Second) {
			secs = int(time.Duration(1<<63-1) / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(at.Sub(now), 0), true
}
