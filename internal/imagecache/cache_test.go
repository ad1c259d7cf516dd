package imagecache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// qcow2Of converts raw bytes to a qcow2 file with qemu-img.
func qcow2Of(t *testing.T, raw []byte, opts ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("qemu-img not found; install qemu-utils")
		}
		t.Skip("qemu-img not found; install qemu-utils")
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.raw"), filepath.Join(dir, "out.qcow2")
	require.NoError(t, os.WriteFile(in, raw, 0o644))
	cmd := exec.Command("qemu-img", append(append([]string{"convert", "-q", "-f", "raw", "-O", "qcow2"}, opts...), in, out)...)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "qemu-img: %s", b)
	q, err := os.ReadFile(out)
	require.NoError(t, err)
	return q
}

func sum256(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }

func httpSource(srv *httptest.Server, path, checksum string) Source {
	u := srv.URL + path
	return Source{Name: u, Checksum: checksum, Open: func(ctx context.Context) (io.ReadCloser, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("HTTP %s", resp.Status)
		}
		return resp.Body, nil
	}}
}

func TestRawConvertsOnceForManyMachines(t *testing.T) {
	raw := bytes.Repeat([]byte("a disk image, qcow2 in transit "), 40000)
	raw = append(raw, make([]byte, 1<<20)...)
	raw = raw[:len(raw)/512*512]
	q := qcow2Of(t, raw, "-c")
	var gets atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		<-release
		_, _ = w.Write(q)
	}))
	defer srv.Close()
	dir := t.TempDir()
	c, err := New(t.Context(), dir)
	require.NoError(t, err)
	src := httpSource(srv, "/img.qcow2", sum256(q))

	// A caller that waits less than the conversion takes is told to ask again.
	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Raw(short, src)
	require.ErrorIs(t, err, ErrPending)

	var wg sync.WaitGroup
	results := make([]Raw, 20)
	errs := make([]error, 20)
	for i := range results {
		wg.Go(func() { results[i], errs[i] = c.Raw(t.Context(), src) })
	}
	close(release)
	wg.Wait()
	for i := range results {
		require.NoError(t, errs[i])
		assert.Equal(t, results[0], results[i])
	}
	assert.Equal(t, int32(1), gets.Load(), "the qcow2 was fetched more than once")
	got := results[0]
	assert.Equal(t, int64(len(raw)), got.Size)
	assert.Equal(t, sum256(raw), "sha256:"+got.SHA256)
	b, err := os.ReadFile(got.Path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(raw, b), "the cached raw differs from the disk")

	// A new cache on the same directory (an agent restart) finds it done.
	c2, err := New(t.Context(), dir)
	require.NoError(t, err)
	again, ok := c2.Lookup(src.Checksum)
	require.True(t, ok)
	assert.Equal(t, got, again)
	left, err := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	require.NoError(t, err)
	assert.Empty(t, left, "temporary files left behind")
}

func TestRawFailures(t *testing.T) {
	raw := bytes.Repeat([]byte{7}, 256<<10)
	q := qcow2Of(t, raw)
	s512 := sha512.Sum512(q)
	backing := func() []byte {
		dir := t.TempDir()
		base := filepath.Join(dir, "base.qcow2")
		require.NoError(t, os.WriteFile(base, q, 0o644))
		over := filepath.Join(dir, "over.qcow2")
		out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", over).CombinedOutput()
		require.NoError(t, err, "%s", out)
		b, err := os.ReadFile(over)
		require.NoError(t, err)
		return b
	}()
	corrupt := bytes.Clone(q)
	copy(corrupt[20:24], []byte{0, 0, 0, 40}) // cluster_bits 40
	tests := []struct {
		name     string
		served   []byte // nil: 404
		checksum string
		want     string
	}{
		{name: "ok with sha512", served: q, checksum: "sha512:" + hex.EncodeToString(s512[:])},
		{name: "404", checksum: sum256(q), want: "fetching URL: HTTP 404 Not Found"},
		{name: "checksum mismatch", served: q, checksum: sum256([]byte("other")),
			want: "checksum mismatch for URL: want " + sum256([]byte("other")) + ", got " + sum256(q)},
		{name: "backing file", served: backing, checksum: sum256(backing), want: "reading URL as qcow2: unsupported qcow2 feature: backing file"},
		{name: "corrupt", served: corrupt, checksum: sum256(corrupt), want: "reading URL as qcow2: corrupt qcow2 image: cluster_bits 40"},
		{name: "not qcow2", served: raw, checksum: sum256(raw), want: "no qcow2 magic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.served == nil {
					http.NotFound(w, r)
					return
				}
				_, _ = w.Write(tt.served)
			}))
			defer srv.Close()
			dir := t.TempDir()
			c, err := New(t.Context(), dir)
			require.NoError(t, err)
			src := httpSource(srv, "/img.qcow2", tt.checksum)
			got, err := c.Raw(t.Context(), src)
			left, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
			assert.Empty(t, left, "temporary files left behind")
			if tt.want == "" {
				require.NoError(t, err)
				assert.Equal(t, sum256(raw), "sha256:"+got.SHA256)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), replaceURL(tt.want, src.Name))
			_, ok := c.Lookup(tt.checksum)
			assert.False(t, ok, "a failed conversion is cached")
		})
	}
}

func replaceURL(s, u string) string { return strings.ReplaceAll(s, "URL", u) }
