package lab

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestCallbackRetriedWhileAgentUnavailable: like lab-image/init, the
// simulated installer retries a callback the agent answered 5xx (or did not
// answer), and takes a 4xx as final.
func TestCallbackRetriedWhileAgentUnavailable(t *testing.T) {
	old := callbackPause
	callbackPause = 10 * time.Millisecond
	t.Cleanup(func() { callbackPause = old })
	for _, tc := range []struct {
		name     string
		answers  []int
		want     int
		attempts int32
	}{
		{"503 twice, then accepted", []int{503, 503, 204}, 204, 3},
		{"refused token is final", []int{403, 204}, 403, 1},
		{"gives up after the last attempt", []int{503, 503, 503, 503, 503, 204}, 503, int32(callbackAttempts)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := n.Add(1) - 1
				w.WriteHeader(tc.answers[min(int(i), len(tc.answers)-1)])
			}))
			defer srv.Close()
			got, err := postCallback(context.Background(), srv.Client(), srv.URL+"/machines/m1/callback?token=t", map[string]string{})
			if err != nil || got != tc.want || n.Load() != tc.attempts {
				t.Fatalf("status %d (err %v) after %d attempts; want %d after %d", got, err, n.Load(), tc.want, tc.attempts)
			}
		})
	}
	// An agent that is down: connection refused on every attempt.
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	if _, err := postCallback(context.Background(), http.DefaultClient, url+"/machines/m1/callback?token=secret", map[string]string{}); err == nil {
		t.Fatal("no error from a closed agent")
	} else if !agentUnreachable(err) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("a refused connection: %v (want it recognised as an unreachable agent, without the token)", err)
	}
}
