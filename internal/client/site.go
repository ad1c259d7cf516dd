package client

import (
	"context"
	"net/http"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// GetSiteParams reads the site params (secret params by name only).
func (c *Client) GetSiteParams(ctx context.Context) (*api.SiteParams, error) {
	var out api.SiteParams
	if err := c.do(ctx, request{method: http.MethodGet, path: api.PathSiteParams, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// PutSiteParams replaces the site params; the answer names the machines
// the change re-provisions. A machine that would no longer render is an
// *APIError with status 422.
func (c *Client) PutSiteParams(ctx context.Context, req api.SiteParamsRequest) (*api.SiteParams, error) {
	var out api.SiteParams
	if err := c.do(ctx, request{method: http.MethodPut, path: api.PathSiteParams, body: req, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteSiteParams removes every site param and secret param.
func (c *Client) DeleteSiteParams(ctx context.Context) (*api.SiteParams, error) {
	var out api.SiteParams
	if err := c.do(ctx, request{method: http.MethodDelete, path: api.PathSiteParams, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// GeneratedSecret reads machine's generated secret name, which needs a
// read-write token; before it exists it is ErrNotFound, unless create,
// which makes it.
func (c *Client) GeneratedSecret(ctx context.Context, machine, name string, create bool) (*api.GeneratedSecret, error) {
	p, err := route(api.PathMachineGeneratedSecret, machine, name)
	if err != nil {
		return nil, err
	}
	method := http.MethodGet
	if create {
		method = http.MethodPost
	}
	var out api.GeneratedSecret
	if err := c.do(ctx, request{method: method, path: p, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// RotateGeneratedSecret forgets machine's generated secret name: its next
// use makes a new value.
func (c *Client) RotateGeneratedSecret(ctx context.Context, machine, name string) error {
	p, err := route(api.PathMachineGeneratedSecret, machine, name)
	if err != nil {
		return err
	}
	return c.do(ctx, request{method: http.MethodDelete, path: p})
}
