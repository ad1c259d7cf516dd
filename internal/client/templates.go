package client

import (
	"context"
	"net/http"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// CreateTemplate creates a snippet.
func (c *Client) CreateTemplate(ctx context.Context, req api.TemplateRequest) (*api.Template, error) {
	var out api.Template
	if err := c.do(ctx, request{method: http.MethodPost, path: api.PathTemplates, body: req, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetTemplate reads a snippet; a missing one is ErrNotFound.
func (c *Client) GetTemplate(ctx context.Context, name string) (*api.Template, error) {
	p, err := route(api.PathTemplate, name)
	if err != nil {
		return nil, err
	}
	var out api.Template
	if err := c.do(ctx, request{method: http.MethodGet, path: p, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListTemplates lists every snippet.
func (c *Client) ListTemplates(ctx context.Context) ([]api.Template, error) {
	var out api.TemplateList
	if err := c.do(ctx, request{method: http.MethodGet, path: api.PathTemplates, out: &out}); err != nil {
		return nil, err
	}
	return out.Items, nil
}

// UpdateTemplate replaces a snippet. A non-zero req.Version must
// match the stored one (ErrConflict otherwise).
func (c *Client) UpdateTemplate(ctx context.Context, name string, req api.TemplateRequest) (*api.Template, error) {
	p, err := route(api.PathTemplate, name)
	if err != nil {
		return nil, err
	}
	var out api.Template
	if err := c.do(ctx, request{method: http.MethodPut, path: p, body: req, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteTemplate deletes a snippet; a missing one is ErrNotFound.
func (c *Client) DeleteTemplate(ctx context.Context, name string) error {
	p, err := route(api.PathTemplate, name)
	if err != nil {
		return err
	}
	return c.do(ctx, request{method: http.MethodDelete, path: p})
}

// RenderedTemplate previews template of machine's profile as the machine
// would receive it now (the run token shown as <token>). A template that
// does not render is an *APIError with status 422.
func (c *Client) RenderedTemplate(ctx context.Context, machine, template string) (*api.RenderedTemplate, error) {
	p, err := route(api.PathMachineRendered, machine, template)
	if err != nil {
		return nil, err
	}
	var out api.RenderedTemplate
	if err := c.do(ctx, request{method: http.MethodGet, path: p, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}
