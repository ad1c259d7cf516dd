package bmc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/stmcginnis/gofish/schemas"
)

var (
	// ErrOverrideReverted: the BMC accepted a boot override PATCH but reports
	// the old setting when read back (a known Supermicro behaviour).
	ErrOverrideReverted = errors.New("boot override reverted by the BMC")
	// ErrUnsupported: the system does not offer what was asked (a reset type
	// with no substitute, a boot target it does not list).
	ErrUnsupported = errors.New("not supported by this BMC")
	// ErrPowerOutcomeUnknown: a power action reached the BMC, its answer was
	// lost, and the system offers no evidence whether it was carried out.
	// Sending it again could power-cycle a machine that is already booting.
	ErrPowerOutcomeUnknown = errors.New("power action outcome unknown")
	// ErrLoginRefused: the BMC refused the credentials (401), or refused
	// them recently enough that the agent is backing off.
	ErrLoginRefused = errors.New("login refused")
	// ErrSessionLimit: the BMC's session table is full and it does not
	// accept basic auth. Sessions expire (iDRAC: 30 minutes idle), so the
	// caller waits and tries again rather than giving up.
	ErrSessionLimit = errors.New("session limit reached")
)

// Error is every failure the Manager returns: which BMC, which operation,
// the HTTP status when there was one, and an operator-readable message that
// never contains a password or a raw response dump.
type Error struct {
	Endpoint   string
	Op         string // power, boot_override, inventory, power_state, login
	StatusCode int
	Msg        string
	Err        error
}

func (e *Error) Error() string {
	s := "BMC " + e.Endpoint + ": " + e.Msg
	if e.StatusCode != 0 && !strings.Contains(e.Msg, fmt.Sprintf("(%d)", e.StatusCode)) {
		s += fmt.Sprintf(" (%d)", e.StatusCode)
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the same call may succeed later without anyone
// changing the BMC's configuration or the request.
func (e *Error) Temporary() bool {
	switch {
	case errors.Is(e.Err, ErrUnsupported), errors.Is(e.Err, ErrOverrideReverted), errors.Is(e.Err, ErrPowerOutcomeUnknown),
		errors.Is(e.Err, ErrLoginRefused), errors.As(e.Err, new(*SchemeError)),
		errors.Is(e.Err, context.Canceled), errors.Is(e.Err, errInvalidEndpoint), isCertError(e.Err):
		return false
	case errors.Is(e.Err, context.DeadlineExceeded), errors.Is(e.Err, errPowerNotReached), errors.As(e.Err, new(*AnswerLostError)),
		errors.Is(e.Err, ErrSessionLimit):
		return true
	}
	switch c := e.StatusCode; {
	case c == 0:
		return e.Err != nil && isTransportError(e.Err)
	case c == http.StatusConflict, c == http.StatusPreconditionFailed, c == http.StatusTooManyRequests:
		return true
	case c >= 500 && c != http.StatusNotImplemented:
		return true
	}
	return false
}

// IsRetryable reports whether err is a BMC failure worth retrying later
// (5xx, timeouts, unreachable BMC, conflicts); false for refused logins,
// bad endpoints, unsupported requests and reverted overrides.
func IsRetryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Temporary()
	}
	return false
}

var (
	errInvalidEndpoint = errors.New("invalid BMC endpoint")
	// errPowerNotReached: the BMC accepted a reset but the state did not
	// follow in time; BMCs that lag or drop actions often obey a repeat.
	errPowerNotReached = errors.New("power state not reached")
)

// statusOf returns the HTTP status of a Redfish error, looking inside
// gofish's collection errors, which do not unwrap.
func statusOf(err error) int {
	if re := redfishError(err); re != nil {
		return re.HTTPReturnedStatusCode
	}
	return 0
}

func redfishError(err error) *schemas.Error {
	var re *schemas.Error
	if errors.As(err, &re) {
		return re
	}
	var ce *schemas.CollectionError
	if errors.As(err, &ce) {
		links := make([]string, 0, len(ce.Failures))
		for l := range ce.Failures {
			links = append(links, l)
		}
		sort.Strings(links)
		for _, l := range links {
			if re := redfishError(ce.Failures[l]); re != nil {
				return re
			}
		}
	}
	return nil
}

// firstFailure is the deterministic representative of a collection error.
func firstFailure(err error) error {
	var ce *schemas.CollectionError
	if !errors.As(err, &ce) || len(ce.Failures) == 0 {
		return err
	}
	links := make([]string, 0, len(ce.Failures))
	for l := range ce.Failures {
		links = append(links, l)
	}
	sort.Strings(links)
	return firstFailure(ce.Failures[links[0]])
}

// isCertError: the BMC's certificate is not trusted, which retrying cannot
// change.
func isCertError(err error) bool {
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.As(err, &certErr) || errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &invalid)
}

func isTransportError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, context.DeadlineExceeded)
}

// describe turns a low-level failure into a short message and status code,
// and keeps as the wrapped error only what is safe to print.
func describe(err error) (msg string, status int, wrapped error) {
	err = firstFailure(err)
	if re := redfishError(err); re != nil {
		return redfishMessage(re), re.HTTPReturnedStatusCode, nil
	}
	var al *AnswerLostError
	var se *SchemeError
	var je *JSONError
	var host x509.HostnameError
	switch {
	case errors.As(err, &al):
		return al.Error(), 0, al
	case errors.As(err, &se):
		return se.Error(), 0, se
	case errors.As(err, &je):
		return trim(je.Error()), 0, je
	case errors.As(err, &host):
		// The CA was trusted (or the name would not have been checked):
		// the certificate is for another name.
		return fmt.Sprintf("TLS certificate name mismatch: the endpoint names %s but the BMC's certificate is for %s (use a name the certificate lists, or reissue it)",
			host.Host, certNames(host.Certificate)), 0, err
	case isCertError(err):
		return "TLS certificate not trusted (give the BMC's CA certificate, or mark it insecure): " +
			trim(rootCause(err).Error()), 0, err
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out", 0, err
	case errors.Is(err, context.Canceled):
		return "cancelled", 0, err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "request timed out", 0, err
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return "cannot reach the BMC: " + trim(rootCause(err).Error()), 0, err
	}
	return trim(err.Error()), 0, err
}

func certNames(c *x509.Certificate) string {
	if c == nil {
		return "(no certificate)"
	}
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	if len(names) == 0 {
		return "no name"
	}
	return strings.Join(names, ", ")
}

// rootCause strips url.Error and friends down to the innermost cause, so a
// message says "connection refused" rather than repeating the URL.
func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// redfishMessage picks the human part of a Redfish error body: the first
// extended message, else the error message, else the HTTP status text. An
// HTML or otherwise non-Redfish body is not shown.
func redfishMessage(re *schemas.Error) string {
	for _, m := range re.ExtendedInfos {
		if m.Message != "" {
			return trim(m.Message)
		}
	}
	// gofish puts a body it could not parse as a Redfish error into
	// Message; an HTML page or a JSON dump is no message.
	if msg := strings.TrimSpace(re.Message); msg != "" && !strings.HasPrefix(msg, "<") && !strings.HasPrefix(msg, "{") {
		return trim(msg)
	}
	switch c := re.HTTPReturnedStatusCode; {
	case c == http.StatusUnauthorized:
		return "unauthorized"
	case c != 0 && http.StatusText(c) != "":
		return strings.ToLower(http.StatusText(c))
	}
	return "request failed"
}

// trim flattens whitespace and bounds a message so a chatty BMC cannot
// flood logs and events.
func trim(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	const maxLen = 200
	if len(s) > maxLen {
		s = s[:maxLen] + "…"
	}
	return s
}

// scrub removes a secret from a message, as a last line of defence against
// BMCs that echo request bodies in their errors.
func scrub(s, secret string) string {
	if len(secret) < 4 {
		return s
	}
	return strings.ReplaceAll(s, secret, "<redacted>")
}
