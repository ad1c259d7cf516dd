package bmc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/schemas"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/endpoint"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// Config tunes a Manager. Zero values take the documented defaults.
type Config struct {
	MaxConcurrent    int           // global limit on in-flight BMC operations (default 20)
	ConnectTimeout   time.Duration // TCP connect and TLS handshake (default 10s)
	RequestTimeout   time.Duration // per HTTP request attempt (default 30s)
	GracefulTimeout  time.Duration // GracefulShutdown falls back to ForceOff after this (default 2m)
	PowerWaitTimeout time.Duration // wait for the observed PowerState after an action (default 2m)
	PollInterval     time.Duration // power-state polling (default 2s)
	// MaxRetries, RetryBase and RetryMax are the BMC retry policy, capped
	// end to end at three levels:
	//
	//   - One Redfish request: at most MaxRetries retries (default 5) of a
	//     transient failure: 5xx but 501 and 505, 429, timeouts, connection
	//     errors. An action such as a reset is retried only on 429 or when
	//     its request never reached the BMC: after any other failure it may
	//     have been carried out. Each attempt gets
	//     RequestTimeout; between attempts the wait is backoff.Exponential
	//     from RetryBase (default 500ms), or the BMC's Retry-After when
	//     longer, both capped at RetryMax (default 30s). A wait that would
	//     outlast the caller's deadline is not started.
	//   - One operation (power, boot override, inventory): the caller's
	//     context. The reconciler gives every BMC call a timeout (its step's
	//     in provision.StepTimeouts; Inspect's for polls), which bounds all
	//     the requests and retries inside it, the boot override's conflict
	//     retries included.
	//   - One step: the reconciler retries a failed call --step-retries
	//     times (default 3), with its own backoff capped at
	//     provision.Config.RetryMax (default 1m), then fails the machine.
	//     So a BMC step ends within (retries+1) x step timeout + retries x
	//     that cap. The one exception is ErrSessionLimit, which is waited
	//     out without a limit: a full session table empties by itself.
	//
	// Refused logins are spaced by LoginBackoff instead (below).
	MaxRetries int
	RetryBase  time.Duration
	RetryMax   time.Duration
	// LoginBackoff and LoginBackoffMax space out logins to a BMC+user whose
	// password was refused: the wait doubles per refusal from LoginBackoff
	// up to LoginBackoffMax (defaults 30s and 15m), so a wrong password
	// does not lock the account on BMCs that lock after a few failures.
	LoginBackoff, LoginBackoffMax time.Duration
	Logger                        *slog.Logger // nil: slog.Default()
	// Sessions, when set, keeps a record of every Redfish session opened
	// until it is logged out, for CleanupSessions at the next start.
	Sessions SessionStore
	// Registerer, when set, receives operation and request metrics.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 20
	}
	def(&c.ConnectTimeout, 10*time.Second)
	def(&c.RequestTimeout, 30*time.Second)
	def(&c.GracefulTimeout, 2*time.Minute)
	def(&c.PowerWaitTimeout, 2*time.Minute)
	def(&c.PollInterval, 2*time.Second)
	def(&c.RetryBase, 500*time.Millisecond)
	def(&c.RetryMax, 30*time.Second)
	def(&c.LoginBackoff, 30*time.Second)
	def(&c.LoginBackoffMax, 15*time.Minute)
	if c.MaxRetries < 0 {
		c.MaxRetries = 0
	} else if c.MaxRetries == 0 {
		c.MaxRetries = 5
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Manager drives BMCs over Redfish. Callers pass credentials with every
// call; the Manager keeps one Redfish session per (service, user, password),
// runs one operation at a time per BMC endpoint and at most MaxConcurrent
// operations overall. It is safe for concurrent use.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	global  chan struct{}

	mu    sync.Mutex
	locks map[string]*epLock
	conns map[connKey]*conn
	auth  map[authKey]*refusals

	skippedDrives sync.Map // endpoint + drive link already logged as not a drive
}

// SessionStore keeps the Redfish sessions the Manager has open
// (store.Bolt implements it).
type SessionStore interface {
	PutBMCSession(ctx context.Context, s model.BMCSession) error
	DeleteBMCSession(ctx context.Context, base, uri string) error
	ListBMCSessions(ctx context.Context) ([]model.BMCSession, error)
}

// authKey is one account on one BMC.
type authKey struct{ base, user string }

// refusals is a BMC account's recent refused logins. secret is the hash of
// the refused password: another password is tried at once.
type refusals struct {
	secret [sha256.Size]byte
	at     []time.Time
	next   time.Time
}

// NewManager returns a Manager; call Close on shutdown to log out sessions.
func NewManager(cfg Config) *Manager {
	cfg.setDefaults()
	return &Manager{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "bmc"),
		metrics: newMetrics(cfg.Registerer),
		global:  make(chan struct{}, cfg.MaxConcurrent),
		locks:   map[string]*epLock{},
		conns:   map[connKey]*conn{},
		auth:    map[authKey]*refusals{},
	}
}

// epLock serialises operations on one BMC endpoint. It also caches which
// system a host-only endpoint resolved to and what boot mode it was seen
// in; only the holder touches them.
type epLock struct {
	ch     chan struct{}
	system string
	// sawUEFI: the system reported BootSourceOverrideMode UEFI once, so a
	// Legacy read later is a BMC's revert, not the machine's mode.
	sawUEFI bool
}

func (l *epLock) acquire(ctx context.Context) error {
	select {
	case l.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *epLock) release() { <-l.ch }

func (m *Manager) lockFor(key string) *epLock {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.locks[key]
	if l == nil {
		l = &epLock{ch: make(chan struct{}, 1)}
		m.locks[key] = l
	}
	return l
}

// connKey identifies a login. The password enters only as part of a hash, so
// the map key itself never holds it; TLS settings are included because they
// decide whom the password is sent to.
type connKey struct {
	base   string
	user   string
	secret [sha256.Size]byte
}

// conn is one authenticated Redfish client, re-created when its session dies.
type conn struct {
	base, user, pass string
	secret           [sha256.Size]byte
	insecure         bool
	caPEM            string
	hc               *http.Client

	mu        sync.Mutex
	api       *gofish.APIClient
	session   bool   // authenticated by session token (else basic auth)
	sessionID string // session URI, for logout
	systems   string // Systems collection link from the service root
	gen       uint64 // bumped per login, so one 401 triggers one re-login
}

func (m *Manager) connFor(ep endpoint.BMC, c model.BMC) (*conn, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%t\x00%s", c.Password, c.Insecure, c.CACertPEM)
	key := connKey{base: ep.Base, user: c.Username}
	copy(key.secret[:], h.Sum(nil))

	m.mu.Lock()
	defer m.mu.Unlock()
	if cn := m.conns[key]; cn != nil {
		return cn, nil
	}
	hc, err := m.newHTTPClient(c.Insecure, c.CACertPEM)
	if err != nil {
		return nil, err
	}
	cn := &conn{base: ep.Base, user: c.Username, pass: c.Password, secret: key.secret, insecure: c.Insecure, caPEM: c.CACertPEM, hc: hc}
	m.conns[key] = cn
	return cn, nil
}

// client returns the logged-in client and the service's Systems link,
// logging in when there is none.
func (cn *conn) client(ctx context.Context, m *Manager) (*gofish.APIClient, string, uint64, error) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.api == nil {
		if err := m.loginAllowed(ctx, cn); err != nil {
			return nil, "", 0, err
		}
		if err := m.login(ctx, cn); err != nil {
			if statusOf(err) == http.StatusUnauthorized {
				return nil, "", 0, m.refused(cn)
			}
			return nil, "", 0, err
		}
		cn.gen++
	}
	return cn.api, cn.systems, cn.gen, nil
}

// expire drops a session the BMC no longer accepts; a 401 seen by a client
// from an older login does not throw away a newer one. It returns the
// dropped session's URI.
func (cn *conn) expire(gen uint64) (string, bool) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.gen != gen || !cn.session {
		return "", false
	}
	id := cn.sessionID
	cn.api, cn.sessionID = nil, ""
	return id, true
}

type rootLinks struct {
	Systems struct {
		ID string `json:"@odata.id"`
	} `json:"Systems"`
	SessionService struct {
		ID string `json:"@odata.id"`
	} `json:"SessionService"`
	Links struct {
		Sessions struct {
			ID string `json:"@odata.id"`
		} `json:"Sessions"`
	} `json:"Links"`
}

// login opens a Redfish session, falling back to basic auth when the BMC
// offers no usable SessionService (some disable it, some lack it; wrong
// credentials then surface as a 401 on the first authenticated request) or
// its session table is full. Credentials the SessionService refused are
// never sent again through basic auth: one login attempt per try.
func (m *Manager) login(ctx context.Context, cn *conn) error {
	var links rootLinks
	body, err := cn.raw(ctx, http.MethodGet, "/redfish/v1/", nil)
	if err != nil {
		return err
	}
	// A service root that is not an object (Supermicro X10 answers null) just
	// means the standard paths apply.
	_ = json.Unmarshal(body, &links)
	cn.systems = links.Systems.ID
	if cn.systems == "" {
		cn.systems = "/redfish/v1/Systems"
	}
	sessions := links.Links.Sessions.ID
	if sessions == "" && links.SessionService.ID != "" {
		sessions = strings.TrimRight(links.SessionService.ID, "/") + "/Sessions"
	}
	if sessions == "" {
		sessions = "/redfish/v1/SessionService/Sessions"
	}

	cfg := gofish.ClientConfig{
		Endpoint:              cn.base,
		HTTPClient:            cn.hc,
		NoModifyTransport:     true,
		ReuseConnections:      true,
		MaxConcurrentRequests: 4,
	}
	token, location, err := cn.createSession(ctx, sessions)
	switch {
	case err == nil:
		cfg.Session = &gofish.Session{ID: location, Token: token}
		m.recordSession(ctx, cn, location, token)
	case isSessionLimit(err):
		// A full session table (agents killed before logging out, other
		// tools) is no reason to stop while basic auth still works.
		if perr := cn.probeBasic(ctx); perr != nil {
			return &Error{Msg: fmt.Sprintf("the BMC's session table is full (%s) and it does not accept basic auth (%s): waiting, with backoff, for sessions to expire or be closed on the BMC",
				sessionFailure(err), scrub(sessionFailure(perr), cn.pass)), Err: ErrSessionLimit}
		}
		m.log.Warn("BMC session table full; using basic auth", "endpoint", cn.base, "user", cn.user, "reason", scrub(sessionFailure(err), cn.pass))
		cfg.Username, cfg.Password, cfg.BasicAuth = cn.user, cn.pass, true
	case statusOf(err) == http.StatusUnauthorized || statusOf(err) == http.StatusForbidden:
		// Refused credentials are refused: trying them again through basic
		// auth only brings an account lockout closer.
		return err
	case statusOf(err) >= 400 && statusOf(err) < 500, errors.Is(err, errNoToken):
		m.log.Info("BMC offers no usable Redfish session; using basic auth",
			"endpoint", cn.base, "user", cn.user, "reason", scrub(sessionFailure(err), cn.pass))
		cfg.Username, cfg.Password, cfg.BasicAuth = cn.user, cn.pass, true
	default:
		return err
	}
	api, err := gofish.ConnectContext(ctx, cfg)
	if err != nil {
		if cfg.Session != nil {
			cn.logout(ctx, m, location, token)
		}
		return err
	}
	cn.api, cn.session, cn.sessionID = api, cfg.Session != nil, location
	if cn.session {
		m.log.Debug("BMC session opened", "endpoint", cn.base, "user", cn.user)
	}
	return nil
}

var errNoToken = errors.New("session created without an X-Auth-Token")

// isSessionLimit recognises a login refused because the BMC's session
// table is full: iDRAC's RAC0218 ("The maximum number of user sessions is
// reached", 400) and the standard SessionLimitExceeded (503 and others).
func isSessionLimit(err error) bool {
	re := redfishError(err)
	if re == nil {
		return false
	}
	texts := []string{re.Code, re.Message}
	for _, m := range re.ExtendedInfos {
		texts = append(texts, m.MessageID, m.Message)
	}
	for _, t := range texts {
		t = strings.ToLower(t)
		if strings.Contains(t, "rac0218") || strings.Contains(t, "sessionlimitexceeded") ||
			strings.Contains(t, "maximum number of user sessions") || strings.Contains(t, "number of simultaneous sessions") {
			return true
		}
	}
	return false
}

// probeBasic asks for the Systems collection with basic auth, to learn
// whether the service takes it before relying on it.
func (cn *conn) probeBasic(ctx context.Context) error {
	path := cn.systems
	hdr := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(cn.user+":"+cn.pass))}}
	_, err := cn.raw(ctx, http.MethodGet, path, hdr)
	return err
}

// recordSession keeps the session in the store until it is logged out; a
// failure to record only costs the cleanup at the next start.
func (m *Manager) recordSession(ctx context.Context, cn *conn, uri, token string) {
	if m.cfg.Sessions == nil || uri == "" {
		return
	}
	err := m.cfg.Sessions.PutBMCSession(ctx, model.BMCSession{Base: cn.base, URI: uri, User: cn.user, Token: token,
		Insecure: cn.insecure, CACertPEM: cn.caPEM})
	if err != nil {
		m.log.Warn("recording the BMC session failed; it will not be cleaned up if the agent dies", "endpoint", cn.base, "error", err)
	}
}

func (m *Manager) forgetSession(ctx context.Context, base, uri string) {
	if m.cfg.Sessions == nil || uri == "" {
		return
	}
	if err := m.cfg.Sessions.DeleteBMCSession(context.WithoutCancel(ctx), base, uri); err != nil {
		m.log.Warn("forgetting the BMC session failed", "endpoint", base, "error", err)
	}
}

// CleanupSessions deletes the sessions an earlier run of the agent left
// open on its BMCs (killed before it could log out), so they do not fill
// the BMCs' session tables. A session the BMC no longer knows is
// forgotten; one on an unreachable BMC is kept for the next start.
func (m *Manager) CleanupSessions(ctx context.Context) {
	if m.cfg.Sessions == nil {
		return
	}
	left, err := m.cfg.Sessions.ListBMCSessions(ctx)
	if err != nil {
		m.log.Warn("reading leftover BMC sessions failed", "error", err)
		return
	}
	for _, s := range left {
		hc, err := m.newHTTPClient(s.Insecure, s.CACertPEM)
		if err != nil {
			m.forgetSession(ctx, s.Base, s.URI)
			continue
		}
		cn := &conn{base: s.Base, user: s.User, hc: hc}
		_, err = cn.raw(ctx, http.MethodDelete, s.URI, http.Header{"X-Auth-Token": {s.Token}})
		switch st := statusOf(err); {
		case err == nil:
			m.log.Info("deleted a BMC session left open by an earlier run", "endpoint", s.Base, "user", s.User)
			m.forgetSession(ctx, s.Base, s.URI)
		case st == http.StatusNotFound || st == http.StatusUnauthorized:
			m.forgetSession(ctx, s.Base, s.URI) // expired or deleted on the BMC already
		default:
			m.log.Warn("deleting a leftover BMC session failed; trying again at the next start", "endpoint", s.Base,
				"user", s.User, "error", sessionFailure(err))
		}
		hc.CloseIdleConnections()
	}
}

func sessionFailure(err error) string {
	msg, status, _ := describe(err)
	if status != 0 {
		return fmt.Sprintf("%s (%d)", msg, status)
	}
	return msg
}

// createSession POSTs the credentials to the SessionService. It is done by
// hand rather than through gofish so the session URI can be chosen (the
// service root may not link it) and its failure told apart from a failing
// service root.
func (cn *conn) createSession(ctx context.Context, path string) (token, location string, err error) {
	payload, _ := json.Marshal(struct {
		UserName string `json:"UserName"`
		Password string `json:"Password"`
	}{cn.user, cn.pass})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cn.base+path, bytes.NewReader(payload))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := cn.hc.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", "", schemas.ConstructError(resp.StatusCode, body)
	}
	token = resp.Header.Get("X-Auth-Token")
	if token == "" {
		return "", "", errNoToken
	}
	location = resp.Header.Get("Location")
	if u, err := url.Parse(location); err == nil && u.IsAbs() {
		location = u.RequestURI()
	}
	return token, location, nil
}

// raw performs one unauthenticated request and returns the body.
func (cn *conn) raw(ctx context.Context, method, path string, hdr http.Header) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, cn.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := cn.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, schemas.ConstructError(resp.StatusCode, body)
	}
	return body, nil
}

func (cn *conn) logout(ctx context.Context, m *Manager, sessionID, token string) {
	if sessionID == "" {
		return
	}
	hdr := http.Header{"X-Auth-Token": {token}}
	if _, err := cn.raw(ctx, http.MethodDelete, sessionID, hdr); err != nil && statusOf(err) != http.StatusNotFound {
		m.log.Warn("BMC session logout failed", "endpoint", cn.base, "user", cn.user,
			"error", scrub(sessionFailure(err), cn.pass))
		return
	}
	m.forgetSession(ctx, cn.base, sessionID)
}

// target is what an operation works on: a context-bound client and the
// system's URI.
type target struct {
	api  *gofish.APIClient
	path string
	lock *epLock // held for the operation
}

func (t *target) system() (*schemas.ComputerSystem, error) {
	return schemas.GetComputerSystem(t.api, t.path)
}

// resolveSystem returns the system an endpoint means: the one it names, or
// the only one the service has.
func (m *Manager) resolveSystem(ctx context.Context, api *gofish.APIClient, systems string, ep endpoint.BMC, lk *epLock) (string, error) {
	if ep.System != "" {
		return ep.System, nil
	}
	if lk.system != "" {
		return lk.system, nil
	}
	resp, err := api.WithContext(ctx).Get(systems)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var coll struct {
		Members []struct {
			ID string `json:"@odata.id"`
		} `json:"Members"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&coll); err != nil {
		return "", &Error{Msg: "cannot read the Systems collection: " + trim(err.Error())}
	}
	switch len(coll.Members) {
	case 0:
		return "", &Error{Msg: "the BMC reports no computer systems", Err: ErrUnsupported}
	case 1:
		lk.system = coll.Members[0].ID
		return lk.system, nil
	}
	ids := make([]string, 0, 4)
	for i, mb := range coll.Members {
		if i == 3 {
			ids = append(ids, "…")
			break
		}
		ids = append(ids, mb.ID)
	}
	return "", &Error{Msg: fmt.Sprintf("the BMC manages %d systems (%s): name one with a full system URL such as %s%s",
		len(coll.Members), strings.Join(ids, ", "), ep.Base, coll.Members[0].ID), Err: errInvalidEndpoint}
}

// do runs one operation against a BMC: per-endpoint serialisation, the
// global limit, login (once more if the session expired), system
// resolution, and error shaping.
func (m *Manager) do(ctx context.Context, op, what string, c model.BMC, fn func(context.Context, *target) error) (err error) {
	start := time.Now()
	defer func() { m.metrics.observeOp(op, err, time.Since(start)) }()

	ep, perr := parseEndpoint(c.Endpoint)
	if perr != nil {
		return &Error{Endpoint: scrub(endpoint.Display(c.Endpoint), c.Password), Op: op,
			Msg: scrub(perr.Error(), c.Password), Err: errInvalidEndpoint}
	}
	ctx, tr := withTrace(ctx)
	fail := func(err error) error { return m.shape(ep, op, what, c, tr, err) }

	lk := m.lockFor(ep.String())
	if err := lk.acquire(ctx); err != nil {
		return fail(fmt.Errorf("waiting for another operation on this BMC: %w", err))
	}
	defer lk.release()
	select {
	case m.global <- struct{}{}:
	case <-ctx.Done():
		return fail(fmt.Errorf("waiting for a BMC concurrency slot: %w", ctx.Err()))
	}
	defer func() { <-m.global }()
	m.metrics.inFlight.Inc()
	defer m.metrics.inFlight.Dec()

	cn, err := m.connFor(ep, c)
	if err != nil {
		return fail(&Error{Msg: err.Error(), Err: errInvalidEndpoint})
	}
	for relogin := false; ; relogin = true {
		api, systems, gen, err := cn.client(ctx, m)
		if err != nil {
			return fail(err)
		}
		sys, err := m.resolveSystem(ctx, api, systems, ep, lk)
		if err == nil {
			err = fn(ctx, &target{api: api.WithContext(ctx), path: sys, lock: lk})
		}
		if err == nil {
			m.loginAccepted(cn)
			return nil
		}
		if statusOf(err) == http.StatusUnauthorized && !relogin {
			if id, ok := cn.expire(gen); ok {
				m.log.Info("BMC session no longer accepted; logging in again", "endpoint", ep.String(), "user", c.Username)
				m.forgetSession(ctx, cn.base, id)
				continue
			}
		}
		if statusOf(err) == http.StatusUnauthorized {
			// Basic auth, or a fresh session refused at once: the
			// credentials were.
			return fail(m.refused(cn))
		}
		if errors.Is(err, ErrLoginRefused) {
			return fail(err)
		}
		m.loginAccepted(cn)
		return fail(err)
	}
}

// operatorAsked marks a context of a call an operator asked for.
type operatorAsked struct{}

// OperatorAsked returns ctx marked as an operator's explicit request to try
// the BMC now (a write of the machine while its BMC refused the login, say
// after the account was unlocked on the BMC): it gets one login at once,
// despite the backoff. Automatic retries never carry it, so they cannot
// lock the account out.
func OperatorAsked(ctx context.Context) context.Context {
	return context.WithValue(ctx, operatorAsked{}, true)
}

// loginAllowed refuses, without asking the BMC, a login with a password
// the BMC refused until that account's backoff has passed.
func (m *Manager) loginAllowed(ctx context.Context, cn *conn) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.auth[authKey{cn.base, cn.user}]
	if r == nil || r.secret != cn.secret || ctx.Value(operatorAsked{}) != nil {
		return nil
	}
	now := time.Now()
	if !now.Before(r.next) {
		return nil
	}
	return m.refusalLocked(r, now, fmt.Sprintf("; next attempt in %s", r.next.Sub(now).Round(time.Second)))
}

// refused records a refused login and returns the error saying so.
func (m *Manager) refused(cn *conn) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := authKey{cn.base, cn.user}
	r := m.auth[k]
	if r == nil || r.secret != cn.secret {
		r = &refusals{secret: cn.secret}
		m.auth[k] = r
	}
	now := time.Now()
	r.at = append(r.at, now)
	wait := m.cfg.LoginBackoff
	for i := 1; i < len(r.at) && wait < m.cfg.LoginBackoffMax; i++ {
		wait *= 2
	}
	r.next = now.Add(min(wait, m.cfg.LoginBackoffMax))
	m.log.Warn("BMC refused the login; backing off", "endpoint", cn.base, "user", cn.user,
		"refusals", len(r.at), "next_attempt_in", min(wait, m.cfg.LoginBackoffMax))
	return m.refusalLocked(r, now, "")
}

// refusalLocked words a refusal: how many logins were refused lately, so
// an operator sees the password is wrong rather than the BMC flaky.
func (m *Manager) refusalLocked(r *refusals, now time.Time, suffix string) error {
	window := 2 * m.cfg.LoginBackoffMax
	recent := r.at[:0:0]
	for _, t := range r.at {
		if now.Sub(t) <= window {
			recent = append(recent, t)
		}
	}
	r.at = recent
	mins := 1
	if len(recent) > 0 {
		mins = max(1, int(math.Ceil(now.Sub(recent[0]).Minutes())))
	}
	return &Error{Op: "login", StatusCode: http.StatusUnauthorized, Err: ErrLoginRefused,
		Msg: fmt.Sprintf("login refused (401): check the username and password; %s in the last %s%s",
			plural(len(recent), "attempt"), plural(mins, "minute"), suffix)}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// loginAccepted forgets an account's refusals once the BMC took it.
func (m *Manager) loginAccepted(cn *conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := authKey{cn.base, cn.user}
	if r := m.auth[k]; r != nil && r.secret == cn.secret {
		delete(m.auth, k)
	}
}

// shape turns any failure into an *Error naming the BMC and the operation.
func (m *Manager) shape(ep endpoint.BMC, op, what string, c model.BMC, tr *opTrace, err error) error {
	e := &Error{Endpoint: scrub(ep.String(), c.Password), Op: op}
	var inner *Error
	status := statusOf(err)
	switch {
	case errors.As(err, &inner) && errors.Is(inner.Err, ErrLoginRefused):
		e.Op, e.Msg, e.StatusCode, e.Err = "login", inner.Msg, inner.StatusCode, inner.Err
	case errors.As(err, &inner):
		e.Msg, e.StatusCode, e.Err = what+": "+inner.Msg, inner.StatusCode, inner.Err
	case status == http.StatusUnauthorized:
		e.Op, e.Msg, e.StatusCode = "login", "login refused", status
	case status == http.StatusForbidden:
		e.Msg, e.StatusCode = what+": access denied to user "+fmt.Sprintf("%q", c.Username), status
	default:
		msg, code, wrapped := describe(err)
		if n := tr.gaveUpAfter.Load(); n > 1 {
			msg += fmt.Sprintf("; gave up after %d attempts", n)
		}
		// Wrapping errors such as "waiting for …: context deadline exceeded"
		// carry the useful prefix; keep it.
		if code == 0 && errors.Is(err, context.DeadlineExceeded) {
			msg = trim(err.Error())
		}
		e.Msg, e.StatusCode, e.Err = what+": "+msg, code, wrapped
	}
	e.Msg = scrub(e.Msg, c.Password)
	m.log.Debug("BMC operation failed", "endpoint", e.Endpoint, "op", op, "error", e.Error())
	return e
}

// PowerState returns the system's PowerState as the BMC reports it ("On",
// "Off", "PoweringOn", "PoweringOff", ...).
func (m *Manager) PowerState(ctx context.Context, c model.BMC) (string, error) {
	var state string
	err := m.do(ctx, "power_state", "read power state", c, func(ctx context.Context, t *target) error {
		sys, err := t.system()
		if err != nil {
			return err
		}
		state = string(sys.PowerState)
		return nil
	})
	return state, err
}

// Close logs out every session the Manager opened. The Manager remains
// usable; a later call logs in again.
func (m *Manager) Close(ctx context.Context) {
	m.mu.Lock()
	conns := m.conns
	m.conns = map[connKey]*conn{}
	m.mu.Unlock()
	for _, cn := range conns {
		cn.mu.Lock()
		if cn.api != nil && cn.session {
			if s, err := cn.api.GetSession(); err == nil {
				cn.logout(ctx, m, s.ID, s.Token)
			}
		}
		cn.api, cn.sessionID = nil, ""
		cn.hc.CloseIdleConnections()
		cn.mu.Unlock()
	}
}
