package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

func TestLeaseCallsWithoutHolderSendNothing(t *testing.T) {
	rec := &recorder{respond: func(int, *http.Request, []byte) (int, http.Header, any) { return 500, nil, nil }}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil, nil)
	if l, err := c.RenewLease(context.Background(), "m1"); l != nil || err != nil {
		t.Errorf("RenewLease without a holder = %+v, %v; want nil, nil", l, err)
	}
	if err := c.ReleaseLease(context.Background(), "m1"); err != nil {
		t.Errorf("ReleaseLease without a holder: %v", err)
	}
	if n := len(rec.requests()); n != 0 {
		t.Errorf("server saw %d requests, want none", n)
	}
}

func TestLeaseErrors(t *testing.T) {
	conflictBody := api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeLeaseHeld, Field: api.HeaderLeaseHolder,
		Message: `machine "m1" is leased by "run-b" until 2026-01-02T03:06:05Z`}}
	notFoundBody := api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeNotFound, Message: `machine "m1" not found`}}
	tests := []struct {
		name   string
		call   func(c *Client) error
		status int
		body   any
		want   error
	}{
		{"renew conflict", func(c *Client) error { _, err := c.RenewLease(context.Background(), "m1"); return err }, 409, conflictBody, ErrConflict},
		{"release conflict", func(c *Client) error { return c.ReleaseLease(context.Background(), "m1") }, 409, conflictBody, ErrConflict},
		{"renew not found", func(c *Client) error { _, err := c.RenewLease(context.Background(), "m1"); return err }, 404, notFoundBody, ErrNotFound},
		{"release not found", func(c *Client) error { return c.ReleaseLease(context.Background(), "m1") }, 404, notFoundBody, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{respond: func(int, *http.Request, []byte) (int, http.Header, any) { return tt.status, nil, tt.body }}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			c := newTestClient(t, srv.URL, nil, func(cfg *Config) { cfg.LeaseHolder = "run-a" })
			err := tt.call(c)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			var apiErr *APIError
			if tt.want == ErrConflict && (!LeaseHeld(err) || !errors.As(err, &apiErr) || !strings.Contains(err.Error(), `"run-b"`)) {
				t.Errorf("conflict %v should be a held lease naming run-b", err)
			}
			if n := len(rec.requests()); n != 1 {
				t.Errorf("server saw %d requests, want 1 (4xx is not retried)", n)
			}
		})
	}
}

func TestEmptyNameRejectedByLeaseCalls(t *testing.T) {
	c := newTestClient(t, "http://127.0.0.1:1", nil, func(cfg *Config) { cfg.LeaseHolder = "run-a" })
	if _, err := c.RenewLease(context.Background(), ""); err == nil {
		t.Error("RenewLease accepted an empty name")
	}
	if err := c.ReleaseLease(context.Background(), ""); err == nil {
		t.Error("ReleaseLease accepted an empty name")
	}
}

// TestLeaseHeldCarriesTheAgentsDuration: a refusal says how long the
// agent's leases last, as its Info told, so advice need not assume one.
func TestLeaseHeldCarriesTheAgentsDuration(t *testing.T) {
	rec := &recorder{respond: func(_ int, r *http.Request, _ []byte) (int, http.Header, any) {
		if r.URL.Path == api.PathInfo {
			return 200, nil, api.Info{APIVersion: api.APIVersion, LeaseSeconds: 300}
		}
		return 409, nil, api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeLeaseHeld, Field: api.HeaderLeaseHolder, Message: "leased"}}
	}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil, func(cfg *Config) { cfg.LeaseHolder = "run-a" })
	_, err := c.Info(context.Background())
	require.NoError(t, err)
	_, err = c.RenewLease(context.Background(), "m1")
	require.True(t, LeaseHeld(err), "error %v", err)
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 5*time.Minute, apiErr.LeaseDuration)

	stale := &APIError{StatusCode: 409, Code: api.CodeConflict, Field: api.HeaderLeaseHolder}
	assert.False(t, LeaseHeld(stale), "a conflict is a held lease by its code, not its field")
}
