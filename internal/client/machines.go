package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// MachineFilter narrows ListMachines; empty fields match everything.
type MachineFilter struct {
	Cluster string
	Role    string
	Phase   api.MachinePhase
	State   api.DesiredState
}

// route fills a route pattern's {placeholders} with escaped values, in order.
func route(pattern string, values ...string) (string, error) {
	for _, v := range values {
		i := strings.IndexByte(pattern, '{')
		j := strings.IndexByte(pattern, '}')
		if i < 0 || j < i {
			return "", fmt.Errorf("client: too many values for route %s", pattern)
		}
		if v == "" {
			return "", fmt.Errorf("%s: %s must not be empty", pattern, pattern[i+1:j])
		}
		pattern = pattern[:i] + url.PathEscape(v) + pattern[j+1:]
	}
	return pattern, nil
}

// Info returns the agent's version and capabilities.
func (c *Client) Info(ctx context.Context) (*api.Info, error) {
	var out api.Info
	if err := c.do(ctx, request{method: http.MethodGet, path: api.PathInfo, out: &out}); err != nil {
		return nil, err
	}
	c.leaseFor.Store(int64(out.LeaseSeconds * float64(time.Second)))
	return &out, nil
}

// CreateMachine registers a machine.
func (c *Client) CreateMachine(ctx context.Context, req api.MachineRequest) (*api.Machine, error) {
	var out api.Machine
	if err := c.do(ctx, request{method: http.MethodPost, path: api.PathMachines, body: req, lease: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetMachine reads a machine; a missing one is ErrNotFound.
func (c *Client) GetMachine(ctx context.Context, name string) (*api.Machine, error) {
	return c.WatchMachine(ctx, name, 0, 0)
}

// WatchMachine long-polls a machine: the agent answers once its revision
// exceeds afterRevision or after wait (capped at 60s), whichever is first.
// A zero wait is a plain read.
func (c *Client) WatchMachine(ctx context.Context, name string, afterRevision uint64, wait time.Duration) (*api.Machine, error) {
	p, err := route(api.PathMachine, name)
	if err != nil {
		return nil, err
	}
	var out api.Machine
	if err := c.do(ctx, watchRequest(p, afterRevision, wait, &out)); err != nil {
		return nil, err
	}
	return &out, nil
}

func watchRequest(path string, afterRevision uint64, wait time.Duration, out any) request {
	r := request{method: http.MethodGet, path: path, out: out}
	if wait > 0 {
		r.wait = min(wait, maxWatchWait)
		r.query = url.Values{
			api.QueryWait:          {r.wait.String()},
			api.QueryAfterRevision: {strconv.FormatUint(afterRevision, 10)},
		}
	}
	return r
}

// WaitMachine watches a machine until done reports true or an error, the
// machine disappears (ErrNotFound, so callers can wait for deletion) or ctx
// ends (the error then wraps ctx.Err()). It returns the machine last seen,
// also alongside an error. Transient failures (agent restarting,
// unreachable for a while) are retried until ctx ends.
func (c *Client) WaitMachine(ctx context.Context, name string, done func(*api.Machine) (bool, error)) (*api.Machine, error) {
	return waitFor(ctx, c, "machine", name,
		func(ctx context.Context, after uint64) (*api.Machine, error) {
			return c.WatchMachine(ctx, name, after, c.pollWait)
		},
		func(m *api.Machine) uint64 { return m.Revision },
		done,
		describeMachine)
}

func describeMachine(m *api.Machine) string {
	s := "last seen in phase " + strconv.Quote(string(m.Phase))
	if m.Step != "" {
		s += ", step " + strconv.Quote(string(m.Step))
	}
	if m.LastError != "" {
		s += ", last error: " + m.LastError
	}
	return s
}

// ListMachines lists the machines matching f.
func (c *Client) ListMachines(ctx context.Context, f MachineFilter) ([]api.Machine, error) {
	out, err := c.WatchMachines(ctx, f, "")
	if err != nil {
		return nil, err
	}
	return out.Items, nil
}

// WatchMachines long-polls the list of machines matching f: the agent
// answers once the list's ETag differs from etag, or after the client's
// poll wait with the list unchanged. An empty etag is a plain list.
func (c *Client) WatchMachines(ctx context.Context, f MachineFilter, etag string) (*api.MachineList, error) {
	q := url.Values{}
	for k, v := range map[string]string{api.QueryCluster: f.Cluster, api.QueryRole: f.Role, api.QueryPhase: string(f.Phase), api.QueryState: string(f.State)} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var out api.MachineList
	r := request{method: http.MethodGet, path: api.PathMachines, query: q, out: &out}
	if etag != "" {
		r.wait = min(c.pollWait, maxWatchWait)
		q.Set(api.QueryWait, r.wait.String())
		q.Set(api.QueryIfNoneMatch, etag)
	}
	if err := c.do(ctx, r); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateMachine replaces a machine's spec. A non-zero req.Version must match
// the stored one (ErrConflict otherwise).
func (c *Client) UpdateMachine(ctx context.Context, name string, req api.MachineRequest) (*api.Machine, error) {
	p, err := route(api.PathMachine, name)
	if err != nil {
		return nil, err
	}
	var out api.Machine
	if err := c.do(ctx, request{method: http.MethodPut, path: p, body: req, lease: true, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteMachine requests a machine's deletion, which the agent carries out
// asynchronously (power off, then removal; WaitMachine until ErrNotFound to
// see it gone); force removes it at once. A missing machine is ErrNotFound.
func (c *Client) DeleteMachine(ctx context.Context, name string, force bool) error {
	p, err := route(api.PathMachine, name)
	if err != nil {
		return err
	}
	r := request{method: http.MethodDelete, path: p, lease: true}
	if force {
		r.query = url.Values{api.QueryForce: {"true"}}
	}
	return c.do(ctx, r)
}

// MachineAction runs one of api.ActionNames on a machine and returns the
// machine as the agent saw it after accepting the action.
func (c *Client) MachineAction(ctx context.Context, name string, action api.Action) (*api.Machine, error) {
	p, err := route(api.PathMachineAction, name, string(action))
	if err != nil {
		return nil, err
	}
	var out api.ActionResponse
	if err := c.do(ctx, request{method: http.MethodPost, path: p, lease: true, out: &out}); err != nil {
		return nil, err
	}
	return &out.Machine, nil
}

// MachineEvents pages through a machine's events with Seq > after; limit 0
// leaves the page size to the agent. Pass the result's Next as the next after.
func (c *Client) MachineEvents(ctx context.Context, name string, after uint64, limit int) (*api.EventList, error) {
	p, err := route(api.PathMachineEvents, name)
	if err != nil {
		return nil, err
	}
	return c.events(ctx, p, after, limit)
}

// AgentEvents pages through the agent-wide events (unknown MACs and the like).
func (c *Client) AgentEvents(ctx context.Context, after uint64, limit int) (*api.EventList, error) {
	return c.events(ctx, api.PathEvents, after, limit)
}

func (c *Client) events(ctx context.Context, path string, after uint64, limit int) (*api.EventList, error) {
	q := url.Values{}
	if after > 0 {
		q.Set(api.QueryAfter, strconv.FormatUint(after, 10))
	}
	if limit > 0 {
		q.Set(api.QueryLimit, strconv.Itoa(limit))
	}
	var out api.EventList
	if err := c.do(ctx, request{method: http.MethodGet, path: path, query: q, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}
