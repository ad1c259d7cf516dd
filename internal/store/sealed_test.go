package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// TestSecretParamsSealedAtRest: the secret params of the site, profiles,
// clusters and machines, and generated secrets, are sealed like BMC
// passwords: absent from the raw file, back in plaintext after a reopen,
// kept by writes that do not touch them, gone with their object.
func TestSecretParamsSealedAtRest(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "agent.db")
	s, err := OpenBolt(path, BoltOptions{Logger: quiet})
	require.NoError(t, err)
	stamp := time.Now().UnixNano()
	val := func(owner string) string { return fmt.Sprintf("%s-Zq8-%d-unlikely-bytes", owner, stamp) }

	_, err = s.UpdateSite(ctx, func(site *model.Site) error {
		site.Params = map[string]string{"ntp": "ntp.example"}
		site.SecretParams = model.Secrets{"join": val("site")}
		return nil
	})
	require.NoError(t, err)
	for _, n := range []string{"p1", "p2"} {
		_, err = s.CreateProfile(ctx, &model.BootProfile{Name: n, Kernel: "k", SecretParams: model.Secrets{"join": val(n)}})
		require.NoError(t, err)
	}
	_, err = s.CreateCluster(ctx, &model.Cluster{Name: "c1", SecretParams: model.Secrets{"join": val("c1")}})
	require.NoError(t, err)
	m := testMachine("m1")
	m.SecretParams = model.Secrets{"join": val("m1")}
	_, err = s.CreateMachine(ctx, m)
	require.NoError(t, err)
	gen, created, err := EnsureGeneratedSecret(ctx, s, "m1", "root")
	require.NoError(t, err)
	require.True(t, created)
	again, created, err := EnsureGeneratedSecret(ctx, s, "m1", "root")
	require.NoError(t, err)
	assert.False(t, created)
	assert.Equal(t, gen, again)

	// Writes that do not touch the secrets keep them.
	_, err = s.UpdateProfile(ctx, "p1", func(p *model.BootProfile) error { p.Cmdline = "quiet"; return nil })
	require.NoError(t, err)
	_, err = s.UpdateMachine(ctx, "m1", func(m *model.Machine) (bool, error) { m.Status.Phase = model.PhaseProvisioning; return false, nil })
	require.NoError(t, err)
	require.NoError(t, s.DeleteProfile(ctx, "p2", nil))
	require.NoError(t, s.Close())

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, sec := range []string{val("site"), val("p1"), val("p2"), val("c1"), val("m1"), gen} {
		assert.False(t, bytes.Contains(raw, []byte(sec)), "the file holds %q", sec)
	}
	require.True(t, bytes.Contains(raw, []byte("ntp.example")), "the site params are in the file: the search looked in the right place")

	s, err = OpenBolt(path, BoltOptions{Logger: quiet})
	require.NoError(t, err)
	defer s.Close()
	site, err := s.GetSite(ctx)
	require.NoError(t, err)
	assert.Equal(t, model.Secrets{"join": val("site")}, site.SecretParams)
	assert.Equal(t, uint64(1), site.Version)
	p, err := s.GetProfile(ctx, "p1")
	require.NoError(t, err)
	assert.Equal(t, model.Secrets{"join": val("p1")}, p.SecretParams)
	assert.Equal(t, "quiet", p.Cmdline)
	ps, err := s.ListProfiles(ctx)
	require.NoError(t, err)
	require.Len(t, ps, 1)
	assert.Equal(t, model.Secrets{"join": val("p1")}, ps[0].SecretParams)
	c, err := s.GetCluster(ctx, "c1")
	require.NoError(t, err)
	assert.Equal(t, model.Secrets{"join": val("c1")}, c.SecretParams)
	got, err := s.GetMachine(ctx, "m1")
	require.NoError(t, err)
	assert.Equal(t, model.Secrets{"join": val("m1")}, got.SecretParams)
	assert.Equal(t, model.Secrets{"root": gen}, got.GeneratedSecrets)

	// p2's sealed blob went with it: a new p2 starts without secrets.
	_, err = s.CreateProfile(ctx, &model.BootProfile{Name: "p2", Kernel: "k"})
	require.NoError(t, err)
	p2, err := s.GetProfile(ctx, "p2")
	require.NoError(t, err)
	assert.Empty(t, p2.SecretParams)

	// A blob opens only for its owner: p1's moved to p2 does not open.
	require.NoError(t, s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSealed)
		return b.Put([]byte(sealedKey(KindProfile, "p2")), b.Get([]byte(sealedKey(KindProfile, "p1"))))
	}))
	_, err = s.GetProfile(ctx, "p2")
	assert.Error(t, err)
}
