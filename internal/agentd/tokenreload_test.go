package agentd

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/apiserver"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// TestTokenReloadDegraded: a reload that cannot be applied marks the agent
// degraded (the /readyz reason, the metric) and logs the error again on
// every tick until a good file loads.
func TestTokenReloadDegraded(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "tokens")
	require.NoError(t, os.WriteFile(tokenFile, []byte("0123456789abcdef0123\n"), 0o600))
	ts, err := apiserver.LoadTokenFile(tokenFile)
	require.NoError(t, err)
	st, err := store.OpenBolt(filepath.Join(dir, "agent.db"), store.BoltOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	nags := &nagCounter{}
	a := &Agent{cfg: Config{TokenFile: tokenFile}, log: slog.New(nags),
		tokenDegraded: prometheus.NewGauge(prometheus.GaugeOpts{Name: "degraded"})}
	a.api, err = apiserver.NewServer(apiserver.ServerConfig{Store: st, Tokens: ts})
	require.NoError(t, err)
	nag := tokenReloadNag
	tokenReloadNag = 20 * time.Millisecond
	t.Cleanup(func() { tokenReloadNag = nag })

	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- a.reloadTokens(ctx, hup) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("reloadTokens: %v", err)
		}
	})

	require.NoError(t, os.Chmod(tokenFile, 0o644))
	hup <- nil
	require.Eventually(t, func() bool { return nags.n.Load() >= 2 }, 5*time.Second, 10*time.Millisecond, "the failed reload is not logged again")
	require.NotNil(t, a.tokenFileProblem.Load())
	require.Contains(t, *a.tokenFileProblem.Load(), "chmod 600")
	require.Equal(t, 1.0, testutil.ToFloat64(a.tokenDegraded))

	require.NoError(t, os.Chmod(tokenFile, 0o600))
	hup <- nil
	require.Eventually(t, func() bool { return a.tokenFileProblem.Load() == nil }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 0.0, testutil.ToFloat64(a.tokenDegraded))
	before := nags.n.Load()
	time.Sleep(5 * tokenReloadNag) // nothing to await: the absence of lines is the point
	require.Equal(t, before, nags.n.Load(), "still nagging after a good file loaded")
}

// nagCounter counts the log lines that repeat a failed reload.
type nagCounter struct{ n atomic.Int32 }

func (c *nagCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *nagCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *nagCounter) WithGroup(string) slog.Handler            { return c }

func (c *nagCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "token file still not reloaded") {
		c.n.Add(1)
	}
	return nil
}
