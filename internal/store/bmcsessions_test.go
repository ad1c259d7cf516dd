package store

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

func TestBMCSessionsSurviveARestartSealed(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "agent.db")
	s := openTest(t, path, BoltOptions{})
	a := model.BMCSession{Base: "https://10.0.0.5", URI: "/redfish/v1/SessionService/Sessions/7", User: "root", Token: "tok-secret-7", Insecure: true}
	b := model.BMCSession{Base: "https://10.0.0.6", URI: "/redfish/v1/SessionService/Sessions/1", User: "root", Token: "tok-secret-1", CACertPEM: "pem"}
	require.NoError(t, s.PutBMCSession(ctx, a))
	require.NoError(t, s.PutBMCSession(ctx, b))
	require.NoError(t, s.DeleteBMCSession(ctx, "https://10.0.0.9", "/nope"), "forgetting an unknown session")
	require.NoError(t, s.Close())

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.False(t, bytes.Contains(raw, []byte("tok-secret")), "a session token in the data file")

	s = openTest(t, path, BoltOptions{})
	got, err := s.ListBMCSessions(ctx)
	require.NoError(t, err)
	assert.ElementsMatch(t, []model.BMCSession{a, b}, got)
	require.NoError(t, s.DeleteBMCSession(ctx, a.Base, a.URI))
	got, err = s.ListBMCSessions(ctx)
	require.NoError(t, err)
	assert.Equal(t, []model.BMCSession{b}, got)
}
