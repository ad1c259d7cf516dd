package client

import (
	"context"
	"errors"
	"net/http"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// RenewLease extends this client's lease on a machine (Config.LeaseHolder),
// or takes it when it is free or expired, without changing the spec. It
// returns the lease the agent granted, whose DurationSeconds paces further
// renewals. Another holder's live lease is ErrConflict for which LeaseHeld
// is true, its message naming that holder; a
// missing machine is ErrNotFound. Without a LeaseHolder there is no lease to
// keep: it returns nil, nil and sends nothing.
func (c *Client) RenewLease(ctx context.Context, name string) (*api.Lease, error) {
	if c.leaseHolder == "" {
		return nil, nil
	}
	p, err := route(api.PathMachineLease, name)
	if err != nil {
		return nil, err
	}
	var out api.Lease
	if err := c.do(ctx, request{method: http.MethodPut, path: p, lease: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// ReleaseLease gives up this client's lease on a machine at once, so another
// writer need not wait for it to run out. A machine without a live lease is
// not an error; another holder's live lease is ErrConflict. Without a
// LeaseHolder it does nothing.
func (c *Client) ReleaseLease(ctx context.Context, name string) error {
	if c.leaseHolder == "" {
		return nil
	}
	p, err := route(api.PathMachineLease, name)
	if err != nil {
		return err
	}
	return c.do(ctx, request{method: http.MethodDelete, path: p, lease: true})
}

// LeaseHeld reports whether err is the agent refusing a write because
// another holder's lease on the machine is live: a conflict that ends by
// itself, unlike a stale version.
func LeaseHeld(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Code == api.CodeLeaseHeld
}
