package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLimitedHandler(t *testing.T) {
	var buf bytes.Buffer
	h := newLimitedHandler(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	now := time.Unix(1_800_000_000, 0)
	h.st.now = func() time.Time { return now }
	log := slog.New(h).With("component", "api")
	for range 3 * logBurst {
		log.Error("request failed", "remote", "192.0.2.1")
		log.Warn("token refused", "remote", "192.0.2.2")
		log.Info("served", "remote", "192.0.2.1")
	}
	log.Error("store broken") // no remote: limited by its message, apart
	lines := func(sub string) int { return strings.Count(buf.String(), sub) }
	require.Equal(t, logBurst, lines(`msg="request failed"`), "errors of one source")
	require.Equal(t, logBurst, lines("token refused"), "warnings of another source, limited apart")
	require.Equal(t, 3*logBurst, lines("msg=served"), "info lines are not limited")
	require.Equal(t, 1, lines("store broken"))
	require.Zero(t, lines("suppressed="))

	// The next window's first line says how many were dropped.
	now = now.Add(logWindow)
	buf.Reset()
	log.Error("request failed", "remote", "192.0.2.1")
	require.Contains(t, buf.String(), "suppressed=20")
	buf.Reset()
	log.Error("request failed", "remote", "192.0.2.1")
	require.NotContains(t, buf.String(), "suppressed=")
}
