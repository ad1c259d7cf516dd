package boot

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/tftp"
)

// errTFTPNotFound is the only detail a refused TFTP client learns: the
// library sends a handler's error text to the client verbatim, so the real
// reason is logged, never sent.
var errTFTPNotFound = errors.New("file not found")

// arm64Candidates are the names under which an arm64 UEFI iPXE binary is
// looked for in the TFTP root (Debian ships none in its x86 ipxe package).
var arm64Candidates = []string{"arm64-efi/snp.efi", "snp-arm64.efi", "ipxe-arm64.efi"}

// resolveTFTPPath maps a client-requested TFTP file name onto a regular file
// inside root and returns its real path. TFTP file names are not URLs and
// are never decoded, so a '%' can only be an attempt to smuggle an encoded
// traversal past some other layer: it is refused with the rest. A single
// leading '/' is tolerated because many PXE ROMs send "/pxelinux.0".
func resolveTFTPPath(root, requested string) (string, error) {
	if requested == "" || len(requested) > 255 {
		return "", fmt.Errorf("file name length %d out of range", len(requested))
	}
	for _, r := range requested {
		if r < 0x20 || r == 0x7f {
			return "", errors.New("control character in file name")
		}
	}
	if strings.ContainsAny(requested, `\%`) {
		return "", errors.New("backslash or percent sign in file name")
	}
	name := strings.TrimPrefix(requested, "/")
	if name == "" || strings.HasPrefix(name, "/") {
		return "", errors.New("absolute file name")
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == ".." || seg == "." || seg == "" {
			return "", errors.New("relative or empty path segment in file name")
		}
	}
	if !filepath.IsLocal(name) {
		return "", errors.New("file name is not local to the root")
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("root: %w", err)
	}
	resolved, err := filepath.EvalSymlinks(filepath.Join(realRoot, filepath.FromSlash(name)))
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(realRoot, resolved)
	if err != nil || !filepath.IsLocal(rel) {
		return "", errors.New("file resolves outside the root")
	}
	fi, err := os.Stat(resolved)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", errors.New("not a regular file")
	}
	return resolved, nil
}

// newTFTPServer builds a pin/tftp server for this boot edge: read-only,
// timeouts, retries and sender window from the config, hooks to metrics.
func (s *Server) newTFTPServer() *tftp.Server {
	ts := tftp.NewServer(s.tftpRead, func(filename string, _ io.WriterTo) error {
		s.log.Warn("tftp write request refused", "file", filename)
		return errors.New("read-only server")
	})
	// In lock-step a lost datagram costs one timeout, so it is the peers'
	// 1s rather than pin/tftp's 5s (a 1 MiB transfer at 1% loss took
	// minutes). Instead of pin/tftp's random pause of up to a second, each
	// further re-send of the same datagram waits twice as long as the one
	// before, as tftpd-hpa does: a client that re-sends its ACK only on its
	// own timer (and restarts that timer on every duplicate) gets a gap to
	// do so, and five retries still wait about 31s for a silent client.
	timeout, retries := s.cfg.TFTPTimeout, s.cfg.TFTPRetries
	if timeout <= 0 {
		timeout = defaultTFTPTimeout
	}
	if retries <= 0 {
		retries = defaultTFTPRetries
	}
	ts.SetTimeout(timeout)
	ts.SetRetries(retries)
	ts.SetBackoff(func(attempt int) time.Duration { return doubling(timeout, attempt) })
	if s.cfg.TFTPAnticipate > 1 {
		ts.SetAnticipate(s.cfg.TFTPAnticipate)
	}
	ts.SetHook(tftpHook{s})
	ts.SetAdmission(s.tftpCap.admit)
	ts.SetMaxPending(max(s.tftpCap.global/2, 1))
	return ts
}

// Defaults of Config.TFTPMaxTransfers and TFTPMaxPerClient: a boot storm of
// 200 clients behind one address (BENCHMARKS.md) fits; each transfer holds
// two descriptors (its socket and the file), so the cap keeps the agent
// near 1,000 of them whatever arrives.
const (
	DefaultTFTPMaxTransfers = 512
	DefaultTFTPMaxPerClient = 256
)

// transferCaps counts running TFTP transfers, in all and per source
// address. A counter per address lives only while it has transfers, so
// the map is bounded by the global cap.
type transferCaps struct {
	global, perClient int

	mu     sync.Mutex
	total  int
	byAddr map[netip.Addr]int
}

var (
	// Short: each is sent to whatever source the request claims.
	errTFTPBusy       = errors.New("busy")
	errTFTPClientBusy = errors.New("busy: your address")
)

func newTransferCaps(global, perClient int) *transferCaps {
	if global <= 0 {
		global = DefaultTFTPMaxTransfers
	}
	if perClient <= 0 {
		perClient = DefaultTFTPMaxPerClient
	}
	return &transferCaps{global: global, perClient: min(perClient, global), byAddr: map[netip.Addr]int{}}
}

func (c *transferCaps) admit(addr *net.UDPAddr) (func(), error) {
	ip, _ := netip.AddrFromSlice(addr.IP)
	ip = ip.Unmap()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.total >= c.global:
		return nil, errTFTPBusy
	case c.byAddr[ip] >= c.perClient:
		return nil, errTFTPClientBusy
	}
	c.total++
	c.byAddr[ip]++
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.total--
		if c.byAddr[ip]--; c.byAddr[ip] == 0 {
			delete(c.byAddr, ip)
		}
	}, nil
}

// ServeTFTP serves TFTP on pc until ctx ends; shutdown lets outstanding
// transfers finish (each is bounded by the timeout and retries).
func (s *Server) ServeTFTP(ctx context.Context, pc net.PacketConn) error {
	ts := s.newTFTPServer()
	done := make(chan error, 1)
	go func() { done <- ts.Serve(pc) }()
	select {
	case err := <-done:
		if err == nil {
			err = errors.New("stopped")
		}
		return fmt.Errorf("boot: TFTP server on %s: %w", pc.LocalAddr(), err)
	case <-ctx.Done():
	}
	ts.Shutdown()
	<-done //nolint:errcheck // the Serve error of a shutdown, as before
	return nil
}

func (s *Server) tftpRead(filename string, rf io.ReaderFrom) error {
	remote := ""
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ra := ot.RemoteAddr()
		remote = ra.IP.String()
	}
	name := strings.TrimPrefix(filename, "/")
	if content, ok := s.tftpVirtual[name]; ok {
		if ot, ok := rf.(tftp.OutgoingTransfer); ok {
			ot.SetSize(int64(len(content)))
		}
		n, err := rf.ReadFrom(bytes.NewReader(content))
		s.metrics.tftpBytes.Add(float64(n))
		return err
	}
	if s.tftpRoot == "" {
		s.log.Info("tftp request refused: no TFTP root configured", "file", filename, "remote", remote)
		return errTFTPNotFound
	}
	path, err := resolveTFTPPath(s.tftpRoot, filename)
	if err != nil {
		s.log.Warn("tftp request refused", "file", filename, "remote", remote, "reason", err.Error())
		s.metrics.tftpRefused.Inc()
		return errTFTPNotFound
	}
	f, err := os.Open(path)
	if err != nil {
		s.log.Warn("tftp open failed", "file", filename, "remote", remote, "error", err.Error())
		return errTFTPNotFound
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		if ot, ok := rf.(tftp.OutgoingTransfer); ok {
			ot.SetSize(fi.Size())
		}
	}
	// pin/tftp reads one block per Read: unbuffered, a 1 MiB iPXE binary at
	// blksize 512 costs 2048 read system calls per transfer, which in a boot
	// storm is most of the server's CPU. The size went out with SetSize
	// above, so hiding the file's Seek from the library loses nothing.
	n, err := rf.ReadFrom(bufio.NewReaderSize(f, tftpReadBuffer))
	s.metrics.tftpBytes.Add(float64(n))
	return err
}

const (
	defaultTFTPTimeout = time.Second
	defaultTFTPRetries = 5
	maxTFTPResendGap   = 16 * time.Second
)

// doubling is the pause before re-send attempt+1 of a datagram, on top of
// the timeout already waited: the gaps between re-sends are timeout, 2×,
// 4×, ... up to maxTFTPResendGap.
func doubling(timeout time.Duration, attempt int) time.Duration {
	gap := timeout
	for range attempt {
		if gap >= maxTFTPResendGap {
			break
		}
		gap *= 2
	}
	return min(gap, maxTFTPResendGap) - timeout
}

// tftpReadBuffer is the read-ahead per TFTP transfer: 64 KiB is 44 blocks of
// 1468 bytes, and 200 concurrent transfers hold 12.5 MiB.
const tftpReadBuffer = 64 << 10

// tftpHook feeds the library's per-transfer outcome to logs and metrics.
type tftpHook struct{ s *Server }

func (h tftpHook) OnSuccess(st tftp.TransferStats) {
	h.s.metrics.tftpTransfers.WithLabelValues("ok").Inc()
	h.s.metrics.tftpDuration.Observe(st.Duration.Seconds())
	h.s.log.Info("tftp transfer done", "file", st.Filename, "remote", ipString(st.RemoteAddr),
		"duration", st.Duration.Round(time.Millisecond), "datagrams", st.DatagramsSent, "blksize", st.Opts["blksize"])
}

func (h tftpHook) OnFailure(st tftp.TransferStats, err error) {
	// A refused request, or one never acknowledged (a forged source, or a
	// client that went away), is what a flood consists of: counted, and
	// logged at debug level only, so a flood cannot flood the log.
	var refused *tftp.RefusedError
	switch {
	case errors.As(err, &refused):
		h.s.metrics.tftpTransfers.WithLabelValues("refused").Inc()
		h.s.log.Debug("tftp request refused", "file", refused.Filename, "remote", ipString(refused.Remote), "reason", refused.Reason)
		return
	case st.Filename == "":
		// Not a transfer: a datagram on the listening port that is no request.
		h.s.metrics.tftpTransfers.WithLabelValues("refused").Inc()
		h.s.log.Debug("tftp datagram ignored", "error", err.Error())
		return
	}
	var ne net.Error
	if st.DatagramsAcked == 0 && (errors.Is(err, tftp.ErrEvicted) || errors.As(err, &ne) && ne.Timeout()) {
		h.s.metrics.tftpTransfers.WithLabelValues("unacknowledged").Inc()
		h.s.log.Debug("tftp transfer never acknowledged", "file", st.Filename, "remote", ipString(st.RemoteAddr), "error", err.Error())
		return
	}
	if sizeQuery(st, err) {
		h.s.metrics.tftpTransfers.WithLabelValues("size_query").Inc()
		h.s.log.Debug("tftp size query answered", "file", st.Filename, "remote", ipString(st.RemoteAddr), "tsize", st.Opts["tsize"])
		return
	}
	h.s.metrics.tftpTransfers.WithLabelValues("failed").Inc()
	if st.Duration > 0 {
		h.s.metrics.tftpDuration.Observe(st.Duration.Seconds())
	}
	h.s.log.Warn("tftp transfer failed", "file", st.Filename, "remote", ipString(st.RemoteAddr), "error", err.Error())
}

// sizeQuery reports a transfer the client ended on purpose after learning
// the file's size: UEFI firmware (EDK2's Mtftp4) sends a read request with
// tsize, reads the OACK and answers error 8 (options refused, RFC 2347)
// before the first block, then requests the file again. That is part of
// every UEFI PXE boot, not a failure to warn about. pin/tftp reports it
// only as an error string.
func sizeQuery(st tftp.TransferStats, err error) bool {
	_, asked := st.Opts["tsize"]
	return asked && st.DatagramsAcked == 0 && strings.HasPrefix(err.Error(), "sending block 0: code=8,")
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}
