package client

import (
	"context"
	"net/http"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// CreateBootProfile creates a boot profile.
func (c *Client) CreateBootProfile(ctx context.Context, req api.BootProfileRequest) (*api.BootProfile, error) {
	var out api.BootProfile
	if err := c.do(ctx, request{method: http.MethodPost, path: api.PathProfiles, body: req, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetBootProfile reads a boot profile; a missing one is ErrNotFound.
func (c *Client) GetBootProfile(ctx context.Context, name string) (*api.BootProfile, error) {
	p, err := route(api.PathProfile, name)
	if err != nil {
		return nil, err
	}
	var out api.BootProfile
	if err := c.do(ctx, request{method: http.MethodGet, path: p, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListBootProfiles lists every boot profile.
func (c *Client) ListBootProfiles(ctx context.Context) ([]api.BootProfile, error) {
	var out api.BootProfileList
	if err := c.do(ctx, request{method: http.MethodGet, path: api.PathProfiles, out: &out}); err != nil {
		return nil, err
	}
	return out.Items, nil
}

// UpdateBootProfile replaces a boot profile. A non-zero req.Version must
// match the stored one (ErrConflict otherwise).
func (c *Client) UpdateBootProfile(ctx context.Context, name string, req api.BootProfileRequest) (*api.BootProfile, error) {
	p, err := route(api.PathProfile, name)
	if err != nil {
		return nil, err
	}
	var out api.BootProfile
	if err := c.do(ctx, request{method: http.MethodPut, path: p, body: req, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteBootProfile deletes a boot profile; a missing one is ErrNotFound.
func (c *Client) DeleteBootProfile(ctx context.Context, name string) error {
	p, err := route(api.PathProfile, name)
	if err != nil {
		return err
	}
	return c.do(ctx, request{method: http.MethodDelete, path: p})
}
