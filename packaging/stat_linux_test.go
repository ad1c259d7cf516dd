package packaging

import (
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func statGID(t *testing.T, fi os.FileInfo) uint32 {
	t.Helper()
	st, ok := fi.Sys().(*syscall.Stat_t)
	require.True(t, ok)
	return st.Gid
}
