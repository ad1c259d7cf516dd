package store

import (
	"context"
	"encoding/json"
	"errors"

	bolt "go.etcd.io/bbolt"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// deepCopy returns an independent copy via JSON, the same path the object
// takes to disk, so the copy holds exactly what a later Get returns.
func deepCopy[T any](kind Kind, name string, v *T) (*T, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, objErr(kind, name, err)
	}
	out := new(T)
	if err := json.Unmarshal(data, out); err != nil {
		return nil, objErr(kind, name, err)
	}
	return out, nil
}

// CreateProfile implements Store.
func (s *Bolt) CreateProfile(ctx context.Context, in *model.BootProfile) (*model.BootProfile, error) {
	if in == nil {
		return nil, errors.New("boot profile is nil")
	}
	if err := validName(KindProfile, in.Name); err != nil {
		return nil, err
	}
	p, err := deepCopy(KindProfile, in.Name, in)
	if err != nil {
		return nil, err
	}
	p.SecretParams = cloneSecrets(in.SecretParams)
	t := now()
	p.Version = 1
	p.CreatedAt, p.UpdatedAt = t, t
	err = s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		if tx.Bucket(bucketProfiles).Get([]byte(p.Name)) != nil {
			return nil, beforeWrite(objErr(KindProfile, p.Name, ErrExists))
		}
		if err := s.putProfile(tx, p); err != nil {
			return nil, err
		}
		return []Change{{Kind: KindProfile, Name: p.Name, Revision: p.Version}}, nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// GetProfile implements Store.
func (s *Bolt) GetProfile(ctx context.Context, name string) (*model.BootProfile, error) {
	var p *model.BootProfile
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		p, err = s.getProfile(tx, name)
		return err
	})
	return p, err
}

// ListProfiles implements Store; profiles come sorted by name.
func (s *Bolt) ListProfiles(ctx context.Context) ([]*model.BootProfile, error) {
	var out []*model.BootProfile
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		if out, err = listJSON[model.BootProfile](tx, bucketProfiles, KindProfile); err != nil {
			return err
		}
		for _, p := range out {
			if p.SecretParams, err = s.getSecretParams(tx, KindProfile, p.Name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UpdateProfile implements Store. Change.Revision for profiles carries the
// Version, since a profile has no separate revision.
func (s *Bolt) UpdateProfile(ctx context.Context, name string, mutate func(p *model.BootProfile) error) (*model.BootProfile, error) {
	var out *model.BootProfile
	err := s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		p, err := s.getProfile(tx, name)
		if err != nil {
			return nil, beforeWrite(err)
		}
		old := *p
		if err := mutate(p); err != nil {
			return nil, beforeWrite(err)
		}
		p.Name = name
		p.CreatedAt = old.CreatedAt
		p.Version = old.Version + 1
		p.UpdatedAt = now()
		if err := s.putProfile(tx, p); err != nil {
			return nil, err
		}
		out = p
		return []Change{{Kind: KindProfile, Name: name, Revision: p.Version}}, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteProfile implements Store.
func (s *Bolt) DeleteProfile(ctx context.Context, name string, check func(p *model.BootProfile) error) error {
	return s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		p, err := getJSON[model.BootProfile](tx, bucketProfiles, KindProfile, name)
		if err != nil && (check != nil || errors.Is(err, ErrNotFound)) {
			return nil, beforeWrite(err)
		}
		if check != nil {
			if err := check(p); err != nil {
				return nil, beforeWrite(err)
			}
		}
		if err := tx.Bucket(bucketProfiles).Delete([]byte(name)); err != nil {
			return nil, err
		}
		if err := s.putSecretParams(tx, KindProfile, name, nil); err != nil {
			return nil, err
		}
		var rev uint64
		if p != nil {
			rev = p.Version
		}
		return []Change{{Kind: KindProfile, Name: name, Revision: rev, Deleted: true}}, nil
	})
}

// CreateCluster implements Store.
func (s *Bolt) CreateCluster(ctx context.Context, in *model.Cluster) (*model.Cluster, error) {
	if in == nil {
		return nil, errors.New("cluster is nil")
	}
	if err := validName(KindCluster, in.Name); err != nil {
		return nil, err
	}
	c, err := deepCopy(KindCluster, in.Name, in)
	if err != nil {
		return nil, err
	}
	c.SecretParams = cloneSecrets(in.SecretParams)
	t := now()
	c.Version, c.Revision = 1, 1
	c.CreatedAt, c.UpdatedAt = t, t
	err = s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		if tx.Bucket(bucketClusters).Get([]byte(c.Name)) != nil {
			return nil, beforeWrite(objErr(KindCluster, c.Name, ErrExists))
		}
		if err := s.putCluster(tx, c); err != nil {
			return nil, err
		}
		return []Change{{Kind: KindCluster, Name: c.Name, Revision: c.Revision}}, nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// GetCluster implements Store.
func (s *Bolt) GetCluster(ctx context.Context, name string) (*model.Cluster, error) {
	var c *model.Cluster
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		c, err = s.getCluster(tx, name)
		return err
	})
	return c, err
}

// ListClusters implements Store; clusters come sorted by name.
func (s *Bolt) ListClusters(ctx context.Context) ([]*model.Cluster, error) {
	var out []*model.Cluster
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		if out, err = listJSON[model.Cluster](tx, bucketClusters, KindCluster); err != nil {
			return err
		}
		for _, c := range out {
			if c.SecretParams, err = s.getSecretParams(tx, KindCluster, c.Name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UpdateCluster implements Store.
func (s *Bolt) UpdateCluster(ctx context.Context, name string, mutate func(c *model.Cluster) (bool, error)) (*model.Cluster, error) {
	var out *model.Cluster
	err := s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		c, err := s.getCluster(tx, name)
		if err != nil {
			return nil, beforeWrite(err)
		}
		old := *c
		specChanged, err := mutate(c)
		if err != nil {
			return nil, beforeWrite(err)
		}
		c.Name = name
		c.CreatedAt = old.CreatedAt
		c.Version = old.Version
		if specChanged {
			c.Version++
		}
		c.Revision = old.Revision + 1
		c.UpdatedAt = now()
		if err := s.putCluster(tx, c); err != nil {
			return nil, err
		}
		out = c
		return []Change{{Kind: KindCluster, Name: name, Revision: c.Revision}}, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteCluster implements Store.
func (s *Bolt) DeleteCluster(ctx context.Context, name string, check func(c *model.Cluster) error) error {
	return s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		c, err := getJSON[model.Cluster](tx, bucketClusters, KindCluster, name)
		if err != nil && (check != nil || errors.Is(err, ErrNotFound)) {
			return nil, beforeWrite(err)
		}
		if check != nil {
			if err := check(c); err != nil {
				return nil, beforeWrite(err)
			}
		}
		if err := tx.Bucket(bucketClusters).Delete([]byte(name)); err != nil {
			return nil, err
		}
		if err := s.putSecretParams(tx, KindCluster, name, nil); err != nil {
			return nil, err
		}
		var rev uint64
		if c != nil {
			rev = c.Revision
		}
		return []Change{{Kind: KindCluster, Name: name, Revision: rev, Deleted: true}}, nil
	})
}

func (s *Bolt) getProfile(tx *bolt.Tx, name string) (*model.BootProfile, error) {
	p, err := getJSON[model.BootProfile](tx, bucketProfiles, KindProfile, name)
	if err != nil {
		return nil, err
	}
	p.SecretParams, err = s.getSecretParams(tx, KindProfile, name)
	return p, err
}

func (s *Bolt) putProfile(tx *bolt.Tx, p *model.BootProfile) error {
	if err := putJSON(tx, bucketProfiles, KindProfile, p.Name, p); err != nil {
		return err
	}
	return s.putSecretParams(tx, KindProfile, p.Name, p.SecretParams)
}

func (s *Bolt) getCluster(tx *bolt.Tx, name string) (*model.Cluster, error) {
	c, err := getJSON[model.Cluster](tx, bucketClusters, KindCluster, name)
	if err != nil {
		return nil, err
	}
	c.SecretParams, err = s.getSecretParams(tx, KindCluster, name)
	return c, err
}

func (s *Bolt) putCluster(tx *bolt.Tx, c *model.Cluster) error {
	if err := putJSON(tx, bucketClusters, KindCluster, c.Name, c); err != nil {
		return err
	}
	return s.putSecretParams(tx, KindCluster, c.Name, c.SecretParams)
}
