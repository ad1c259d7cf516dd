// Package boot is the agent's network-boot edge: TFTP for the iPXE binaries,
// HTTP for iPXE scripts, assets and rendered install templates, the
// installer callback, and an optional ProxyDHCP. It observes and transports;
// every decision about a machine's phase is the Lifecycle's (the reconciler).
package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/imagecache"
)

// DefaultTFTPRoot is where Debian's ipxe package installs undionly.kpxe,
// ipxe.efi and snponly.efi.
const DefaultTFTPRoot = "/usr/lib/ipxe"

// Config configures the boot edge.
type Config struct {
	// TFTPRoot is the read-only directory TFTP serves; default
	// DefaultTFTPRoot when it exists. Only regular files inside it are served.
	TFTPRoot string
	// AssetsDir holds kernels, initrds and images served under /assets/.
	AssetsDir string
	// DeployImageDir holds the agent's deploy ramdisk (vmlinuz and
	// initrd.img, built by scripts/build-deploy-image.sh), which boots the
	// machines of image profiles and writes their image.
	DeployImageDir string
	// ImageCacheDir is where qcow2 images are converted to raw for the
	// deploy ramdisk (the agent uses <data-dir>/image-cache); empty: a
	// qcow2 image fails its machine.
	ImageCacheDir string
	// BootURL is the advertised base URL (e.g. http://10.0.2.2:8081): every
	// URL handed to a machine is built on it, never on the listen address.
	BootURL string
	// UnknownMAC is the answer to a MAC no machine lists: "exit" (default:
	// boot the local disk) or the name of a discovery boot profile.
	UnknownMAC string
	// TFTPTimeout is the per-packet round-trip timeout (default 1s, as
	// tftpd-hpa and dnsmasq; each further re-send of a datagram waits twice
	// as long), TFTPRetries the re-sends of one datagram before the transfer
	// fails (default 5).
	TFTPTimeout time.Duration
	TFTPRetries int
	// TFTPAnticipate enables pin/tftp's experimental sender window of this
	// many packets; 0 or 1 keeps the standard lock-step protocol. Off by
	// default: a window of 16 is up to twice as fast on a clean link (and
	// EDK2 firmware and iPXE accept it, TestOVMFNetworkBoot), but pin/tftp
	// recovers a loss inside a window only if the client acknowledges every
	// block of the re-sent window in order from its first, which lock-step
	// clients (they ignore blocks they already have) and iPXE (cumulative
	// ACKs) never do: at 1% loss every windowed transfer of BENCHMARKS.md's
	// lossy-link table failed, and every lock-step one completed. The
	// window opens only after the client's first ACK (of the OACK): a
	// request without options is served lock-step, so a forged one never
	// draws a window.
	TFTPAnticipate uint
	// TFTPMaxTransfers caps concurrent TFTP transfers (default
	// DefaultTFTPMaxTransfers) and TFTPMaxPerClient those of one source
	// address (default DefaultTFTPMaxPerClient); a request beyond either
	// gets one ERROR datagram and costs no socket. Half of TFTPMaxTransfers
	// may wait for their first ACK; a request beyond that ends the oldest
	// such transfer, so forged requests cannot keep real clients out.
	TFTPMaxTransfers int
	TFTPMaxPerClient int
	ProxyDHCP        ProxyDHCPConfig
	Logger           *slog.Logger
	// Registerer receives the boot edge's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// ProxyDHCPConfig configures the optional ProxyDHCP responder, which only
// tells PXE clients where to boot from and never hands out addresses.
type ProxyDHCPConfig struct {
	Enabled bool
	// Interface binds the DHCP socket to one NIC (recommended; required to
	// broadcast replies on multi-homed hosts).
	Interface string
	// Addr is the DHCP listen address (default ":67"); the PXE boot-server
	// port 4011 is opened on the same host.
	Addr string
	// ServerIP is the agent's address on the boot network, sent as
	// next-server; default the first IPv4 address of Interface.
	ServerIP net.IP
}

// Server is the boot edge.
type Server struct {
	cfg      Config
	bootURL  string // BootURL without a trailing slash
	tftpRoot string // "" when there is no root: only the virtual files exist
	st       Reader
	generate GenerateSecret
	lc       Lifecycle
	log      *slog.Logger
	metrics  *metrics
	arm64EFI string            // arm64 iPXE binary in TFTPRoot, "" when absent
	images   *imagecache.Cache // qcow2 conversions; nil without ImageCacheDir

	unknown *rateLimiter
	tftpCap *transferCaps

	mu          sync.Mutex
	signalRuns  map[string]string // machine NUL asset path -> run ID whose fetch of it was signalled
	handler     http.Handler
	tftpVirtual map[string][]byte
}

// New validates cfg and builds a Server. Nothing listens until a Serve*
// method is called.
func New(cfg Config, st Reader, generate GenerateSecret, lc Lifecycle) (*Server, error) {
	if st == nil || generate == nil || lc == nil {
		return nil, errors.New("boot: a store reader, a secret generator and a lifecycle are required")
	}
	u, err := url.Parse(cfg.BootURL)
	if cfg.BootURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("boot: boot URL %q must be an absolute http(s) URL that machines can reach (e.g. http://10.0.2.2:8081)", cfg.BootURL)
	}
	if strings.ContainsAny(cfg.BootURL, " \t\r\n$#;|&") {
		return nil, fmt.Errorf("boot: boot URL %q contains characters iPXE would interpret", cfg.BootURL)
	}
	if cfg.UnknownMAC == "" {
		cfg.UnknownMAC = "exit"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg:        cfg,
		bootURL:    strings.TrimRight(cfg.BootURL, "/"),
		st:         st,
		generate:   generate,
		lc:         lc,
		log:        cfg.Logger.With("component", "boot"),
		unknown:    newRateLimiter(time.Minute, 4096),
		tftpCap:    newTransferCaps(cfg.TFTPMaxTransfers, cfg.TFTPMaxPerClient),
		signalRuns: map[string]string{},
	}
	root := cfg.TFTPRoot
	if root == "" {
		if fi, err := os.Stat(DefaultTFTPRoot); err == nil && fi.IsDir() {
			root = DefaultTFTPRoot
		}
	} else if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("boot: TFTP root %q is not a readable directory", root)
	}
	s.tftpRoot = root
	if cfg.ImageCacheDir != "" {
		if s.images, err = imagecache.New(context.Background(), cfg.ImageCacheDir); err != nil {
			return nil, fmt.Errorf("boot: %w", err)
		}
	}
	if cfg.AssetsDir != "" {
		if fi, err := os.Stat(cfg.AssetsDir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("boot: assets directory %q is not a readable directory", cfg.AssetsDir)
		}
	}
	if root != "" {
		for _, name := range arm64Candidates {
			if _, err := resolveTFTPPath(root, name); err == nil {
				s.arm64EFI = name
				break
			}
		}
	}
	s.metrics, err = newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	// QEMU's (and many NICs') ROM is already iPXE: pointing its DHCP boot
	// file at an iPXE binary would make it load itself forever, so the TFTP
	// side also offers a script that hops straight to HTTP.
	s.tftpVirtual = map[string][]byte{
		"boot.ipxe": []byte("#!ipxe\nchain " + s.bootURL + "/boot.ipxe\n"),
	}
	s.handler = s.routes()
	return s, nil
}

// HTTPHandler is the boot listener's handler (scripts, assets, templates,
// callback), for embedding or httptest.
func (s *Server) HTTPHandler() http.Handler { return s.handler }

// ServeHTTPListener serves the boot endpoints on ln until ctx ends, then
// drains in-flight requests for up to 10 s. It is not named ServeHTTP, which
// would read as http.Handler's method: HTTPHandler is the handler.
func (s *Server) ServeHTTPListener(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Large images over slow boot networks take minutes; this still
		// bounds a client that stops reading.
		WriteTimeout:   30 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("boot: HTTP server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-done //nolint:errcheck // Serve ends with http.ErrServerClosed after the shutdown
	return nil
}
