// Package agentd assembles the agent: the store, the BMC manager, the
// reconciler, the boot edge and the API server, their listeners and their
// lifetimes. `baremetal-agent serve` runs it with the operator's
// configuration; tests and benches run the same assembly in process, with
// injected listeners, a clock and shorter step timeouts.
package agentd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/apiserver"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/bmc"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/boot"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/provision"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// HTTP server limits. WriteTimeout must outlast the longest long-poll
// (api.MaxWait) plus the time to write its answer.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = api.MaxWait + 30*time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
	// drainTimeout bounds how long a stopping server waits for in-flight
	// requests; long-polls are ended first (apiserver.Server.StopWaiting).
	drainTimeout = 20 * time.Second
)

// Files in the data dir.
const (
	StoreFile   = "agent.db"
	SealKeyFile = "seal.key"
	// CertFile is the generated API certificate, which clients of an agent
	// without --tls-cert trust as its CA.
	CertFile = "api-cert.pem"
	keyFile  = "api-key.pem"
)

// Listeners are bound by the caller instead of from the configured
// addresses (a nil one is bound from its address). The agent owns them
// from New on and closes them when it stops.
type Listeners struct {
	API  net.Listener
	Boot net.Listener
	TFTP net.PacketConn
}

// Option adjusts an agent beyond its Config.
type Option func(*options)

type options struct {
	log         *slog.Logger
	listeners   Listeners
	provisionFn func(*provision.Config)
	bmcFn       func(*bmc.Config)
}

// WithLogger sends the agent's logs to log (default: discarded).
func WithLogger(log *slog.Logger) Option { return func(o *options) { o.log = log } }

// WithListeners hands the agent listeners the caller bound, so a test can
// hold its addresses from the moment it picks them.
func WithListeners(l Listeners) Option { return func(o *options) { o.listeners = l } }

// WithStepTimeouts replaces the reconciler's step timeouts and the backoff
// between BMC retries, which the flags set only in part.
func WithStepTimeouts(t provision.StepTimeouts, retryBase, retryMax time.Duration) Option {
	return WithProvision(func(c *provision.Config) {
		c.Timeouts, c.RetryBase, c.RetryMax = t, retryBase, retryMax
	})
}

// WithProvision adjusts the reconciler's configuration after the agent has
// derived it from Config (options apply in order): workers, polling, the
// clock (Now).
func WithProvision(fn func(*provision.Config)) Option {
	return func(o *options) {
		prev := o.provisionFn
		o.provisionFn = func(c *provision.Config) {
			if prev != nil {
				prev(c)
			}
			fn(c)
		}
	}
}

// WithBMC adjusts the BMC manager's configuration (timeouts, polling,
// retries) after the agent has derived it from Config.
func WithBMC(fn func(*bmc.Config)) Option { return func(o *options) { o.bmcFn = fn } }

// Agent is an assembled agent: its parts are built and its listeners bound.
type Agent struct {
	cfg        Config
	log        *slog.Logger
	store      *store.Bolt
	metrics    *prometheus.Registry
	bootURL    string
	bmcs       *bmc.Manager
	reconciler *provision.Reconciler
	boot       *boot.Server
	api        *apiserver.Server
	apiCert    tls.Certificate

	apiLn            net.Listener
	bootLn           net.Listener
	tftpConn         net.PacketConn
	dhcpConn, pxeCon net.PacketConn
	hup              chan os.Signal

	// ready is set once every listener is bound and serving, and cleared at
	// shutdown so /readyz tells load balancers to stop sending work.
	ready atomic.Bool
	// tokenFileProblem is why the last token reload could not be applied
	// ("" once a good file is loaded): the agent is degraded meanwhile, as
	// a token removed from the file may still be in force.
	tokenFileProblem atomic.Pointer[string]
	tokenDegraded    prometheus.Gauge
}

// New builds the agent and binds every listener, so a bad setting or a
// taken port fails here, before anything reports ready.
func New(cfg Config, opts ...Option) (*Agent, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{cfg: cfg, log: o.log}
	a.apiLn, a.bootLn, a.tftpConn = o.listeners.API, o.listeners.Boot, o.listeners.TFTP
	if err := cfg.Validate(); err != nil {
		a.Close()
		return nil, err
	}
	if err := a.build(o); err != nil {
		a.Close()
		return nil, err
	}
	if err := a.listen(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func (a *Agent) build(o options) error {
	cfg, log := a.cfg, a.log
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if fi, err := os.Stat(cfg.DataDir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("data dir is accessible by group or others; the store and keys inside are not, but chmod 700 is advised",
			"path", cfg.DataDir, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
	}
	tokens, err := apiserver.LoadTokenFile(cfg.TokenFile)
	if err != nil {
		return err
	}
	bootAddr := cfg.BootAddr
	if a.bootLn != nil {
		bootAddr = a.bootLn.Addr().String()
	}
	var guessed bool
	if a.bootURL, guessed, err = bootURL(cfg.BootURL, bootAddr); err != nil {
		return fmt.Errorf("boot URL: %w", err)
	}
	if guessed {
		log.Warn("no --boot-url: advertising a guess; set --boot-url to the address machines reach this agent at", "boot_url", a.bootURL)
	}
	apiAddr := cfg.APIAddr
	if a.apiLn != nil {
		apiAddr = a.apiLn.Addr().String()
	}
	if a.apiCert, err = apiCertificate(cfg, apiAddr, log); err != nil {
		return err
	}

	a.metrics = prometheus.NewRegistry()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "baremetal", Subsystem: "agent", Name: "build_info",
		Help: "The running agent's version.", ConstLabels: prometheus.Labels{"version": cfg.Version},
	})
	buildInfo.Set(1)
	a.tokenDegraded = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "baremetal_agent_token_file_degraded",
		Help: "1 while the last SIGHUP reload of the token file failed and the previous tokens stay in force.",
	})
	a.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo, a.tokenDegraded)

	a.store, err = store.OpenBolt(filepath.Join(cfg.DataDir, StoreFile), store.BoltOptions{
		KeyFile: filepath.Join(cfg.DataDir, SealKeyFile),
		Logger:  log.With("component", "store"),
	})
	if err != nil {
		return err
	}

	bcfg := bmc.Config{
		MaxConcurrent:  cfg.BMCMaxConcurrent,
		RequestTimeout: cfg.BMCRequestTimeout,
		LoginBackoff:   cfg.BMCLoginBackoff,
		Sessions:       a.store,
		Logger:         log.With("component", "bmc"),
		Registerer:     a.metrics,
	}
	if o.bmcFn != nil {
		o.bmcFn(&bcfg)
	}
	a.bmcs = bmc.NewManager(bcfg)
	pcfg := provision.Config{
		MaxActive: cfg.ProvisioningLimit,
		// A BMC step holds its worker, so fewer workers than the limit
		// would make the limit unreachable.
		Workers:           max(8, cfg.ProvisioningLimit),
		PowerPollInterval: offWhenZero(cfg.PowerPollInterval),
		BootStallWarning:  offWhenZero(cfg.BootStallWarning),
		InventoryInterval: offWhenZero(cfg.InventoryInterval),
		Timeouts: provision.StepTimeouts{
			WaitPXE: cfg.WaitPXETimeout,
			Install: cfg.InstallTimeout,
			Retries: cfg.StepRetries,
		},
		Logger:     log.With("component", "provision"),
		Registerer: a.metrics,
	}
	if o.provisionFn != nil {
		o.provisionFn(&pcfg)
	}
	a.reconciler = provision.New(pcfg, a.store, a.bmcs)
	tftpRoot := cfg.TFTPRoot
	if tftpRoot == "" {
		if tftpRoot, err = stageTFTPRoot(boot.DefaultTFTPRoot, filepath.Join(cfg.DataDir, "tftp"), log.With("component", "boot")); err != nil {
			return err
		}
	}
	a.boot, err = boot.New(boot.Config{
		TFTPRoot:         tftpRoot,
		AssetsDir:        cfg.AssetsDir,
		DeployImageDir:   cfg.DeployImageDir,
		ImageCacheDir:    filepath.Join(cfg.DataDir, "image-cache"),
		BootURL:          a.bootURL,
		UnknownMAC:       cfg.UnknownMAC,
		TFTPTimeout:      cfg.TFTPTimeout,
		TFTPRetries:      cfg.TFTPRetries,
		TFTPAnticipate:   uint(cfg.TFTPWindow),
		TFTPMaxTransfers: cfg.TFTPMaxTransfers,
		TFTPMaxPerClient: cfg.TFTPMaxPerClient,
		ProxyDHCP: boot.ProxyDHCPConfig{
			Enabled:   cfg.ProxyDHCP,
			Interface: cfg.ProxyDHCPInterface,
			Addr:      cfg.ProxyDHCPAddr,
		},
		Logger:     log.With("component", "boot"),
		Registerer: a.metrics,
	}, a.store, boot.StoreSecrets(a.store), a.reconciler)
	if err != nil {
		return err
	}

	caps := []string{"machines", "boot_profiles", "clusters", "events", "long_poll", "leases", "actions", "redfish", "tftp", "ipxe", "templates", api.CapabilityReadiness}
	if cfg.ProxyDHCP {
		caps = append(caps, "proxy_dhcp")
	}
	a.api, err = apiserver.NewServer(apiserver.ServerConfig{
		Store:         a.store,
		Actions:       a.reconciler,
		Tokens:        tokens,
		Version:       cfg.Version,
		BootURL:       a.bootURL,
		Capabilities:  caps,
		Logger:        log.With("component", "api"),
		Registerer:    a.metrics,
		Gatherer:      a.metrics,
		LeaseDuration: cfg.LeaseDuration,
		Ready: func() error {
			if !a.ready.Load() {
				return errors.New("starting or stopping")
			}
			if p := a.tokenFileProblem.Load(); p != nil {
				return errors.New("token file not reloaded, the previous tokens are still in force: " + *p)
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	log.Info("api tokens loaded", "count", tokens.Len())
	return nil
}

// listen binds every listener not handed in: the API, boot HTTP, TFTP and,
// when enabled, ProxyDHCP's two ports.
func (a *Agent) listen() error {
	var err error
	if a.apiLn == nil {
		if a.apiLn, err = net.Listen("tcp", a.cfg.APIAddr); err != nil {
			return fmt.Errorf("api listener on %s: %w", a.cfg.APIAddr, err)
		}
	}
	a.log.Info("api listening", "addr", a.apiLn.Addr().String(), "tls", true)
	if a.bootLn == nil {
		if a.bootLn, err = net.Listen("tcp", a.cfg.BootAddr); err != nil {
			return fmt.Errorf("boot listener on %s: %w", a.cfg.BootAddr, err)
		}
	}
	if a.tftpConn == nil {
		if a.tftpConn, err = net.ListenPacket("udp", a.cfg.TFTPAddr); err != nil {
			return fmt.Errorf("tftp listener on %s: %w", a.cfg.TFTPAddr, err)
		}
	}
	a.log.Info("boot listening", "http", a.bootLn.Addr().String(), "tftp", a.tftpConn.LocalAddr().String(), "boot_url", a.bootURL)
	if a.cfg.ProxyDHCP {
		if a.dhcpConn, a.pxeCon, err = a.boot.ListenProxyDHCP(); err != nil {
			return err
		}
	}
	// Subscribed here, before the agent reports ready, so an early SIGHUP
	// cannot take the default action (exit).
	a.hup = make(chan os.Signal, 1)
	signal.Notify(a.hup, syscall.SIGHUP)
	return nil
}

// service is a long-running part of the agent. run blocks until ctx ends
// (then it stops cleanly and returns nil) or the service fails.
type service struct {
	name string
	run  func(ctx context.Context) error
}

func (a *Agent) services() []service {
	srv := a.httpServer(a.api.Handler(), "api")
	srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: tls12Suites, Certificates: []tls.Certificate{a.apiCert}}
	srv.RegisterOnShutdown(a.api.StopWaiting)
	svcs := []service{
		{name: "api server", run: func(ctx context.Context) error { return serveTLS(ctx, a.log, srv, a.apiLn) }},
		{name: "token reload", run: func(ctx context.Context) error { return a.reloadTokens(ctx, a.hup) }},
		{name: "boot http", run: func(ctx context.Context) error { return a.boot.ServeHTTPListener(ctx, a.bootLn) }},
		{name: "tftp", run: func(ctx context.Context) error { return a.boot.ServeTFTP(ctx, a.tftpConn) }},
		{name: "reconciler", run: a.reconciler.Run},
		// Sessions a killed agent left open count against the BMCs' small
		// session tables until they time out (30 min on iDRAC).
		{name: "bmc session cleanup", run: func(ctx context.Context) error { a.bmcs.CleanupSessions(ctx); return nil }},
	}
	if a.dhcpConn != nil {
		svcs = append(svcs,
			service{name: "proxydhcp", run: func(ctx context.Context) error { return a.boot.ServeProxyDHCP(ctx, a.dhcpConn) }},
			service{name: "proxydhcp pxe", run: func(ctx context.Context) error { return a.boot.ServeProxyDHCP(ctx, a.pxeCon) }})
	}
	return svcs
}

// Run serves until ctx ends or a service fails, then drains the servers,
// logs out of the BMCs and closes the store.
func (a *Agent) Run(ctx context.Context) error {
	defer a.Close()
	g, gctx := errgroup.WithContext(ctx)
	for _, svc := range a.services() {
		g.Go(func() error {
			if err := svc.run(gctx); err != nil {
				return fmt.Errorf("%s: %w", svc.name, err)
			}
			return nil
		})
	}
	a.ready.Store(true)
	a.log.Info("agent ready", "version", a.cfg.Version, "boot_url", a.bootURL)
	go func() {
		<-gctx.Done()
		a.ready.Store(false)
		if ctx.Err() != nil {
			a.log.Info("stopping: draining in-flight requests")
		}
	}()
	err := g.Wait()
	a.Close()
	if err != nil {
		a.log.Error("agent stopped on an error", "err", err)
		return err
	}
	a.log.Info("agent stopped")
	return nil
}

// BootURL is the boot base URL the agent hands to machines.
func (a *Agent) BootURL() string { return a.bootURL }

// Store is the agent's store, for tests that set up or inspect state
// beneath the API.
func (a *Agent) Store() store.Store { return a.store }

// Reconciler is the agent's reconciler, for tests that drive it as the
// boot edge and the API do.
func (a *Agent) Reconciler() *provision.Reconciler { return a.reconciler }

// reloadTokens re-reads the token file on SIGHUP, so tokens rotate without
// a restart. A file that fails to load keeps the current tokens (dropping
// them all would lock every client out), but a revocation that did not
// happen must not go unnoticed: until a good file loads, /readyz says
// why with 503, baremetal_agent_token_file_degraded is 1 and the error is
// logged again every tokenReloadNag.
func (a *Agent) reloadTokens(ctx context.Context, hup chan os.Signal) error {
	defer signal.Stop(hup)
	nag := time.NewTicker(tokenReloadNag)
	defer nag.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-nag.C:
			if p := a.tokenFileProblem.Load(); p != nil {
				a.log.Error("token file still not reloaded; the previous tokens stay in force until a good file is loaded (SIGHUP)", "err", *p)
			}
		case <-hup:
			ts, err := apiserver.LoadTokenFile(a.cfg.TokenFile)
			if err == nil {
				err = a.api.SetTokens(ts)
			}
			if err != nil {
				problem := err.Error()
				a.tokenFileProblem.Store(&problem)
				a.tokenDegraded.Set(1)
				a.log.Error("SIGHUP: token file not reloaded; the previous tokens stay in force and the agent reports not ready until a good file is loaded", "err", err)
				continue
			}
			a.tokenFileProblem.Store(nil)
			a.tokenDegraded.Set(0)
			a.log.Info("SIGHUP: api tokens reloaded", "count", ts.Len())
		}
	}
}

// tokenReloadNag is how often a failed token reload is logged again (a
// variable so a test need not wait a minute).
var tokenReloadNag = time.Minute

func (a *Agent) httpServer(h http.Handler, name string) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// TLS handshake failures and the like; never request contents.
		ErrorLog: slog.NewLogLogger(a.log.With("component", name).Handler(), slog.LevelWarn),
	}
}

// serveTLS serves srv on ln until ctx ends, then stops accepting and drains
// in-flight requests for at most drainTimeout.
func serveTLS(ctx context.Context, log *slog.Logger, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("drain deadline passed; closing remaining connections", "addr", ln.Addr().String(), "err", err)
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close releases what New acquired; Run calls it on its way out, and a
// caller that never runs the agent calls it instead. It is idempotent.
func (a *Agent) Close() {
	if a.hup != nil {
		signal.Stop(a.hup)
	}
	for _, c := range []io.Closer{a.apiLn, a.bootLn, a.tftpConn, a.dhcpConn, a.pxeCon} {
		if c != nil {
			_ = c.Close() // already closed by its server after Run
		}
	}
	if a.bmcs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		a.bmcs.Close(ctx) // log out of every Redfish session
		cancel()
		a.bmcs = nil
	}
	if a.store == nil {
		return
	}
	if err := a.store.Close(); err != nil {
		a.log.Error("closing the store", "err", err)
		return
	}
	a.store = nil
	a.log.Info("store closed")
}
