package boot

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// tftpFixture lays out a TFTP root next to a secret it must never serve.
type tftpFixture struct {
	root, secret string
	payload      []byte
}

func newTFTPFixture(t *testing.T) tftpFixture {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	must(t, os.MkdirAll(filepath.Join(root, "sub"), 0o755))
	payload := make([]byte, 100_000) // many 1468-byte blocks and a short last one
	rand.Read(payload)
	must(t, os.WriteFile(filepath.Join(root, "undionly.kpxe"), payload, 0o644))
	must(t, os.WriteFile(filepath.Join(root, "sub", "ok.bin"), []byte("ok"), 0o644))
	secret := filepath.Join(base, "secret")
	must(t, os.WriteFile(secret, []byte("top secret"), 0o600))
	must(t, os.Symlink(secret, filepath.Join(root, "escape")))
	must(t, os.Symlink("../secret", filepath.Join(root, "sub", "relescape")))
	must(t, os.Symlink("undionly.kpxe", filepath.Join(root, "inside-link")))
	must(t, os.Symlink(base, filepath.Join(root, "dirlink")))
	return tftpFixture{root: root, secret: secret, payload: payload}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func startTFTP(t *testing.T, s *Server) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeTFTP(ctx, pc) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeTFTP: %v", err)
		}
	})
	return pc.LocalAddr().String()
}

func tftpGet(t *testing.T, addr, name string, blksize int) ([]byte, error) {
	t.Helper()
	c, err := tftp.NewClient(addr)
	must(t, err)
	c.SetTimeout(2 * time.Second)
	c.SetRetries(2)
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(true)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func TestTFTPPathEscapesRefused(t *testing.T) {
	fx := newTFTPFixture(t)
	st := openTestStore(t)
	s, err := New(Config{TFTPRoot: fx.root, BootURL: "http://10.0.2.2:8081", Logger: quietLogger()}, st, StoreSecrets(st), newRecordingLifecycle(st))
	must(t, err)
	addr := startTFTP(t, s)
	for _, name := range []string{
		"../secret",
		"/../secret",
		"sub/../../secret",
		"sub/../undionly.kpxe", // no '..' at all, even one that stays inside
		"./undionly.kpxe",
		"%2e%2e/secret",
		"..%2fsecret",
		"%2E%2E%2Fsecret",
		fx.secret,        // absolute path of the secret
		"//" + fx.secret, // more than one leading slash
		"escape",         // absolute symlink out of the root
		"sub/relescape",  // relative symlink out of the root
		"dirlink/secret", // symlinked directory out of the root
		"sub\\..\\..\\secret",
		"..\\secret",
		"sub",         // a directory
		"missing.efi", // absent
		"sub//ok.bin", // empty segment
	} {
		t.Run(strings.ReplaceAll(name, "/", "|"), func(t *testing.T) {
			got, err := tftpGet(t, addr, name, 0)
			if err == nil {
				t.Fatalf("served %d bytes for %q", len(got), name)
			}
			if !strings.Contains(err.Error(), "file not found") {
				t.Fatalf("error %q does not look like the TFTP refusal", err)
			}
			if strings.Contains(err.Error(), fx.root) {
				t.Fatalf("error leaks the root path: %v", err)
			}
		})
	}
}

func TestTFTPServesRootAndVirtualScript(t *testing.T) {
	fx := newTFTPFixture(t)
	st := openTestStore(t)
	reg := prometheus.NewRegistry()
	s, err := New(Config{TFTPRoot: fx.root, BootURL: "http://10.0.2.2:8081/", Logger: quietLogger(),
		Registerer: reg, TFTPTimeout: 2 * time.Second, TFTPRetries: 3}, st, StoreSecrets(st), newRecordingLifecycle(st))
	must(t, err)
	addr := startTFTP(t, s)

	for _, name := range []string{"undionly.kpxe", "/undionly.kpxe", "inside-link"} {
		got, err := tftpGet(t, addr, name, 1468)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, fx.payload) {
			t.Fatalf("%s: got %d bytes, want the %d-byte file", name, len(got), len(fx.payload))
		}
	}
	got, err := tftpGet(t, addr, "boot.ipxe", 1468)
	must(t, err)
	if want := "#!ipxe\nchain http://10.0.2.2:8081/boot.ipxe\n"; string(got) != want {
		t.Fatalf("boot.ipxe = %q, want %q", got, want)
	}
	got, err = tftpGet(t, addr, "sub/ok.bin", 0)
	must(t, err)
	if string(got) != "ok" {
		t.Fatalf("sub/ok.bin = %q", got)
	}

	// The server's success hook runs after the client has its last block.
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(s.metrics.tftpTransfers.WithLabelValues("ok")) < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("transfers ok = %v, want 5", testutil.ToFloat64(s.metrics.tftpTransfers.WithLabelValues("ok")))
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantBytes := float64(3*len(fx.payload) + len("#!ipxe\nchain http://10.0.2.2:8081/boot.ipxe\n") + 2)
	if b := testutil.ToFloat64(s.metrics.tftpBytes); b != wantBytes {
		t.Fatalf("bytes metric = %v, want %v", b, wantBytes)
	}
	if n := testutil.CollectAndCount(reg, "baremetal_boot_tftp_transfer_duration_seconds"); n != 1 {
		t.Fatalf("duration histogram not registered (%d)", n)
	}
}

func TestTFTPWriteRefused(t *testing.T) {
	fx := newTFTPFixture(t)
	st := openTestStore(t)
	s, err := New(Config{TFTPRoot: fx.root, BootURL: "http://10.0.2.2:8081", Logger: quietLogger()}, st, StoreSecrets(st), newRecordingLifecycle(st))
	must(t, err)
	addr := startTFTP(t, s)
	c, err := tftp.NewClient(addr)
	must(t, err)
	c.SetTimeout(2 * time.Second)
	rf, err := c.Send("undionly.kpxe", "octet")
	if err == nil {
		_, err = rf.ReadFrom(strings.NewReader("overwrite"))
	}
	if err == nil || !strings.Contains(err.Error(), "read-only server") {
		t.Fatalf("write request: err = %v, want the read-only refusal", err)
	}
	got, err := os.ReadFile(filepath.Join(fx.root, "undionly.kpxe"))
	must(t, err)
	if !bytes.Equal(got, fx.payload) {
		t.Fatal("file changed by a write request")
	}
	entries, _ := os.ReadDir(fx.root)
	if len(entries) != 5 {
		t.Fatalf("root has %d entries after a write request, want the 5 of the fixture", len(entries))
	}
}

func TestResolveTFTPPath(t *testing.T) {
	fx := newTFTPFixture(t)
	realRoot, _ := filepath.EvalSymlinks(fx.root)
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"undionly.kpxe", true},
		{"/undionly.kpxe", true},
		{"sub/ok.bin", true},
		{"inside-link", true},
		{"undionly.kpxe\x00", false},
		{"undionly.kpxe\x00../secret", false},
		{"sub\\ok.bin", false},
		{"../secret", false},
		{"escape", false},
		{"sub/relescape", false},
		{"dirlink/secret", false},
		{"%2e%2e/secret", false},
		{"", false},
		{"/", false},
		{"sub", false},
		{strings.Repeat("a/", 200), false},
	} {
		got, err := resolveTFTPPath(fx.root, tc.name)
		if tc.ok != (err == nil) {
			t.Errorf("resolveTFTPPath(%q) = %q, %v; want ok=%v", tc.name, got, err, tc.ok)
			continue
		}
		if tc.ok && !strings.HasPrefix(got, realRoot+string(filepath.Separator)) {
			t.Errorf("resolveTFTPPath(%q) = %q, outside %q", tc.name, got, realRoot)
		}
	}
}

// FuzzResolveTFTPPath: whatever the name, a resolved path is a regular file
// inside the root, and the secret next to the root is never reachable.
func FuzzResolveTFTPPath(f *testing.F) {
	for _, s := range []string{"undionly.kpxe", "/undionly.kpxe", "../secret", "sub/../../secret", "%2e%2e/secret",
		"escape", "sub/relescape", "dirlink/secret", "sub\\..\\secret", "a\x00b", "inside-link", "sub/ok.bin", "//secret", "./sub/ok.bin"} {
		f.Add(s)
	}
	base := f.TempDir()
	root := filepath.Join(base, "root")
	if err := os.MkdirAll(filepath.Join(root, "sub"), 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "undionly.kpxe"), []byte("x"), 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sub", "ok.bin"), []byte("x"), 0o644); err != nil {
		f.Fatal(err)
	}
	secret := filepath.Join(base, "secret")
	if err := os.WriteFile(secret, []byte("s"), 0o600); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(root, "escape")); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink("../secret", filepath.Join(root, "sub", "relescape")); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink(base, filepath.Join(root, "dirlink")); err != nil {
		f.Fatal(err)
	}
	realRoot, _ := filepath.EvalSymlinks(root)
	f.Fuzz(func(t *testing.T, name string) {
		got, err := resolveTFTPPath(root, name)
		if err != nil {
			return
		}
		if !strings.HasPrefix(got, realRoot+string(filepath.Separator)) {
			t.Fatalf("%q resolved outside the root: %q", name, got)
		}
		if strings.ContainsAny(name, "\\%\x00") || slices.Contains(strings.Split(name, "/"), "..") {
			t.Fatalf("%q accepted", name)
		}
		fi, err := os.Stat(got)
		if err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("%q resolved to a non-regular file %q", name, got)
		}
	})
}

// BenchmarkTFTPDownload compares pin/tftp's lock-step sender with its
// experimental anticipation window (Config.TFTPAnticipate) on loopback, for
// an iPXE-binary-sized file at the block size iPXE negotiates.
func BenchmarkTFTPDownload(b *testing.B) {
	root := b.TempDir()
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	if err := os.WriteFile(filepath.Join(root, "ipxe.efi"), payload, 0o644); err != nil {
		b.Fatal(err)
	}
	st := openTestStore(b)
	for _, win := range []uint{0, 8} {
		b.Run(fmt.Sprintf("anticipate=%d", win), func(b *testing.B) {
			s, err := New(Config{TFTPRoot: root, BootURL: "http://127.0.0.1:1", TFTPAnticipate: win, Logger: quietLogger()}, st, StoreSecrets(st), newRecordingLifecycle(st))
			if err != nil {
				b.Fatal(err)
			}
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { _ = s.ServeTFTP(ctx, pc) }() // nil once cancel ends it; a failure shows as the client's
			c, err := tftp.NewClient(pc.LocalAddr().String())
			if err != nil {
				b.Fatal(err)
			}
			c.SetBlockSize(1468)
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				wt, err := c.Receive("ipxe.efi", "octet")
				if err != nil {
					b.Fatal(err)
				}
				n, err := wt.WriteTo(io.Discard)
				if err != nil || n != int64(len(payload)) {
					b.Fatalf("got %d bytes, %v", n, err)
				}
			}
		})
	}
}

// TestTFTPBufferedReadAllBlockSizes transfers files around the read-ahead
// buffer's size at the block sizes PXE ROMs use, lock-step and with the
// sender window, and checks every byte: a buffered read that returned a
// short block mid-file would end the transfer early.
func TestTFTPBufferedReadAllBlockSizes(t *testing.T) {
	root := t.TempDir()
	sizes := []int{0, 511, 512, tftpReadBuffer - 1, tftpReadBuffer, tftpReadBuffer + 1, 3*tftpReadBuffer + 700}
	payloads := map[string][]byte{}
	for _, n := range sizes {
		p := make([]byte, n)
		rand.Read(p)
		name := fmt.Sprintf("f%d.bin", n)
		payloads[name] = p
		must(t, os.WriteFile(filepath.Join(root, name), p, 0o644))
	}
	st := openTestStore(t)
	for _, win := range []uint{0, 16} {
		s, err := New(Config{TFTPRoot: root, BootURL: "http://127.0.0.1:1", TFTPAnticipate: win, Logger: quietLogger(),
			TFTPTimeout: 2 * time.Second, TFTPRetries: 3}, st, StoreSecrets(st), newRecordingLifecycle(st))
		must(t, err)
		addr := startTFTP(t, s)
		for _, blksize := range []int{0, 512, 1468} {
			for name, want := range payloads {
				got, err := tftpGet(t, addr, name, blksize)
				if err != nil {
					t.Fatalf("anticipate %d, blksize %d, %s: %v", win, blksize, name, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("anticipate %d, blksize %d, %s: got %d bytes, want %d identical", win, blksize, name, len(got), len(want))
				}
			}
		}
	}
}

// TestTFTPSizeQueryIsNotAFailure plays EDK2's Mtftp4 at the start of a UEFI
// PXE boot: a read request with tsize, the OACK read, then error 8 before
// any block. The agent counts it as a size query, not a failed transfer,
// while a client that gives up mid-file still counts as failed.
func TestTFTPSizeQueryIsNotAFailure(t *testing.T) {
	fx := newTFTPFixture(t)
	st := openTestStore(t)
	reg := prometheus.NewRegistry()
	s, err := New(Config{TFTPRoot: fx.root, BootURL: "http://10.0.2.2:8081/", Logger: quietLogger(), Registerer: reg}, st, StoreSecrets(st), newRecordingLifecycle(st))
	must(t, err)
	addr, err := net.ResolveUDPAddr("udp", startTFTP(t, s))
	must(t, err)

	rrq := func(opts ...string) []byte {
		p := append([]byte{0, 1}, "undionly.kpxe\x00octet\x00"...)
		for _, o := range opts {
			p = append(p, o+"\x00"...)
		}
		return p
	}
	errPacket := func(code byte, msg string) []byte { return append([]byte{0, 5, 0, code}, msg+"\x00"...) }
	for _, tc := range []struct {
		name     string
		request  []byte
		wantOp   byte // the server's first answer: 6 OACK, 3 DATA
		abort    []byte
		wantLbl  string
		otherLbl string
	}{
		{"UEFI size query", rrq("tsize", "0", "blksize", "1468"), 6, errPacket(8, "User aborted the transfer"), "size_query", "failed"},
		{"client gives up after the first block", rrq(), 3, errPacket(0, "disk full"), "failed", "size_query"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(s.metrics.tftpTransfers.WithLabelValues(tc.otherLbl))
			c, err := net.ListenUDP("udp", nil)
			must(t, err)
			defer c.Close()
			_, err = c.WriteToUDP(tc.request, addr)
			must(t, err)
			must(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
			buf := make([]byte, 2048)
			n, from, err := c.ReadFromUDP(buf)
			must(t, err)
			if n < 2 || buf[1] != tc.wantOp {
				t.Fatalf("first answer % x, want opcode %d", buf[:min(n, 8)], tc.wantOp)
			}
			if tc.wantOp == 6 && !strings.Contains(string(buf[:n]), "tsize\x00"+strconv.Itoa(len(fx.payload))+"\x00") {
				t.Fatalf("OACK %q does not carry the file's size %d", buf[2:n], len(fx.payload))
			}
			_, err = c.WriteToUDP(tc.abort, from)
			must(t, err)
			deadline := time.Now().Add(5 * time.Second)
			for testutil.ToFloat64(s.metrics.tftpTransfers.WithLabelValues(tc.wantLbl)) < 1 {
				if time.Now().After(deadline) {
					t.Fatalf("no %s transfer counted", tc.wantLbl)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if got := testutil.ToFloat64(s.metrics.tftpTransfers.WithLabelValues(tc.otherLbl)); got != before {
				t.Errorf("%s transfers went %v -> %v", tc.otherLbl, before, got)
			}
		})
	}
}

func TestTFTPResendGapsDouble(t *testing.T) {
	for _, tc := range []struct {
		timeout time.Duration
		gaps    []int // timeout + backoff per attempt, in seconds (milliseconds under a second)
	}{
		{time.Second, []int{1, 2, 4, 8, 16, 16}},
		{100 * time.Millisecond, []int{100, 200, 400, 800, 1600}},
		{10 * time.Second, []int{10, 16, 16}},
	} {
		unit := time.Second
		if tc.timeout < time.Second {
			unit = time.Millisecond
		}
		for attempt, want := range tc.gaps {
			if got := tc.timeout + doubling(tc.timeout, attempt); got != time.Duration(want)*unit {
				t.Errorf("timeout %s, attempt %d: gap %s, want %s", tc.timeout, attempt, got, time.Duration(want)*unit)
			}
		}
	}
}
