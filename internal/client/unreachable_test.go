package client

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIsUnreachable tells "no answer" from "the agent answered no".
func TestIsUnreachable(t *testing.T) {
	answering := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusNotFound)
	}))
	defer answering.Close()
	tlsAgent := httptest.NewTLSServer(http.NotFoundHandler())
	defer tlsAgent.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())

	for _, tc := range []struct {
		name     string
		endpoint string
		want     bool
	}{
		{"an HTTP answer", answering.URL, false},
		{"connection refused", closed, true},
		{"certificate not trusted", tlsAgent.URL, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{Endpoint: tc.endpoint, Token: "t", MaxRetries: -1})
			require.NoError(t, err)
			_, err = c.GetMachine(context.Background(), "m1")
			require.Error(t, err)
			assert.Equal(t, tc.want, IsUnreachable(err), "%v", err)
		})
	}
	assert.False(t, IsUnreachable(context.Canceled))
}
