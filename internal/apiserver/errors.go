package apiserver

import (
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// apiError is an error that already knows its HTTP answer. Handlers return
// it for anything the caller can fix; every other error becomes a generic
// 500 whose details go only to the log.
type apiError struct {
	status  int
	code    string
	message string
	field   string
	// cause lets errors.Is see store sentinels through an apiError returned
	// from a mutate function (the store returns mutate errors as they are).
	cause error
}

func (e *apiError) Error() string { return e.message }
func (e *apiError) Unwrap() error { return e.cause }

func badRequest(field, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: api.CodeBadRequest, field: field, message: fmt.Sprintf(format, args...)}
}

func invalid(field, format string, args ...any) *apiError {
	return &apiError{status: http.StatusUnprocessableEntity, code: api.CodeValidation, field: field, message: fmt.Sprintf(format, args...)}
}

func notFound(kind, name string) *apiError {
	return &apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: fmt.Sprintf("%s %q not found", kind, name), cause: store.ErrNotFound}
}

func conflict(field, format string, args ...any) *apiError {
	return &apiError{status: http.StatusConflict, code: api.CodeConflict, field: field, message: fmt.Sprintf(format, args...), cause: store.ErrConflict}
}

// staleVersion is what a mutate function returns when the caller's version
// is behind the stored one.
func staleVersion(kind, name string, sent, stored uint64) *apiError {
	return conflict("version", "%s %q has version %d, the request was based on version %d: re-read it and retry", kind, name, stored, sent)
}

// storeError turns a store error about one object into an answer that names
// the object. Errors that are already apiErrors pass through unchanged.
func storeError(err error, kind, name string) error {
	var ae *apiError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, store.ErrNotFound):
		return notFound(kind, name)
	case errors.Is(err, store.ErrExists):
		return &apiError{status: http.StatusConflict, code: api.CodeConflict, field: "name", message: fmt.Sprintf("%s %q already exists", kind, name), cause: store.ErrExists}
	case errors.Is(err, store.ErrMACInUse):
		return &apiError{status: http.StatusConflict, code: api.CodeConflict, field: "macs", message: "one of the MAC addresses is registered to another machine", cause: store.ErrMACInUse}
	case errors.Is(err, store.ErrConflict):
		return conflict("version", "%s %q was changed by another writer: re-read it and retry", kind, name)
	}
	return fmt.Errorf("%s %q: %w", kind, name, err)
}

// statusClientClosed is what the access log records for a request whose
// client went away (nginx's 499); nobody is left to read it.
const statusClientClosed = 499

// remoteAddr is the client's IP address, the key of the agent's per-source
// log limit.
func remoteAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// writeError answers with an ErrorBody. Unknown errors are logged with the
// request's route and answered with a message that reveals nothing.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, route string, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		switch {
		case errors.Is(err, store.ErrNotFound):
			ae = &apiError{status: http.StatusNotFound, code: api.CodeNotFound, message: "not found"}
		case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrExists):
			ae = conflict("", "the object was changed by another writer: re-read it and retry")
		case errors.Is(err, store.ErrMACInUse):
			ae = &apiError{status: http.StatusConflict, code: api.CodeConflict, field: "macs", message: "one of the MAC addresses is registered to another machine"}
		case r.Context().Err() != nil:
			// The client went away (a closed connection, a reset HTTP/2
			// stream): nothing failed that an operator must look at, and a
			// client must not be able to write ERROR lines at will.
			s.log.Debug("request cancelled by the client", "method", r.Method, "route", route, "remote", remoteAddr(r), "err", err)
			ae = &apiError{status: statusClientClosed, code: api.CodeInternal, message: "request cancelled"}
		default:
			s.log.Error("request failed", "method", r.Method, "route", route, "remote", remoteAddr(r), "err", err)
			ae = &apiError{status: http.StatusInternalServerError, code: api.CodeInternal, message: "internal error; the agent log has the details"}
		}
	}
	writeJSON(w, ae.status, api.ErrorBody{Error: api.ErrorDetail{Code: ae.code, Message: ae.message, Field: ae.field}})
}
