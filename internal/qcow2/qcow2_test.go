package qcow2

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const kib = 1024

func requireQemuImg(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found; install qemu-utils", tool)
			}
			t.Skipf("%s not found; install qemu-utils", tool)
		}
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
}

// testDisk is a raw disk with what a converter can get wrong: random data,
// a run of written zeros, a hole never written, data in the last cluster,
// and a size that is not a whole number of clusters.
func testDisk(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	size := 3<<20 + 7*512
	b := make([]byte, size)
	rng := rand.New(rand.NewChaCha8([32]byte{'q', 'c', 'o', 'w'}))
	fill := func(from, to int) {
		for i := from; i < to; i++ {
			b[i] = byte(rng.Uint32())
		}
	}
	fill(0, 700*kib)        // data, ending mid-cluster
	fill(1<<20, 1<<20+4096) // a lone 4 KiB after zeros
	fill(size-1500, size)   // the tail of the last, partial cluster
	path := filepath.Join(dir, "disk.raw")
	require.NoError(t, os.WriteFile(path, b, 0o644))
	// Punch the zeros from 2 MiB on out of the file: a hole, not written zeros.
	run(t, "fallocate", "--punch-hole", "--offset", "2097152", "--length", "1048576", path)
	return path, b
}

func convert(t *testing.T, path string) ([]byte, [32]byte, *Image) {
	t.Helper()
	out, sum, im := convertFile(t, path)
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	return got, sum, im
}

// convertFile writes the qcow2 image at path as a raw file (sparse where
// the image reads as zeros) and returns its path and SHA-256.
func convertFile(t *testing.T, path string) (string, [32]byte, *Image) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	fi, err := f.Stat()
	require.NoError(t, err)
	im, err := Open(f, fi.Size())
	require.NoError(t, err)
	out := filepath.Join(t.TempDir(), "out.raw")
	dst, err := os.Create(out)
	require.NoError(t, err)
	defer dst.Close()
	h := sha256.New()
	require.NoError(t, im.WriteRaw(dst, h))
	require.NoError(t, dst.Truncate(im.Size()))
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return out, sum, im
}

func TestWriteRawMatchesQemuImg(t *testing.T) {
	requireQemuImg(t)
	dir := t.TempDir()
	raw, want := testDisk(t, dir)
	tests := []struct {
		name string
		args []string // qemu-img convert options
		// zeroes writes zero clusters with qemu-io after the conversion
		// (v3 zero flag, or in v2 a deallocation).
		zeroes bool
	}{
		{name: "v2", args: []string{"-o", "compat=0.10"}},
		{name: "v3", args: []string{"-o", "compat=1.1"}},
		{name: "v2 compressed", args: []string{"-c", "-o", "compat=0.10"}},
		{name: "v3 compressed", args: []string{"-c"}},
		{name: "v3 compressed 512-byte clusters", args: []string{"-c", "-o", "cluster_size=512"}},
		{name: "v3 2 MiB clusters", args: []string{"-o", "cluster_size=2M"}},
		{name: "v3 4 KiB clusters", args: []string{"-o", "cluster_size=4096"}},
		{name: "v3 preallocated metadata", args: []string{"-o", "preallocation=metadata"}},
		{name: "v3 zero clusters", args: []string{"-o", "compat=1.1"}, zeroes: true},
		{name: "v2 zeroed clusters", args: []string{"-o", "compat=0.10"}, zeroes: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := filepath.Join(t.TempDir(), "img.qcow2")
			run(t, "qemu-img", append(append([]string{"convert", "-q", "-f", "raw", "-O", "qcow2"}, tt.args...), raw, q)...)
			w := want
			if tt.zeroes {
				// Zero 64 KiB of the data at 128 KiB: QEMU writes v3 zero
				// clusters (flag 1), and in v2 deallocates them.
				run(t, "qemu-io", "-f", "qcow2", "-c", "write -z 131072 65536", q)
				w = bytes.Clone(want)
				clear(w[128*kib : 192*kib])
			}
			check := exec.Command("qemu-img", "check", "-q", q)
			out, err := check.CombinedOutput()
			require.NoError(t, err, "qemu-img check: %s", out)

			got, sum, im := convert(t, q)
			assert.Equal(t, int64(len(w)), im.Size())
			require.True(t, bytes.Equal(w, got), "the raw output differs from the disk")
			assert.Equal(t, sha256.Sum256(w), sum, "the hash is not of the raw output")

			// qemu-img's own conversion back to raw agrees.
			back := filepath.Join(t.TempDir(), "back.raw")
			run(t, "qemu-img", "convert", "-q", "-f", "qcow2", "-O", "raw", q, back)
			ref, err := os.ReadFile(back)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(ref, got), "differs from qemu-img convert -O raw")
		})
	}
}

// TestWriteRawIsSparse checks that clusters reading as zeros are not
// written: a 1 GiB image with 1 MiB of data converts to a file using
// about that much disk.
func TestWriteRawIsSparse(t *testing.T) {
	requireQemuImg(t)
	q := filepath.Join(t.TempDir(), "big.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", q, "1G")
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 512M 1M", q)
	out, _, _ := convertFile(t, q)
	dst, err := os.Open(out)
	require.NoError(t, err)
	defer dst.Close()
	st, err := dst.Stat()
	require.NoError(t, err)
	assert.Equal(t, int64(1<<30), st.Size())
	used := blocksUsed(t, out)
	assert.Less(t, used, int64(4<<20), "the raw output uses %d bytes of disk", used)
	b := make([]byte, 2)
	_, err = dst.ReadAt(b, 512<<20+100)
	require.NoError(t, err)
	assert.Equal(t, []byte{0x5a, 0x5a}, b)
}

func blocksUsed(t *testing.T, path string) int64 {
	t.Helper()
	out, err := exec.Command("du", "-B1", path).Output()
	require.NoError(t, err)
	var n int64
	_, err = fmt.Sscan(strings.Fields(string(out))[0], &n)
	require.NoError(t, err)
	return n
}

func TestOpenRefuses(t *testing.T) {
	requireQemuImg(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", base, "1M")
	valid, err := os.ReadFile(base)
	require.NoError(t, err)
	patch := func(off int, v uint64, width int) []byte {
		b := bytes.Clone(valid)
		switch width {
		case 4:
			binary.BigEndian.PutUint32(b[off:], uint32(v))
		case 8:
			binary.BigEndian.PutUint64(b[off:], v)
		}
		return b
	}
	tests := []struct {
		name   string
		create []string // qemu-img create arguments, else file
		file   []byte
		want   string
	}{
		{name: "backing file", create: []string{"-b", base, "-F", "qcow2"}, want: "unsupported qcow2 feature: backing file"},
		{name: "encryption", create: []string{"--object", "secret,id=s0,data=secret-pass", "-o", "encrypt.format=luks,encrypt.key-secret=s0"},
			want: "unsupported qcow2 feature: encryption"},
		{name: "external data file", create: []string{"-o", "data_file=" + filepath.Join(dir, "data.raw")}, want: "unsupported qcow2 feature: external data file"},
		{name: "extended L2", create: []string{"-o", "extended_l2=on"}, want: "unsupported qcow2 feature: extended L2 entries"},
		{name: "zstd compression", create: []string{"-o", "compression_type=zstd"}, want: "unsupported qcow2 feature: zstd compression type"},
		{name: "not qcow2", file: bytes.Repeat([]byte("raw disk "), 100), want: "corrupt qcow2 image: no qcow2 magic"},
		{name: "short", file: valid[:40], want: "corrupt qcow2 image: 40 bytes is too short"},
		{name: "version 4", file: patch(4, 4, 4), want: "unsupported qcow2 feature: qcow2 version 4"},
		{name: "cluster_bits 8", file: patch(20, 8, 4), want: "cluster_bits 8 is outside 9..21"},
		{name: "cluster_bits 22", file: patch(20, 22, 4), want: "cluster_bits 22 is outside 9..21"},
		{name: "huge size", file: patch(24, 1<<60, 8), want: "virtual size 1152921504606846976 bytes is above 2^55"},
		{name: "size beyond L1", file: patch(24, 1<<40, 8), want: "L1 table of 1 entries cannot map 1099511627776 bytes"},
		{name: "L1 too large", file: patch(36, 1<<23, 4), want: "above QEMU's 32 MiB bound"},
		{name: "L1 outside the file", file: patch(40, 1<<40, 8), want: "L1 table offset 1099511627776 is not a cluster boundary inside"},
		{name: "L1 unaligned", file: patch(40, 65536+8, 8), want: "L1 table offset 65544 is not a cluster boundary"},
		{name: "corrupt bit", file: patch(72, 2, 8), want: "unsupported qcow2 feature: corrupt bit"},
		{name: "unknown incompatible bit", file: patch(72, 1<<20, 8), want: "unknown incompatible feature bits 0x100000"},
		{name: "header length", file: patch(100, 4096*1024, 4), want: "header length 4194304"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.file
			if tt.create != nil {
				p := filepath.Join(t.TempDir(), "x.qcow2")
				run(t, "qemu-img", append(append([]string{"create", "-q", "-f", "qcow2"}, tt.create...), p, "1M")...)
				var err error
				b, err = os.ReadFile(p)
				require.NoError(t, err)
			}
			_, err := Open(bytes.NewReader(b), int64(len(b)))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestWriteRawCorrupt covers tables that point where they must not.
func TestWriteRawCorrupt(t *testing.T) {
	requireQemuImg(t)
	dir := t.TempDir()
	q := filepath.Join(dir, "c.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", q, "1M")
	run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 8k", q)
	valid, err := os.ReadFile(q)
	require.NoError(t, err)
	l1Off := binary.BigEndian.Uint64(valid[40:])
	l2Off := binary.BigEndian.Uint64(valid[l1Off:]) & offsetMask
	tests := []struct {
		name  string
		patch func(b []byte)
		want  string
	}{
		{name: "L2 outside the file", patch: func(b []byte) { binary.BigEndian.PutUint64(b[l1Off:], 1<<63|1<<40) }, want: "L2 table at 1099511627776 is outside"},
		{name: "L2 unaligned", patch: func(b []byte) { binary.BigEndian.PutUint64(b[l1Off:], l2Off+512) }, want: "not a cluster boundary"},
		{name: "data outside the file", patch: func(b []byte) { binary.BigEndian.PutUint64(b[l2Off:], 1<<63|1<<40) }, want: "data cluster at 1099511627776 is outside"},
		{name: "reserved L2 bits", patch: func(b []byte) { binary.BigEndian.PutUint64(b[l2Off:], binary.BigEndian.Uint64(b[l2Off:])|2) }, want: "reserved bits set"},
		{name: "bad compressed data", patch: func(b []byte) { binary.BigEndian.PutUint64(b[l2Off:], 1<<62|l1Off) }, want: "does not inflate to 4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Clone(valid)
			tt.patch(b)
			im, err := Open(bytes.NewReader(b), int64(len(b)))
			if err == nil {
				err = im.WriteRaw(discard{}, sha256.New())
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

type discard struct{}

func (discard) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }
