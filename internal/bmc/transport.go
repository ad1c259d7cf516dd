package bmc

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/backoff"
)

// newHTTPClient builds the client for one BMC: verified TLS unless the BMC is
// marked insecure, its own CA when given, and the retrying transport. The
// client has no overall timeout: each attempt is bounded inside the
// transport, so a retried request is not cut short by the first attempt's
// clock.
func (m *Manager) newHTTPClient(insecure bool, caPEM string) (*http.Client, error) {
	// The session cache lets a reconnect resume TLS: with short-lived idle
	// connections (below) a drift poll then costs an abbreviated handshake.
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	if caPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, errors.New("ca_cert_pem holds no PEM certificate")
		}
		tlsCfg.RootCAs = pool
	}
	// Some BMCs ship self-signed certificates the operator explicitly accepts.
	tlsCfg.InsecureSkipVerify = insecure //nolint:gosec // operator opt-in per BMC
	dialer := &net.Dialer{Timeout: m.cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	base := &http.Transport{
		// Honour HTTPS_PROXY/NO_PROXY like other Redfish tooling: management
		// networks are sometimes reached only through a proxy.
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: m.cfg.ConnectTimeout,
		MaxIdleConnsPerHost: 4,
		// Short on purpose: a machine's BMC calls come in bursts (a step's
		// power waits poll every few seconds), then nothing for minutes.
		// Keeping every BMC's connection for Go's default 90s held one
		// connection, two goroutines and their buffers per BMC of the
		// fleet: 348 MiB of agent RSS at 5,000 machines.
		IdleConnTimeout:   15 * time.Second,
		ForceAttemptHTTP2: true,
	}
	return &http.Client{Transport: &retryTransport{base: base, m: m}}, nil
}

// opTrace is carried in an operation's context so the transport can report
// what it did (for error messages) without gofish knowing about it.
type opTrace struct {
	gaveUpAfter atomic.Int32 // attempts made by the last request that exhausted its retries
}

type traceKey struct{}

func withTrace(ctx context.Context) (context.Context, *opTrace) {
	t := &opTrace{}
	return context.WithValue(ctx, traceKey{}, t), t
}

func traceFrom(ctx context.Context) *opTrace {
	t, _ := ctx.Value(traceKey{}).(*opTrace)
	return t
}

// retryTransport retries transient failures of single HTTP requests with
// capped exponential backoff and jitter (the policy is on Config.MaxRetries): 5xx (except 501), 429,
// timeouts and connection errors. It honours Retry-After (iDRAC answers
// 503 "retry in 30 seconds" while busy) and never sleeps past the caller's
// deadline. 4xx answers are returned at once: conflicts on PATCH need a fresh
// ETag, which only the caller can fetch.
type retryTransport struct {
	base *http.Transport
	m    *Manager
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	cfg := &t.m.cfg
	// The previous attempt's failure, kept so that running out of time
	// mid-retry reports what the BMC said rather than a bare deadline.
	var lastResp *http.Response
	var lastErr error
	giveUp := func(attempts int) (*http.Response, error) {
		if tr := traceFrom(ctx); tr != nil {
			tr.gaveUpAfter.Store(int32(attempts))
		}
		return lastResp, lastErr
	}
	for attempt := 0; ; attempt++ {
		r := req
		if attempt > 0 {
			r = req.Clone(ctx)
			if req.Body != nil && req.Body != http.NoBody {
				body, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				r.Body = body
			}
		}
		actx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
		var wrote, connected atomic.Bool
		actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
			ConnectDone:  func(_, _ string, err error) { connected.Store(err == nil) },
			WroteHeaders: func() { wrote.Store(true) },
		})
		start := time.Now()
		resp, err := t.base.RoundTrip(r.WithContext(actx))
		t.m.metrics.observeRequest(req.Method, resp, err, time.Since(start))
		if err != nil && ctx.Err() != nil && attempt > 0 {
			cancel()
			return giveUp(attempt)
		}
		// Only this attempt's own clock: the caller's running out is the
		// caller's timeout, which it reports itself.
		timedOut := err != nil && actx.Err() != nil && ctx.Err() == nil
		action := req.Method == http.MethodPost && strings.Contains(req.URL.Path, "/Actions/")
		if err != nil && wrote.Load() && (timedOut || action) {
			// The BMC took the request and the answer was lost. Another
			// attempt at a hung BMC would hang as long again, and an action
			// (a reset) may have been carried out: the caller decides what
			// the lost answer means.
			cancel()
			return nil, &AnswerLostError{Method: req.Method, Timeout: cfg.RequestTimeout, TimedOut: timedOut, Err: err}
		}
		var ne net.Error
		if err != nil && !wrote.Load() && connected.Load() && ctx.Err() == nil && errors.As(err, &ne) && ne.Timeout() {
			// Connected, then silence before the request went out: a TLS
			// handshake that never completes is a hung BMC too.
			cancel()
			return nil, &AnswerLostError{Method: req.Method, Timeout: cfg.ConnectTimeout, Handshake: true, Err: err}
		}

		if serr := schemeMismatch(req, resp, err); serr != nil {
			cancel()
			return nil, serr
		}
		if err == nil && req.Method == http.MethodGet && resp.StatusCode >= 200 && resp.StatusCode < 300 {
			if resp, err = checkJSON(req, resp); err != nil {
				cancel()
				return nil, err
			}
		}

		retry, why := t.retryable(ctx, resp, err)
		if retry && action && resp != nil && resp.StatusCode != http.StatusTooManyRequests {
			// A 5xx to an action does not say it was not carried out; only
			// a 429 does.
			retry = false
		}
		wait := backoff.Exponential(cfg.RetryBase, cfg.RetryMax, attempt)
		if ra, ok := retryAfter(resp, cfg.RetryMax); ok && ra > wait {
			wait = ra
		}
		if retry && attempt < cfg.MaxRetries && fitsDeadline(ctx, wait) {
			lastResp, lastErr = buffered(resp), err
			cancel()
			t.m.metrics.retries.Inc()
			t.m.log.Debug("BMC request failed, retrying", "method", req.Method, "host", req.URL.Host,
				"path", req.URL.Path, "reason", why, "attempt", attempt+1, "wait", wait)
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return giveUp(attempt + 1)
			case <-timer.C:
			}
			continue
		}
		if retry && attempt > 0 {
			if tr := traceFrom(ctx); tr != nil {
				tr.gaveUpAfter.Store(int32(attempt + 1))
			}
		}
		if resp != nil {
			resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
		} else {
			cancel()
		}
		return resp, err
	}
}

// buffered reads a failed response's body into memory so the connection is
// released and the response can still be returned later.
func buffered(resp *http.Response) *http.Response {
	if resp == nil {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp
}

func (t *retryTransport) retryable(ctx context.Context, resp *http.Response, err error) (bool, string) {
	if ctx.Err() != nil {
		return false, ""
	}
	if err != nil {
		if isCertError(err) {
			return false, ""
		}
		return true, trim(rootCause(err).Error())
	}
	switch c := resp.StatusCode; {
	case c == http.StatusTooManyRequests:
		return true, "429"
	case c >= 500 && c != http.StatusNotImplemented && c != http.StatusHTTPVersionNotSupported:
		return true, strconv.Itoa(c)
	}
	return false, ""
}

// retryAfter is the response's Retry-After, capped at maxWait.
func retryAfter(resp *http.Response, maxWait time.Duration) (time.Duration, bool) {
	if resp == nil {
		return 0, false
	}
	d, ok := backoff.RetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return min(d, maxWait), ok
}

// fitsDeadline: waiting longer than the caller has left only turns a clear
// BMC error into a bare "context deadline exceeded".
func fitsDeadline(ctx context.Context, wait time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || time.Until(dl) > wait
}

// SchemeError is a BMC that answers the other scheme on this port than
// the endpoint names: retrying cannot help, the endpoint must change.
type SchemeError struct {
	Want string // the scheme the BMC answers: http or https
	Host string
}

func (e *SchemeError) Error() string {
	return fmt.Sprintf("the BMC answers %s on this port: use %s://%s", e.Want, e.Want, e.Host)
}

// schemeMismatch recognises plain HTTP sent to a TLS port (a 400 saying so,
// or a TLS alert where a status line should be) and TLS sent to a plain
// port (a first record that is no TLS handshake).
func schemeMismatch(req *http.Request, resp *http.Response, err error) error {
	var rh tls.RecordHeaderError
	switch {
	case err != nil && errors.As(err, &rh):
		return &SchemeError{Want: "http", Host: req.URL.Host}
	case err != nil && strings.Contains(err.Error(), `malformed HTTP response "\x15\x03`):
		return &SchemeError{Want: "https", Host: req.URL.Host}
	case err == nil && resp.StatusCode == http.StatusBadRequest && req.URL.Scheme == "http":
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		if bytes.Contains(b, []byte("HTTP request to an HTTPS server")) || bytes.Contains(b, []byte("plain HTTP request was sent to HTTPS port")) {
			return &SchemeError{Want: "https", Host: req.URL.Host}
		}
	}
	return nil
}

// maxJSON bounds what one Redfish document may take in memory.
const maxJSON = 16 << 20

// JSONError is a 2xx answer whose body is not JSON: it names the URL and
// shows the first bytes, since "invalid character '<'" alone points nowhere.
type JSONError struct {
	URL   string
	First string
}

func (e *JSONError) Error() string {
	return fmt.Sprintf("the BMC answered %s with a body that is not JSON, starting %q", e.URL, e.First)
}

func checkJSON(req *http.Request, resp *http.Response) (*http.Response, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJSON+1))
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	if len(b) > maxJSON {
		// Too large to hold for a check: the reader downstream bounds it.
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
		return resp, nil
	}
	resp.Body.Close()
	if len(bytes.TrimSpace(b)) > 0 && !json.Valid(b) {
		first := b[:min(len(b), 48)]
		u := *req.URL
		u.User, u.RawQuery = nil, ""
		return nil, &JSONError{URL: u.String(), First: string(first)}
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

// AnswerLostError is a request the BMC received whose answer never came:
// it timed out, or the connection broke after the request was written. For
// a POST to an action, whether it was carried out is unknown.
type AnswerLostError struct {
	Method   string
	Timeout  time.Duration
	TimedOut bool
	// Handshake: the BMC accepted the connection but never completed the
	// TLS handshake, so the request was never sent.
	Handshake bool
	Err       error
}

func (e *AnswerLostError) Error() string {
	switch {
	case e.Handshake:
		return fmt.Sprintf("no answer within %s: the BMC accepted the connection but did not complete the TLS handshake", e.Timeout)
	case e.TimedOut:
		return fmt.Sprintf("no answer within %s: the BMC accepted the connection and the request but did not respond", e.Timeout)
	case errors.Is(e.Err, context.DeadlineExceeded) || errors.Is(e.Err, context.Canceled):
		return "no answer before the operation's deadline"
	}
	return "the connection broke after the request was sent: " + trim(rootCause(e.Err).Error())
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
