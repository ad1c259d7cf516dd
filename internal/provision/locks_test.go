package provision

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// A cluster's lock goes once the cluster is gone, so an agent that sees
// many short-lived clusters does not keep a mutex for each.
func TestClusterLockPrunedWhenClusterGone(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "agent.db"), store.BoltOptions{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	r := New(Config{Logger: slog.New(slog.DiscardHandler)}, st, nil)
	l := r.clusterLock("gone")
	l.Lock()
	l.Unlock()
	require.Same(t, l, r.clusterLock("gone"), "a live cluster keeps its lock")

	r.reconcileCluster(context.Background(), "gone")

	r.mu.Lock()
	defer r.mu.Unlock()
	assert.Empty(t, r.clusterLocks)
}
