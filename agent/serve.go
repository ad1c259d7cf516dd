package main

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
	storeFile   = "agent.db"
	sealKeyFile = "seal.key"
)

func serveCommand(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := loadConfig(args, os.Getenv, stderr)
	if err != nil {
		return err
	}
	return run(ctx, cfg, newLogger(cfg, stderr))
}

// agent holds the components of a running agent. build constructs them and
// services lists the long-running parts; to add a component (boot server,
// BMC manager, reconciler), construct it in build from the fields here
// (store, metrics, bootURL, log) and return its run function from services.
// A reconciler that implements api.Actions is set as a.actions before the
// API server is built.
type agent struct {
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
	// ready is set once every listener is bound, and cleared at shutdown so
	// /readyz tells load balancers to stop sending work.
	ready atomic.Bool
	// tokenFileProblem is why the last token reload could not be applied
	// ("" once a good file is loaded): the agent is degraded meanwhile, as
	// a token removed from the file may still be in force.
	tokenFileProblem atomic.Pointer[string]
	tokenDegraded    prometheus.Gauge
}

// service is a long-running part of the agent. run blocks until ctx ends
// (then it stops cleanly and returns nil) or the service fails.
type service struct {
	name string
	run  func(ctx context.Context) error
}

// run is `baremetal-agent serve`: it builds the agent, runs its services
// until ctx ends or one fails, drains them and closes the store.
func run(ctx context.Context, cfg Config, log *slog.Logger) error {
	a, err := build(cfg, log)
	if err != nil {
		return err
	}
	defer a.close()
	svcs, err := a.services()
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, svc := range svcs {
		g.Go(func() error {
			if err := svc.run(gctx); err != nil {
				return fmt.Errorf("%s: %w", svc.name, err)
			}
			return nil
		})
	}
	a.ready.Store(true)
	log.Info("agent ready", "version", version, "boot_url", a.bootURL)
	go func() {
		<-gctx.Done()
		a.ready.Store(false)
		if ctx.Err() != nil {
			log.Info("stopping: draining in-flight requests")
		}
	}()
	err = g.Wait()
	a.close()
	if err != nil {
		log.Error("agent stopped on an error", "err", err)
		return err
	}
	log.Info("agent stopped")
	return nil
}

func build(cfg Config, log *slog.Logger) (*agent, error) {
	a := &agent{cfg: cfg, log: log}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if fi, err := os.Stat(cfg.DataDir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("data dir is accessible by group or others; the store and keys inside are not, but chmod 700 is advised",
			"path", cfg.DataDir, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
	}
	tokens, err := apiserver.LoadTokenFile(cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	var guessed bool
	if a.bootURL, guessed, err = cfg.bootURL(); err != nil {
		return nil, fmt.Errorf("boot URL: %w", err)
	}
	if guessed {
		log.Warn("no --boot-url: advertising a guess; set --boot-url to the address machines reach this agent at", "boot_url", a.bootURL)
	}
	if a.apiCert, err = apiCertificate(cfg, log); err != nil {
		return nil, err
	}

	a.metrics = prometheus.NewRegistry()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "baremetal", Subsystem: "agent", Name: "build_info",
		Help: "The running agent's version.", ConstLabels: prometheus.Labels{"version": version},
	})
	buildInfo.Set(1)
	a.tokenDegraded = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "baremetal_agent_token_file_degraded",
		Help: "1 while the last SIGHUP reload of the token file failed and the previous tokens stay in force.",
	})
	a.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo, a.tokenDegraded)

	a.store, err = store.OpenBolt(filepath.Join(cfg.DataDir, storeFile), store.BoltOptions{
		KeyFile: filepath.Join(cfg.DataDir, sealKeyFile),
		Logger:  log.With("component", "store"),
	})
	if err != nil {
		return nil, err
	}

	tune, err := cfg.tuning()
	if err != nil {
		a.close()
		return nil, err
	}
	a.bmcs = bmc.NewManager(bmc.Config{
		MaxConcurrent:  tune.bmcMaxConcurrent,
		RequestTimeout: tune.bmcRequestTimeout,
		LoginBackoff:   tune.bmcLoginBackoff,
		Sessions:       a.store,
		Logger:         log.With("component", "bmc"),
		Registerer:     a.metrics,
	})
	pollInterval := tune.powerPoll
	if pollInterval == 0 {
		pollInterval = -1 // the reconciler reads a negative interval as "off"
	}
	bootStall := tune.bootStall
	if bootStall == 0 {
		bootStall = -1 // likewise
	}
	inventoryEvery := tune.inventory
	if inventoryEvery == 0 {
		inventoryEvery = -1 // likewise
	}
	a.reconciler = provision.New(provision.Config{
		MaxActive: tune.provisioningLimit,
		// A BMC step holds its worker, so fewer workers than the limit
		// would make the limit unreachable.
		Workers:           max(8, tune.provisioningLimit),
		PowerPollInterval: pollInterval,
		BootStallWarning:  bootStall,
		InventoryInterval: inventoryEvery,
		Timeouts: provision.StepTimeouts{
			WaitPXE: tune.waitPXE,
			Install: tune.install,
			Retries: tune.stepRetries,
		},
		Logger:     log.With("component", "provision"),
		Registerer: a.metrics,
	}, a.store, a.bmcs)
	tftpRoot := cfg.TFTPRoot
	if tftpRoot == "" {
		if tftpRoot, err = stageTFTPRoot(boot.DefaultTFTPRoot, filepath.Join(cfg.DataDir, "tftp"), log.With("component", "boot")); err != nil {
			a.close()
			return nil, err
		}
	}
	a.boot, err = boot.New(boot.Config{
		TFTPRoot:         tftpRoot,
		AssetsDir:        cfg.AssetsDir,
		DeployImageDir:   cfg.DeployImageDir,
		ImageCacheDir:    filepath.Join(cfg.DataDir, "image-cache"),
		BootURL:          a.bootURL,
		UnknownMAC:       cfg.UnknownMAC,
		TFTPTimeout:      tune.tftpTimeout,
		TFTPRetries:      tune.tftpRetries,
		TFTPAnticipate:   uint(tune.tftpWindow),
		TFTPMaxTransfers: tune.tftpMaxTransfers,
		TFTPMaxPerClient: tune.tftpMaxPerClient,
		ProxyDHCP: boot.ProxyDHCPConfig{
			Enabled:   tune.proxyDHCP,
			Interface: cfg.ProxyDHCPInterface,
			Addr:      cfg.ProxyDHCPAddr,
		},
		Logger:     log.With("component", "boot"),
		Registerer: a.metrics,
	}, a.store, a.reconciler)
	if err != nil {
		a.close()
		return nil, err
	}

	caps := []string{"machines", "boot_profiles", "clusters", "events", "long_poll", "leases", "actions", "redfish", "tftp", "ipxe", "templates"}
	if tune.proxyDHCP {
		caps = append(caps, "proxy_dhcp")
	}
	a.api, err = apiserver.NewServer(apiserver.ServerConfig{
		Store:         a.store,
		Actions:       a.reconciler,
		Tokens:        tokens,
		Version:       version,
		BootURL:       a.bootURL,
		Capabilities:  caps,
		Logger:        log.With("component", "api"),
		Registerer:    a.metrics,
		Gatherer:      a.metrics,
		LeaseDuration: tune.leaseDuration,
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
		a.close()
		return nil, err
	}
	log.Info("api tokens loaded", "count", tokens.Len())
	return a, nil
}

// services binds every listener (so a taken port fails the start at once)
// and returns the agent's long-running parts.
func (a *agent) services() ([]service, error) {
	apiLn, err := net.Listen("tcp", a.cfg.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("api listener on %s: %w", a.cfg.APIAddr, err)
	}
	srv := a.httpServer(a.api.Handler(), "api")
	srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: tls12Suites, Certificates: []tls.Certificate{a.apiCert}}
	srv.RegisterOnShutdown(a.api.StopWaiting)
	a.log.Info("api listening", "addr", apiLn.Addr().String(), "tls", true)

	bootLn, err := net.Listen("tcp", a.cfg.BootAddr)
	if err != nil {
		apiLn.Close()
		return nil, fmt.Errorf("boot listener on %s: %w", a.cfg.BootAddr, err)
	}
	tftpConn, err := net.ListenPacket("udp", a.cfg.TFTPAddr)
	if err != nil {
		apiLn.Close()
		bootLn.Close()
		return nil, fmt.Errorf("tftp listener on %s: %w", a.cfg.TFTPAddr, err)
	}
	a.log.Info("boot listening", "http", bootLn.Addr().String(), "tftp", tftpConn.LocalAddr().String(), "boot_url", a.bootURL)
	// Subscribed here, before the agent reports ready, so an early SIGHUP
	// cannot take the default action (exit).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	svcs := []service{
		{name: "api server", run: func(ctx context.Context) error { return serveHTTP(ctx, a.log, srv, apiLn, true) }},
		{name: "token reload", run: func(ctx context.Context) error { return a.reloadTokens(ctx, hup) }},
		{name: "boot http", run: func(ctx context.Context) error { return a.boot.ServeHTTP(ctx, bootLn) }},
		{name: "tftp", run: func(ctx context.Context) error { return a.boot.ServeTFTP(ctx, tftpConn) }},
		{name: "reconciler", run: a.reconciler.Run},
		// Sessions a killed agent left open count against the BMCs' small
		// session tables until they time out (30 min on iDRAC).
		{name: "bmc session cleanup", run: func(ctx context.Context) error { a.bmcs.CleanupSessions(ctx); return nil }},
	}
	if tune, _ := a.cfg.tuning(); tune.proxyDHCP {
		// boot.Run with neither HTTP nor TFTP address serves ProxyDHCP alone.
		svcs = append(svcs, service{name: "proxydhcp", run: a.boot.Run})
	}
	return svcs, nil
}

// reloadTokens re-reads the token file on SIGHUP, so tokens rotate without
// a restart. A file that fails to load keeps the current tokens (dropping
// them all would lock every client out), but a revocation that did not
// happen must not go unnoticed: until a good file loads, /readyz says
// why with 503, baremetal_agent_token_file_degraded is 1 and the error is
// logged again every tokenReloadNag.
func (a *agent) reloadTokens(ctx context.Context, hup chan os.Signal) error {
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

func (a *agent) httpServer(h http.Handler, name string) *http.Server {
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

// serveHTTP serves srv on ln until ctx ends, then stops accepting and drains
// in-flight requests for at most drainTimeout.
func serveHTTP(ctx context.Context, log *slog.Logger, srv *http.Server, ln net.Listener, useTLS bool) error {
	errc := make(chan error, 1)
	go func() {
		if useTLS {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
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

func (a *agent) close() {
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
