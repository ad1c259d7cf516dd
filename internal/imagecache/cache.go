// Package imagecache turns a qcow2 image into the raw disk image the
// deploy ramdisk streams, once per image, for every machine that deploys
// it.
//
// A qcow2 file cannot be written to a disk in file order (its clusters are
// anywhere, its tables anywhere else), so the agent converts it where it
// has room and time, as Ironic's conductor does with force_raw_images: it
// fetches the file once, verifies the checksum the profile gives, writes
// the raw disk sparsely under its data directory, keyed by that checksum,
// and publishes it with an atomic rename together with the raw file's own
// sha256 and size. The ramdisk then streams the raw file like any raw
// image, with its usual hash check and held-back first MiB.
package imagecache

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/qcow2"
)

// ErrPending is returned while a conversion runs longer than the caller
// waited; asking again later finds it done.
var ErrPending = errors.New("image conversion in progress")

// Raw is a converted image, ready to serve.
type Raw struct {
	Path   string
	Size   int64
	SHA256 string // hex, of the raw file
}

// Source is a qcow2 image to convert.
type Source struct {
	// Name says where the image is, for messages (never with a token).
	Name string
	// Checksum is "sha256:<hex>" or "sha512:<hex>" of the qcow2 file.
	Checksum string
	// Open fetches the qcow2 file.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// Cache converts qcow2 images into raw ones under a directory.
type Cache struct {
	dir string
	// ctx bounds every conversion: they outlive the requests that start
	// them, not the agent.
	ctx context.Context

	mu   sync.Mutex
	jobs map[string]*job
}

type job struct {
	done chan struct{}
	raw  Raw
	err  error
}

type meta struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// New opens (creating) the cache directory. Partial files that an earlier
// process left behind are removed: one agent owns its data directory.
func New(ctx context.Context, dir string) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	stale, err := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if err != nil {
		return nil, err
	}
	for _, p := range stale {
		_ = os.Remove(p)
	}
	return &Cache{dir: dir, ctx: ctx, jobs: map[string]*job{}}, nil
}

// key names the cache entry of a checksum; it is also a file name.
func key(checksum string) (string, error) {
	algo, sum, ok := strings.Cut(checksum, ":")
	if !ok || (algo != "sha256" && algo != "sha512") {
		return "", fmt.Errorf("checksum %q is not sha256:<hex> or sha512:<hex>", checksum)
	}
	if _, err := hex.DecodeString(sum); err != nil || len(sum) != map[string]int{"sha256": 64, "sha512": 128}[algo] {
		return "", fmt.Errorf("checksum %q is not sha256:<hex> or sha512:<hex>", checksum)
	}
	return algo + "-" + strings.ToLower(sum), nil
}

// Lookup returns the converted image of checksum if it is ready.
func (c *Cache) Lookup(checksum string) (Raw, bool) {
	k, err := key(checksum)
	if err != nil {
		return Raw{}, false
	}
	return c.lookup(k)
}

func (c *Cache) lookup(k string) (Raw, bool) {
	b, err := os.ReadFile(filepath.Join(c.dir, k+".json"))
	if err != nil {
		return Raw{}, false
	}
	var m meta
	if json.Unmarshal(b, &m) != nil {
		return Raw{}, false
	}
	p := filepath.Join(c.dir, k+".raw")
	if fi, err := os.Stat(p); err != nil || fi.Size() != m.Size {
		return Raw{}, false
	}
	return Raw{Path: p, Size: m.Size, SHA256: m.SHA256}, true
}

// Raw returns the raw conversion of src, starting it unless it is cached
// or already running, and waits for it until ctx is done (then
// ErrPending). Concurrent callers for one checksum share one fetch and
// one conversion. A failed conversion is not remembered: the next call
// tries again.
func (c *Cache) Raw(ctx context.Context, src Source) (Raw, error) {
	k, err := key(src.Checksum)
	if err != nil {
		return Raw{}, err
	}
	if r, ok := c.lookup(k); ok {
		return r, nil
	}
	c.mu.Lock()
	j, ok := c.jobs[k]
	if !ok {
		j = &job{done: make(chan struct{})}
		c.jobs[k] = j
		go func() {
			j.raw, j.err = c.convert(k, src)
			c.mu.Lock()
			delete(c.jobs, k)
			c.mu.Unlock()
			close(j.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-j.done:
		return j.raw, j.err
	case <-ctx.Done():
		return Raw{}, ErrPending
	}
}

// convert fetches src into a temporary file while hashing it, checks the
// checksum, writes the raw disk into another temporary file while hashing
// that, and renames both into place: the raw file, then its metadata,
// whose presence is what makes the entry ready.
func (c *Cache) convert(k string, src Source) (Raw, error) {
	ctx := c.ctx
	tmp := func(ext string) (*os.File, error) {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		return os.OpenFile(filepath.Join(c.dir, ".tmp-"+k+"-"+hex.EncodeToString(b)+ext), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	}
	in, err := tmp(".qcow2")
	if err != nil {
		return Raw{}, fmt.Errorf("image cache: %w", err)
	}
	defer func() { in.Close(); os.Remove(in.Name()) }()
	body, err := src.Open(ctx)
	if err != nil {
		return Raw{}, fmt.Errorf("fetching %s: %w", src.Name, err)
	}
	h := newHash(src.Checksum)
	n, err := io.Copy(io.MultiWriter(in, h), body)
	body.Close()
	if err != nil {
		return Raw{}, fmt.Errorf("fetching %s: %w", src.Name, err)
	}
	algo, _, _ := strings.Cut(src.Checksum, ":")
	if got := algo + ":" + hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(src.Checksum) {
		return Raw{}, fmt.Errorf("checksum mismatch for %s: want %s, got %s", src.Name, src.Checksum, got)
	}
	im, err := qcow2.Open(in, n)
	if err != nil {
		return Raw{}, fmt.Errorf("reading %s as qcow2: %w", src.Name, err)
	}
	out, err := tmp(".raw")
	if err != nil {
		return Raw{}, fmt.Errorf("image cache: %w", err)
	}
	defer func() { out.Close(); os.Remove(out.Name()) }()
	rh := sha256.New()
	if err := im.WriteRaw(out, rh); err != nil {
		return Raw{}, fmt.Errorf("converting %s to raw: %w", src.Name, err)
	}
	if err := out.Truncate(im.Size()); err != nil {
		return Raw{}, fmt.Errorf("image cache: %w", err)
	}
	if err := out.Sync(); err != nil {
		return Raw{}, fmt.Errorf("image cache: %w", err)
	}
	m := meta{Size: im.Size(), SHA256: hex.EncodeToString(rh.Sum(nil))}
	final := filepath.Join(c.dir, k+".raw")
	if err := os.Rename(out.Name(), final); err != nil {
		return Raw{}, fmt.Errorf("image cache: %w", err)
	}
	mf, err := tmp(".json")
	if err != nil {
		return Raw{}, fmt.Errorf("image cache: %w", err)
	}
	defer func() { mf.Close(); os.Remove(mf.Name()) }()
	if err := json.NewEncoder(mf).Encode(m); err != nil {
		return Raw{}, fmt.Errorf("image cache: %w", err)
	}
	if err := mf.Sync(); err != nil {
		return Raw{}, fmt.Errorf("image cache: %w", err)
	}
	if err := os.Rename(mf.Name(), filepath.Join(c.dir, k+".json")); err != nil {
		return Raw{}, fmt.Errorf("image cache: %w", err)
	}
	return Raw{Path: final, Size: m.Size, SHA256: m.SHA256}, nil
}

func newHash(checksum string) hash.Hash {
	if strings.HasPrefix(checksum, "sha512:") {
		return sha512.New()
	}
	return sha256.New()
}
