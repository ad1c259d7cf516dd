// Package client is the typed Go client of the agent's REST API v1, used by
// the Terraform provider. It speaks the wire types of internal/api, maps
// error responses to sentinel errors the provider can branch on (drift
// detection needs ErrNotFound, stale writes ErrConflict) and retries what is
// safe to retry, so a restarting agent does not fail a long terraform apply.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/backoff"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxRetries   = 5
	DefaultRetryMaxWait = 5 * time.Second
	DefaultUserAgent    = "baremetal-client"
)

// MaxResponseBytes bounds how much of any response body is read, so a
// misbehaving server or proxy cannot exhaust the provider's memory.
const MaxResponseBytes = 16 << 20

const (
	retryBaseWait = 250 * time.Millisecond
	// attemptTimeout bounds one request that is not a long poll: without it
	// a server that accepts but never answers would hang until the caller's
	// (Terraform's 60 minute) deadline instead of being retried.
	attemptTimeout = 60 * time.Second
	// watchGrace is added to a long poll's wait for the attempt timeout.
	watchGrace = 30 * time.Second
	// maxWatchWait is the server's cap on ?wait=.
	maxWatchWait = 60 * time.Second
	// defaultPollWait stays well under maxWatchWait and under the idle
	// timeouts of common proxies.
	defaultPollWait = 30 * time.Second
	defaultMinPoll  = time.Second
)

// Config configures a Client.
type Config struct {
	// Endpoint is the agent's API base URL, e.g. https://agent:8443. A
	// trailing "/v1" is tolerated and removed; the client adds it.
	Endpoint string
	// Token is the bearer token. It is sent only in the Authorization header
	// and never appears in errors or logs.
	Token string
	// CACertPEM holds extra CA certificates to trust besides the system
	// roots (e.g. the agent's self-signed certificate).
	CACertPEM string
	// Insecure skips TLS certificate verification; an explicit opt-in.
	Insecure  bool
	UserAgent string
	// LeaseHolder, when set, is sent as api.HeaderLeaseHolder on machine
	// writes so the agent can refuse a concurrent writer with 409.
	LeaseHolder string
	// HTTPClient replaces the client built from CACertPEM and Insecure; it
	// is used as is (tests).
	HTTPClient *http.Client
	// MaxRetries is how often a retryable request is retried: 0 means
	// DefaultMaxRetries, a negative value disables retries.
	MaxRetries int
	// RetryMaxWait caps each backoff step and each honoured Retry-After.
	RetryMaxWait time.Duration
	// Logger receives retry notices; nil means slog.Default().
	Logger *slog.Logger
}

// Client calls one agent. It is safe for concurrent use.
type Client struct {
	base        *url.URL
	endpoint    string // base URL as shown in errors
	token       string
	userAgent   string
	leaseHolder string
	http        *http.Client
	maxRetries  int
	maxWait     time.Duration
	log         *slog.Logger
	// pollWait is the long-poll length of WaitMachine/WaitCluster, and
	// minPoll the least time between two polls, which keeps a server that
	// answers long polls at once from being hammered.
	pollWait time.Duration
	minPoll  time.Duration
	baseWait time.Duration // first backoff step, doubled per attempt
	// leaseFor is the agent's lease duration as its last Info reported
	// (nanoseconds; 0 until then).
	leaseFor atomic.Int64
}

// LeaseDuration is how long the agent's leases last, as its last Info
// answer said; 0 if Info was not called or the agent did not say.
func (c *Client) LeaseDuration() time.Duration { return time.Duration(c.leaseFor.Load()) }

// New validates cfg and returns a Client. It does not contact the agent.
func New(cfg Config) (*Client, error) {
	base, err := parseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	token := strings.TrimSpace(cfg.Token)
	if strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		// The token itself is deliberately not quoted.
		return nil, errors.New("token contains whitespace or control characters")
	}
	c := &Client{
		base:        base,
		endpoint:    base.String(),
		token:       token,
		userAgent:   cfg.UserAgent,
		leaseHolder: cfg.LeaseHolder,
		http:        cfg.HTTPClient,
		maxRetries:  cfg.MaxRetries,
		maxWait:     cfg.RetryMaxWait,
		log:         cfg.Logger,
		pollWait:    defaultPollWait,
		minPoll:     defaultMinPoll,
		baseWait:    retryBaseWait,
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	if c.maxRetries == 0 {
		c.maxRetries = DefaultMaxRetries
	} else if c.maxRetries < 0 {
		c.maxRetries = 0
	}
	if c.maxWait <= 0 {
		c.maxWait = DefaultRetryMaxWait
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.http == nil {
		tlsConf, err := tlsConfig(cfg.CACertPEM, cfg.Insecure)
		if err != nil {
			return nil, err
		}
		base, ok := http.DefaultTransport.(*http.Transport)
		if !ok {
			return nil, fmt.Errorf("client: http.DefaultTransport is a %T, not an *http.Transport", http.DefaultTransport)
		}
		tr := base.Clone()
		tr.TLSClientConfig = tlsConf
		tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		c.http = &http.Client{Transport: tr}
	}
	return c, nil
}

// Endpoint returns the normalised base URL the client talks to.
func (c *Client) Endpoint() string { return c.endpoint }

func parseEndpoint(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, errors.New("endpoint is empty: set it to the agent's API URL, e.g. https://agent:8443")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q is not a URL: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("endpoint %q: scheme must be https or http, e.g. https://agent:8443", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("endpoint %q has no host", raw)
	}
	if u.User != nil {
		return nil, errors.New("endpoint must not contain credentials; use the token")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("endpoint %q must not have a query or fragment", raw)
	}
	p := strings.TrimRight(u.Path, "/")
	p = strings.TrimSuffix(p, "/"+api.APIVersion)
	u.Path, u.RawPath = p, ""
	return u, nil
}

func tlsConfig(caPEM string, insecure bool) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if insecure {
		conf.InsecureSkipVerify = true // explicit operator opt-in (Config.Insecure)
		return conf, nil
	}
	if strings.TrimSpace(caPEM) == "" {
		return conf, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	rest := []byte(caPEM)
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		n++
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca_cert_pem: certificate %d: %w", n, err)
		}
		pool.AddCert(cert)
	}
	if n == 0 {
		return nil, errors.New("ca_cert_pem: no PEM \"CERTIFICATE\" block found")
	}
	conf.RootCAs = pool
	return conf, nil
}

// request describes one API call.
type request struct {
	method string
	path   string // escaped path below the endpoint, e.g. /v1/machines/m1 (see route)
	query  url.Values
	body   any // marshalled to JSON when non-nil
	// lease sends the lease holder header (machine writes).
	lease bool
	// wait is the long-poll duration, which extends the attempt timeout.
	wait time.Duration
	// out receives the decoded 2xx body when non-nil.
	out any
}

// do performs r with retries and decodes the response into r.out.
func (c *Client) do(ctx context.Context, r request) error {
	var body []byte
	if r.body != nil {
		var err error
		if body, err = json.Marshal(r.body); err != nil {
			return fmt.Errorf("agent %s: %s %s: encoding request: %w", c.endpoint, r.method, r.path, err)
		}
	}
	idempotent := r.method == http.MethodGet || r.method == http.MethodPut || r.method == http.MethodDelete
	for attempt := 0; ; attempt++ {
		retryAfter, err := c.attempt(ctx, r, body)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			// Cancelled while the answer was on its way: the caller asked
			// to stop, and must be able to tell that from the answer.
			return fmt.Errorf("%w (gave up retrying: %w)", err, ctx.Err())
		}
		if ctx.Err() != nil || !retryable(err, idempotent) {
			return err
		}
		if attempt >= c.maxRetries {
			if attempt > 0 {
				return fmt.Errorf("%w (gave up after %d attempts)", err, attempt+1)
			}
			return err
		}
		wait := c.backoff(attempt, retryAfter)
		c.log.LogAttrs(ctx, slog.LevelWarn, "agent request failed, retrying",
			slog.String("method", r.method), slog.String("path", r.path),
			slog.Int("attempt", attempt+1), slog.Duration("wait", wait), slog.String("error", err.Error()))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up retrying: %w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// backoff is exponential with jitter, capped by maxWait; a server's
// Retry-After takes precedence but is capped the same way.
func (c *Client) backoff(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, c.maxWait)
	}
	return backoff.Exponential(c.baseWait, c.maxWait, attempt)
}

// attempt sends r once. It returns the server's Retry-After, if any.
func (c *Client) attempt(ctx context.Context, r request, body []byte) (time.Duration, error) {
	timeout := attemptTimeout
	if r.wait > 0 {
		timeout = r.wait + watchGrace
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	target := c.endpoint + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, r.method, target, rd)
	if err != nil {
		return 0, fmt.Errorf("agent %s: %s %s: %w", c.endpoint, r.method, r.path, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if r.lease && c.leaseHolder != "" {
		req.Header.Set(api.HeaderLeaseHolder, c.leaseHolder)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return 0, c.transportError(ctx, r, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return 0, c.transportError(ctx, r, fmt.Errorf("reading response: %w", err))
	}
	if len(data) > MaxResponseBytes {
		return 0, fmt.Errorf("agent %s: %s %s: response larger than %d bytes", c.endpoint, r.method, r.path, MaxResponseBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := decodeError(resp.StatusCode, data)
		e.endpoint, e.Method, e.Path = c.endpoint, r.method, r.path
		if e.Code == api.CodeLeaseHeld {
			e.LeaseDuration = c.LeaseDuration()
		}
		e.redact(c.token)
		wait, _ := backoff.RetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return wait, e
	}
	if r.out == nil {
		return 0, nil
	}
	if err := json.Unmarshal(data, r.out); err != nil {
		return 0, fmt.Errorf("agent %s: %s %s: decoding %d response: %w", c.endpoint, r.method, r.path, resp.StatusCode, err)
	}
	return 0, nil
}

// retryable says whether err from one attempt is worth another: gateway
// and availability statuses and connection failures for idempotent methods;
// for POST only a failed dial, since then nothing reached the agent.
func retryable(err error, idempotent bool) bool {
	var te *transportErr
	if errors.As(err, &te) {
		if te.tls {
			return false
		}
		return te.dial || idempotent
	}
	var ae *APIError
	if errors.As(err, &ae) && idempotent {
		switch ae.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
	}
	return false
}
