package client

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// CreateCluster creates a cluster.
func (c *Client) CreateCluster(ctx context.Context, req api.ClusterRequest) (*api.Cluster, error) {
	var out api.Cluster
	if err := c.do(ctx, request{method: http.MethodPost, path: api.PathClusters, body: req, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetCluster reads a cluster; a missing one is ErrNotFound.
func (c *Client) GetCluster(ctx context.Context, name string) (*api.Cluster, error) {
	return c.WatchCluster(ctx, name, 0, 0)
}

// WatchCluster long-polls a cluster like WatchMachine.
func (c *Client) WatchCluster(ctx context.Context, name string, afterRevision uint64, wait time.Duration) (*api.Cluster, error) {
	p, err := route(api.PathCluster, name)
	if err != nil {
		return nil, err
	}
	var out api.Cluster
	if err := c.do(ctx, watchRequest(p, afterRevision, wait, &out)); err != nil {
		return nil, err
	}
	return &out, nil
}

// WaitCluster watches a cluster until done reports true, with the same
// contract as WaitMachine.
func (c *Client) WaitCluster(ctx context.Context, name string, done func(*api.Cluster) (bool, error)) (*api.Cluster, error) {
	return waitFor(ctx, c, "cluster", name,
		func(ctx context.Context, after uint64) (*api.Cluster, error) {
			return c.WatchCluster(ctx, name, after, c.pollWait)
		},
		func(cl *api.Cluster) uint64 { return cl.Revision },
		done,
		func(cl *api.Cluster) string {
			s := "last seen in phase " + strconv.Quote(string(cl.Phase))
			if cl.Message != "" {
				s += ": " + cl.Message
			}
			return s
		})
}

// ListClusters lists every cluster.
func (c *Client) ListClusters(ctx context.Context) ([]api.Cluster, error) {
	var out api.ClusterList
	if err := c.do(ctx, request{method: http.MethodGet, path: api.PathClusters, out: &out}); err != nil {
		return nil, err
	}
	return out.Items, nil
}

// UpdateCluster replaces a cluster's spec. A non-zero req.Version must match
// the stored one (ErrConflict otherwise).
func (c *Client) UpdateCluster(ctx context.Context, name string, req api.ClusterRequest) (*api.Cluster, error) {
	p, err := route(api.PathCluster, name)
	if err != nil {
		return nil, err
	}
	var out api.Cluster
	if err := c.do(ctx, request{method: http.MethodPut, path: p, body: req, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteCluster deletes a cluster; a missing one is ErrNotFound.
func (c *Client) DeleteCluster(ctx context.Context, name string) error {
	p, err := route(api.PathCluster, name)
	if err != nil {
		return err
	}
	return c.do(ctx, request{method: http.MethodDelete, path: p})
}
