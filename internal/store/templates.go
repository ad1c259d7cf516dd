package store

import (
	"context"
	"errors"

	bolt "go.etcd.io/bbolt"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// CreateTemplate implements Store.
func (s *Bolt) CreateTemplate(ctx context.Context, in *model.Template) (*model.Template, error) {
	if in == nil {
		return nil, errors.New("template is nil")
	}
	if err := validName(KindTemplate, in.Name); err != nil {
		return nil, err
	}
	t, err := deepCopy(KindTemplate, in.Name, in)
	if err != nil {
		return nil, err
	}
	ts := now()
	t.Version = 1
	t.CreatedAt, t.UpdatedAt = ts, ts
	err = s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		if tx.Bucket(bucketTemplates).Get([]byte(t.Name)) != nil {
			return nil, beforeWrite(objErr(KindTemplate, t.Name, ErrExists))
		}
		if err := putJSON(tx, bucketTemplates, KindTemplate, t.Name, t); err != nil {
			return nil, err
		}
		return []Change{{Kind: KindTemplate, Name: t.Name, Revision: t.Version}}, nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// GetTemplate implements Store.
func (s *Bolt) GetTemplate(ctx context.Context, name string) (*model.Template, error) {
	var t *model.Template
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		t, err = getJSON[model.Template](tx, bucketTemplates, KindTemplate, name)
		return err
	})
	return t, err
}

// ListTemplates implements Store; templates come sorted by name.
func (s *Bolt) ListTemplates(ctx context.Context) ([]*model.Template, error) {
	var out []*model.Template
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = listJSON[model.Template](tx, bucketTemplates, KindTemplate)
		return err
	})
	return out, err
}

// UpdateTemplate implements Store.
func (s *Bolt) UpdateTemplate(ctx context.Context, name string, mutate func(t *model.Template) error) (*model.Template, error) {
	var out *model.Template
	err := s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		t, err := getJSON[model.Template](tx, bucketTemplates, KindTemplate, name)
		if err != nil {
			return nil, beforeWrite(err)
		}
		old := *t
		if err := mutate(t); err != nil {
			return nil, beforeWrite(err)
		}
		t.Name = name
		t.CreatedAt = old.CreatedAt
		t.Version = old.Version + 1
		t.UpdatedAt = now()
		if err := putJSON(tx, bucketTemplates, KindTemplate, name, t); err != nil {
			return nil, err
		}
		out = t
		return []Change{{Kind: KindTemplate, Name: name, Revision: t.Version}}, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteTemplate implements Store.
func (s *Bolt) DeleteTemplate(ctx context.Context, name string, check func(t *model.Template) error) error {
	return s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		t, err := getJSON[model.Template](tx, bucketTemplates, KindTemplate, name)
		if err != nil {
			return nil, beforeWrite(err)
		}
		if check != nil {
			if err := check(t); err != nil {
				return nil, beforeWrite(err)
			}
		}
		if err := tx.Bucket(bucketTemplates).Delete([]byte(name)); err != nil {
			return nil, err
		}
		return []Change{{Kind: KindTemplate, Name: name, Revision: t.Version, Deleted: true}}, nil
	})
}
