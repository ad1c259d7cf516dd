package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

var sentinels = []error{ErrNotFound, ErrConflict, ErrUnauthorized, ErrForbidden, ErrValidation}

// sentinelFor is the mapping APIError.Is promises.
func sentinelFor(status int) error {
	switch status {
	case 404:
		return ErrNotFound
	case 409:
		return ErrConflict
	case 401:
		return ErrUnauthorized
	case 403:
		return ErrForbidden
	case 400, 422:
		return ErrValidation
	}
	return nil
}

func errBody(code, msg, field string) api.ErrorBody {
	return api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg, Field: field}}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name    string
		method  func(ctx context.Context, c *Client) error
		status  int
		body    any
		want    error
		wantMsg string // whole Error() with the server URL written as URL
		code    string
		field   string
	}{
		{"conflict", func(ctx context.Context, c *Client) error {
			_, err := c.UpdateMachine(ctx, "m1", api.MachineRequest{Name: "m1", Version: 3})
			return err
		}, 409, errBody(api.CodeConflict, "version 3 is stale", "version"), ErrConflict,
			"agent URL: PUT /v1/machines/m1: conflict: version 3 is stale (field: version)", "conflict", "version"},
		{"not found", func(ctx context.Context, c *Client) error { _, err := c.GetMachine(ctx, "m9"); return err },
			404, errBody(api.CodeNotFound, `machine "m9" not found`, ""), ErrNotFound,
			`agent URL: GET /v1/machines/m9: not_found: machine "m9" not found`, "not_found", ""},
		{"delete not found", func(ctx context.Context, c *Client) error { return c.DeleteMachine(ctx, "m9", false) },
			404, errBody(api.CodeNotFound, `machine "m9" not found`, ""), ErrNotFound,
			`agent URL: DELETE /v1/machines/m9: not_found: machine "m9" not found`, "not_found", ""},
		{"unauthorized", func(ctx context.Context, c *Client) error { _, err := c.Info(ctx); return err },
			401, errBody(api.CodeUnauthorized, "missing or invalid bearer token", ""), ErrUnauthorized,
			"agent URL: GET /v1/info: unauthorized: missing or invalid bearer token (check the API token)", "unauthorized", ""},
		{"forbidden", func(ctx context.Context, c *Client) error {
			_, err := c.CreateBootProfile(ctx, api.BootProfileRequest{Name: "p"})
			return err
		}, 403, errBody(api.CodeForbidden, "read-only token", ""), ErrForbidden,
			"agent URL: POST /v1/boot_profiles: forbidden: read-only token (the token may be read-only)", "forbidden", ""},
		{"bad request", func(ctx context.Context, c *Client) error {
			_, err := c.CreateMachine(ctx, api.MachineRequest{Name: "m1"})
			return err
		}, 400, errBody(api.CodeBadRequest, `unknown field "macz"`, "macz"), ErrValidation,
			`agent URL: POST /v1/machines: bad_request: unknown field "macz" (field: macz)`, "bad_request", "macz"},
		{"validation", func(ctx context.Context, c *Client) error {
			_, err := c.CreateCluster(ctx, api.ClusterRequest{Name: "k"})
			return err
		}, 422, errBody(api.CodeValidation, "must not be empty", "roles"), ErrValidation,
			"agent URL: POST /v1/clusters: validation_failed: must not be empty (field: roles)", "validation_failed", "roles"},
		{"internal", func(ctx context.Context, c *Client) error { _, err := c.ListClusters(ctx); return err },
			500, errBody(api.CodeInternal, "store closed", ""), nil,
			"agent URL: GET /v1/clusters: internal: store closed", "internal", ""},
		{"plain text", func(ctx context.Context, c *Client) error { _, err := c.ListBootProfiles(ctx); return err },
			502, "upstream connect error\nsecond line", nil,
			"agent URL: GET /v1/boot_profiles: 502 Bad Gateway: upstream connect error", "", ""},
		{"html page", func(ctx context.Context, c *Client) error { _, err := c.Info(ctx); return err },
			404, "<html><body>nginx</body></html>", ErrNotFound,
			"agent URL: GET /v1/info: 404 Not Found", "", ""},
		{"empty body", func(ctx context.Context, c *Client) error { return c.DeleteCluster(ctx, "k") },
			409, nil, ErrConflict,
			"agent URL: DELETE /v1/clusters/k: 409 Conflict", "", ""},
		{"json without error", func(ctx context.Context, c *Client) error { _, err := c.Info(ctx); return err },
			400, map[string]string{"oops": "x"}, ErrValidation,
			"agent URL: GET /v1/info: 400 Bad Request", "", ""},
		{"unknown status", func(ctx context.Context, c *Client) error { _, err := c.Info(ctx); return err },
			599, nil, nil,
			"agent URL: GET /v1/info: HTTP status 599", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{respond: func(int, *http.Request, []byte) (int, http.Header, any) { return tt.status, nil, tt.body }}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			c := newTestClient(t, srv.URL, nil, func(cfg *Config) { cfg.MaxRetries = -1 })

			err := tt.method(context.Background(), c)
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range sentinels {
				if got := errors.Is(err, s); got != (s == tt.want) {
					t.Errorf("errors.Is(err, %v) = %v", s, got)
				}
			}
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("%T is not an *APIError", err)
			}
			if ae.StatusCode != tt.status || ae.Code != tt.code || ae.Field != tt.field {
				t.Errorf("APIError %+v, want status %d code %q field %q", ae, tt.status, tt.code, tt.field)
			}
			if want := strings.Replace(tt.wantMsg, "URL", srv.URL, 1); err.Error() != want {
				t.Errorf("Error()\n got %q\nwant %q", err.Error(), want)
			}
		})
	}
}

// A server that echoes the Authorization header must not get the token
// into an error string or the retry logs.
func TestTokenNeverInErrorsOrLogs(t *testing.T) {
	rec := &recorder{respond: func(_ int, r *http.Request, _ []byte) (int, http.Header, any) {
		return 503, nil, errBody(api.CodeUnavailable, "bad header "+r.Header.Get("Authorization"), r.Header.Get("Authorization"))
	}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	var logs logBuffer
	c := newTestClient(t, srv.URL, &logs, func(cfg *Config) { cfg.MaxRetries = 2 })

	_, err := c.GetMachine(context.Background(), "m1")
	if err == nil {
		t.Fatal("no error")
	}
	if len(rec.requests()) != 3 {
		t.Fatalf("want 3 attempts, got %d", len(rec.requests()))
	}
	if strings.Contains(err.Error(), testToken) {
		t.Errorf("token in error: %q", err)
	}
	if !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("error %q should show where the token was removed", err)
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Errorf("no retry logged: %q", logs.String())
	}
	if strings.Contains(logs.String(), testToken) {
		t.Errorf("token in logs: %q", logs.String())
	}
}

func TestErrorTextIsSanitised(t *testing.T) {
	e := decodeError(400, []byte(`{"error":{"code":"bad\u001b[31m","message":"line1\nline2\u0007`+strings.Repeat("x", 5000)+`","field":"f\r\nX"}}`))
	if strings.ContainsRune(e.Code, 0x1b) || strings.ContainsAny(e.Field, "\r\n") || strings.ContainsRune(e.Message, 7) {
		t.Errorf("control characters kept: %+v", e)
	}
	if !strings.Contains(e.Message, "line1\nline2") {
		t.Errorf("multi-line message lost its newline: %q", e.Message[:20])
	}
	if len(e.Message) > maxMessageLen+len("…") {
		t.Errorf("message not truncated: %d bytes", len(e.Message))
	}
}

func FuzzDecodeError(f *testing.F) {
	seed := func(status int, v any) {
		b, _ := json.Marshal(v)
		f.Add(status, b)
	}
	seed(409, errBody(api.CodeConflict, "version 3 is stale", "version"))
	seed(422, errBody(api.CodeValidation, "must be one of provisioned, available, off", "state"))
	seed(404, errBody(api.CodeNotFound, "", ""))
	f.Add(400, []byte("Client sent an HTTP request to an HTTPS server.\n"))
	f.Add(502, []byte("<html><body>Bad Gateway</body></html>"))
	f.Add(503, []byte(`{"error":"not an object"}`))
	f.Add(500, []byte(`{"error":{"code":"\u0000\u001b","message":"\xff\xfe"}}`))
	f.Add(401, []byte{})
	f.Add(-1, []byte("null"))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := decodeError(status, body)
		e.endpoint, e.Method, e.Path = "https://agent:8443", "GET", "/v1/info"
		msg := e.Error()
		if e.Message == "" {
			t.Fatalf("empty message for status %d body %q", status, body)
		}
		if len(msg) > 2*maxShortLen+maxMessageLen+200 {
			t.Fatalf("error text unbounded: %d bytes", len(msg))
		}
		for _, r := range msg {
			if unicode.IsControl(r) && r != '\n' && r != '\t' {
				t.Fatalf("control character %U in %q", r, msg)
			}
		}
		for _, s := range sentinels {
			if errors.Is(e, s) != (s == sentinelFor(status)) {
				t.Fatalf("status %d: errors.Is(%v) wrong", status, s)
			}
		}
	})
}
