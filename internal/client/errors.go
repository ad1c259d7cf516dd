package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// Sentinel errors; an *APIError matches the one for its status with errors.Is.
var (
	ErrNotFound     = errors.New("not found")
	ErrConflict     = errors.New("conflict")
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
	ErrValidation   = errors.New("validation failed")
)

// Bounds on server-provided text kept in an APIError, so a hostile or
// broken server cannot flood a Terraform diagnostic.
const (
	maxMessageLen = 2048
	maxShortLen   = 256
)

// APIError is a non-2xx answer from the agent.
type APIError struct {
	StatusCode int
	// Code, Message and Field come from the api.ErrorBody; for a body that
	// is not one, Message is the status text.
	Code    string
	Message string
	Field   string
	Method  string
	Path    string
	// LeaseDuration is, for an api.CodeLeaseHeld refusal, how long the
	// agent's leases last as its Info said (0 when it did not), so the
	// refusal can say when a dead holder's lease runs out.
	LeaseDuration time.Duration

	endpoint string
}

// Error reads like an operator message, e.g.
// "agent https://host:8443: PUT /v1/machines/m1: conflict: version 3 is stale (field: version)".
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("agent ")
	b.WriteString(e.endpoint)
	b.WriteString(": ")
	if e.Method != "" || e.Path != "" {
		b.WriteString(e.Method)
		b.WriteString(" ")
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	if e.Code != "" {
		b.WriteString(e.Code)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.Field != "" {
		b.WriteString(" (field: ")
		b.WriteString(e.Field)
		b.WriteString(")")
	}
	switch e.StatusCode {
	case http.StatusUnauthorized:
		b.WriteString(" (check the API token)")
	case http.StatusForbidden:
		b.WriteString(" (the token may be read-only)")
	}
	return b.String()
}

// Is maps the status to the package's sentinel errors.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrValidation:
		return e.StatusCode == http.StatusBadRequest || e.StatusCode == http.StatusUnprocessableEntity
	}
	return false
}

// decodeError turns a non-2xx body into an APIError: an api.ErrorBody when
// it is one, else the status line plus the first line of a plain-text body.
func decodeError(status int, body []byte) *APIError {
	e := &APIError{StatusCode: status}
	var eb api.ErrorBody
	if err := json.Unmarshal(body, &eb); err == nil && (eb.Error.Code != "" || eb.Error.Message != "") {
		e.Code = clean(eb.Error.Code, maxShortLen, false)
		e.Message = clean(eb.Error.Message, maxMessageLen, true)
		e.Field = clean(eb.Error.Field, maxShortLen, false)
		if e.Message == "" {
			e.Message = statusLine(status)
		}
		return e
	}
	e.Message = statusLine(status)
	// A proxy's or a plain-HTTP listener's text ("Client sent an HTTP
	// request to an HTTPS server.") tells the operator what is wrong; an
	// HTML page would only be noise.
	text := strings.TrimSpace(string(body))
	if text != "" && !strings.HasPrefix(text, "<") && !strings.HasPrefix(text, "{") {
		line, _, _ := strings.Cut(text, "\n")
		if line = clean(strings.TrimSpace(line), maxShortLen, false); line != "" {
			e.Message += ": " + line
		}
	}
	return e
}

func statusLine(status int) string {
	if t := http.StatusText(status); t != "" {
		return strconv.Itoa(status) + " " + t
	}
	return "HTTP status " + strconv.Itoa(status)
}

// clean makes server text safe to print: valid UTF-8, no control
// characters (terminal escapes) other than newlines and tabs when
// multiline, and at most max bytes.
func clean(s string, max int, multiline bool) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if (r == '\n' || r == '\t') && multiline {
			return r
		}
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strings.TrimSpace(s)
}

// redact removes the token should a server ever echo it back.
func (e *APIError) redact(token string) {
	if token == "" {
		return
	}
	e.Code = strings.ReplaceAll(e.Code, token, "[redacted]")
	e.Message = strings.ReplaceAll(e.Message, token, "[redacted]")
	e.Field = strings.ReplaceAll(e.Field, token, "[redacted]")
}

// transportErr is a request that got no HTTP answer.
type transportErr struct {
	prefix string // "agent <endpoint>: METHOD path"
	err    error
	hint   string
	dial   bool // nothing was sent
	tls    bool // certificate or protocol mismatch; retrying cannot help
}

func (e *transportErr) Error() string {
	return fmt.Sprintf("%s: %v (%s)", e.prefix, e.err, e.hint)
}

func (e *transportErr) Unwrap() error { return e.err }

const (
	hintReachable = "is baremetal-agent running and reachable?"
	hintTLS       = "set ca_cert_pem to the agent's CA certificate, or insecure = true to skip verification"
)

// transportError classifies a failed round trip.
func (c *Client) transportError(ctx context.Context, r request, err error) error {
	prefix := fmt.Sprintf("agent %s: %s %s", c.endpoint, r.method, r.path)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s: %w", prefix, ctxErr)
	}
	// url.Error repeats the URL, which prefix already names.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	te := &transportErr{prefix: prefix, err: err, hint: hintReachable}

	var (
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
		recordErr tls.RecordHeaderError
		opErr     *net.OpError
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalid), errors.As(err, &verifyErr):
		te.tls = true
		te.err = fmt.Errorf("TLS certificate not trusted: %w", err)
		te.hint = hintTLS
	case errors.As(err, &recordErr),
		// net/http turns a plain-HTTP answer's RecordHeaderError into this text.
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		te.tls = true
		te.hint = "the endpoint does not speak TLS: use an http:// endpoint or the agent's HTTPS API port"
	case errors.Is(err, context.DeadlineExceeded):
		te.err = fmt.Errorf("no answer in time: %w", err)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		te.dial = true
	}
	return te
}
