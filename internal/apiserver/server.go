package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// PathOpenAPI serves the OpenAPI document of this API.
const PathOpenAPI = "/v1/openapi.yaml"

// ErrorBody codes beyond those in types.go.
const (
	CodeMethodNotAllowed = "method_not_allowed" // 405
	CodeActionFailed     = "action_failed"      // 502: a machine action failed at the BMC
)

// ServerConfig configures the API server.
type ServerConfig struct {
	Store store.Store
	// Actions carries out machine actions; nil answers them with 503.
	Actions api.Actions
	// Tokens authorise /v1 requests; required.
	Tokens       *TokenSet
	Version      string
	BootURL      string
	Capabilities []string
	// Logger nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the API's metrics and Gatherer is what /metrics
	// serves; the agent passes one *prometheus.Registry as both, shared by
	// all its components. If Registerer is nil the API's metrics go to a
	// registry of its own (served at /metrics), never the global default;
	// if only Gatherer is nil, Registerer must also be a Gatherer.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Ready reports whether the agent can serve (nil: always ready).
	Ready func() error
	// Now is the clock for leases; nil means time.Now.
	Now func() time.Time
	// LeaseDuration is how long a lease lasts; 0 means api.DefaultLeaseDuration.
	LeaseDuration time.Duration
}

// Server is the agent's REST API.
type Server struct {
	store        store.Store
	actions      api.Actions
	tokens       atomic.Pointer[TokenSet]
	version      string
	bootURL      string
	capabilities []string
	log          *slog.Logger
	ready        func() error
	now          func() time.Time
	leaseFor     time.Duration
	gatherer     prometheus.Gatherer

	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// waiting counts long-polls subscribed to the store.
	waiting atomic.Int64
	// stopWaiting is closed by StopWaiting; long-polls answer at once then.
	stopWaiting chan struct{}
	stopOnce    sync.Once

	// specMu serialises spec writes that check references between objects
	// (a machine naming a profile, a cluster claiming machines, a profile
	// delete checking users), so a check and its write cannot interleave
	// with another request's. Status writes by the reconciler do not change
	// references and do not take it.
	specMu sync.Mutex

	handler http.Handler
}

// access says who may call a route.
type access int

const (
	public    access = iota // no token: probes and scrapes
	authed                  // any valid token; writes need a read-write one
	readWrite               // a read-write token, even to read: the answer holds a secret
)

type route struct {
	method  string
	path    string
	access  access
	handler func(*Server, http.ResponseWriter, *http.Request) error
}

// routes is the single table of the API's routes: the mux is built from it
// and the OpenAPI test compares it with openapi.yaml.
var routes = []route{
	{http.MethodGet, api.PathHealthz, public, (*Server).healthz},
	{http.MethodGet, api.PathReadyz, public, (*Server).readyz},
	{http.MethodGet, api.PathMetrics, public, nil}, // promhttp, wired in NewServer
	{http.MethodGet, api.PathInfo, authed, (*Server).info},
	{http.MethodGet, PathOpenAPI, authed, (*Server).openAPI},

	{http.MethodGet, api.PathMachines, authed, (*Server).listMachines},
	{http.MethodPost, api.PathMachines, authed, (*Server).createMachine},
	{http.MethodGet, api.PathMachine, authed, (*Server).getMachine},
	{http.MethodPut, api.PathMachine, authed, (*Server).updateMachine},
	{http.MethodDelete, api.PathMachine, authed, (*Server).deleteMachine},
	{http.MethodPost, api.PathMachineAction, authed, (*Server).machineAction},
	{http.MethodGet, api.PathMachineEvents, authed, (*Server).machineEvents},
	{http.MethodPut, api.PathMachineLease, authed, (*Server).renewLease},
	{http.MethodDelete, api.PathMachineLease, authed, (*Server).releaseLease},
	{http.MethodGet, api.PathEvents, authed, (*Server).agentEvents},

	{http.MethodGet, api.PathProfiles, authed, (*Server).listProfiles},
	{http.MethodPost, api.PathProfiles, authed, (*Server).createProfile},
	{http.MethodGet, api.PathProfile, authed, (*Server).getProfile},
	{http.MethodPut, api.PathProfile, authed, (*Server).updateProfile},
	{http.MethodDelete, api.PathProfile, authed, (*Server).deleteProfile},

	{http.MethodGet, api.PathMachineRendered, authed, (*Server).renderedTemplate},
	{http.MethodGet, api.PathMachineGeneratedSecret, readWrite, (*Server).getGeneratedSecret},
	{http.MethodPost, api.PathMachineGeneratedSecret, readWrite, (*Server).ensureGeneratedSecret},
	{http.MethodDelete, api.PathMachineGeneratedSecret, readWrite, (*Server).rotateGeneratedSecret},

	{http.MethodGet, api.PathSiteParams, authed, (*Server).getSiteParams},
	{http.MethodPut, api.PathSiteParams, authed, (*Server).putSiteParams},
	{http.MethodDelete, api.PathSiteParams, authed, (*Server).deleteSiteParams},

	{http.MethodGet, api.PathTemplates, authed, (*Server).listTemplates},
	{http.MethodPost, api.PathTemplates, authed, (*Server).createTemplate},
	{http.MethodGet, api.PathTemplate, authed, (*Server).getTemplate},
	{http.MethodPut, api.PathTemplate, authed, (*Server).updateTemplate},
	{http.MethodDelete, api.PathTemplate, authed, (*Server).deleteTemplate},

	{http.MethodGet, api.PathClusters, authed, (*Server).listClusters},
	{http.MethodPost, api.PathClusters, authed, (*Server).createCluster},
	{http.MethodGet, api.PathCluster, authed, (*Server).getCluster},
	{http.MethodPut, api.PathCluster, authed, (*Server).updateCluster},
	{http.MethodDelete, api.PathCluster, authed, (*Server).deleteCluster},
}

// NewServer builds the API server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("api: ServerConfig.Store is required")
	}
	if cfg.Tokens == nil || cfg.Tokens.Len() == 0 {
		return nil, errors.New("api: ServerConfig.Tokens is required: the API never runs without authentication")
	}
	s := &Server{
		store:        cfg.Store,
		actions:      cfg.Actions,
		version:      cfg.Version,
		bootURL:      cfg.BootURL,
		capabilities: append([]string{}, cfg.Capabilities...),
		log:          cfg.Logger,
		ready:        cfg.Ready,
		now:          cfg.Now,
		leaseFor:     cfg.LeaseDuration,
		stopWaiting:  make(chan struct{}),
	}
	s.tokens.Store(cfg.Tokens)
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.leaseFor < 0 {
		return nil, fmt.Errorf("api: ServerConfig.LeaseDuration %s is negative", s.leaseFor)
	}
	if s.leaseFor == 0 {
		s.leaseFor = api.DefaultLeaseDuration
	}
	reg, gat := cfg.Registerer, cfg.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gat = r, r
	}
	if gat == nil {
		g, ok := reg.(prometheus.Gatherer)
		if !ok {
			return nil, errors.New("api: ServerConfig.Gatherer is required when the Registerer is not a Gatherer")
		}
		gat = g
	}
	s.gatherer = gat
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "baremetal", Subsystem: "api", Name: "requests_total",
		Help: "API requests by route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "baremetal", Subsystem: "api", Name: "request_duration_seconds",
		Help: "API request latency by route pattern and method (long-polls included).",
		// Long-polls last up to api.MaxWait, so the buckets reach it.
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"route", "method"})
	waiting := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "baremetal", Subsystem: "api", Name: "long_polls_waiting",
		Help: "Long-poll requests currently waiting for a change.",
	}, func() float64 { return float64(s.waiting.Load()) })
	for _, c := range []prometheus.Collector{s.requests, s.latency, waiting} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("api: registering metrics: %w", err)
		}
	}

	mux := http.NewServeMux()
	for _, rt := range routes {
		var h http.Handler
		if rt.path == api.PathMetrics {
			h = promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{})
		} else {
			h = s.adapt(rt)
		}
		mux.Handle(rt.method+" "+rt.path, s.instrument(rt, h))
	}
	// The catch-all below matches every request the routes do not, which
	// would turn a wrong method into a 404; pathMux finds the path's
	// methods so it is answered 405 with Allow.
	allowed := map[string][]string{}
	for _, rt := range routes {
		allowed[rt.path] = append(allowed[rt.path], rt.method)
	}
	pathMux := http.NewServeMux()
	for path, methods := range allowed {
		allow := strings.Join(methods, ", ")
		pathMux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeJSON(w, http.StatusMethodNotAllowed, api.ErrorBody{Error: api.ErrorDetail{Code: CodeMethodNotAllowed,
				Message: fmt.Sprintf("%s does not take %s; it takes %s", r.URL.Path, r.Method, allow)}})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if h, pattern := pathMux.Handler(r); pattern != "" {
			h.ServeHTTP(w, r)
			return
		}
		writeJSON(w, http.StatusNotFound, api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeNotFound,
			Message: fmt.Sprintf("no route for %s %s; see %s", r.Method, r.URL.Path, PathOpenAPI)}})
	})
	s.handler = mux
	return s, nil
}

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// SetTokens replaces the API tokens, e.g. after the token file was edited
// to rotate them. Requests already authenticated are not affected.
func (s *Server) SetTokens(ts *TokenSet) error {
	if ts == nil || ts.Len() == 0 {
		return errors.New("api: refusing an empty token set")
	}
	s.tokens.Store(ts)
	return nil
}

// StopWaiting ends every long-poll, now and later, with the current state,
// so an http.Server's Shutdown can drain without waiting up to api.MaxWait for
// each one. Register it with http.Server.RegisterOnShutdown.
func (s *Server) StopWaiting() { s.stopOnce.Do(func() { close(s.stopWaiting) }) }

// adapt turns a route's error-returning handler into an http.Handler with
// authentication and panic recovery.
func (s *Server) adapt(rt route) http.Handler {
	pattern := rt.method + " " + rt.path
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt.access != public && !s.authenticate(w, r, rt.access == readWrite) {
			return
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("handler panic", "route", pattern, "panic", fmt.Sprint(p))
				s.writeError(w, r, pattern, errors.New("panic"))
			}
		}()
		if err := rt.handler(s, w, r); err != nil {
			s.writeError(w, r, pattern, err)
		}
	})
}

// instrument counts and times requests by route pattern (never by raw path,
// which would let callers grow the label set without bound).
func (s *Server) instrument(rt route, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		d := time.Since(start)
		s.requests.WithLabelValues(rt.path, r.Method, strconv.Itoa(rec.status)).Inc()
		s.latency.WithLabelValues(rt.path, r.Method).Observe(d.Seconds())
		if rt.access == authed {
			// Writes are the audit trail and log at info; reads (long-polls
			// every few seconds) at debug; probes and scrapes not at all.
			// The Authorization header and bodies are never logged.
			level := slog.LevelDebug
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				level = slog.LevelInfo
			}
			attrs := []any{"method", r.Method, "route", rt.path, "path", r.URL.Path,
				"status", rec.status, "duration", d, "remote", r.RemoteAddr}
			if h := r.Header.Get(api.HeaderLeaseHolder); h != "" {
				attrs = append(attrs, "lease_holder", h)
			}
			s.log.Log(r.Context(), level, "api request", attrs...)
		}
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client hung up; nothing left to tell it
}

type statusBody struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, statusBody{Status: "ok"})
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) error {
	if s.ready != nil {
		if err := s.ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, statusBody{Status: "not ready", Error: err.Error()})
			return nil
		}
	}
	writeJSON(w, http.StatusOK, statusBody{Status: "ok"})
	return nil
}

func (s *Server) info(w http.ResponseWriter, _ *http.Request) error {
	caps := s.capabilities
	if caps == nil {
		caps = []string{}
	}
	writeJSON(w, http.StatusOK, api.Info{Version: s.version, APIVersion: api.APIVersion, Capabilities: caps, BootURL: s.bootURL, LeaseSeconds: s.leaseFor.Seconds()})
	return nil
}
