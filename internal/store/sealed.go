package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	bolt "go.etcd.io/bbolt"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// bucketSealed holds the secret params of profiles, clusters and the site,
// sealed, keyed by owner (sealedKey). They live beside the objects, not in
// them, so no JSON of an object can carry one; a machine's live in its
// record, beside its BMC password.
var bucketSealed = []byte("sealed")

// metaKeySite is the site object's key in bucketMeta.
var metaKeySite = []byte("site")

// KindSite is the site object (model.Site); Revision is its Version.
const KindSite Kind = "site"

func sealedKey(kind Kind, name string) string {
	if kind == KindSite {
		return string(KindSite)
	}
	return string(kind) + "/" + name
}

// sealSecrets seals a set of secrets as one JSON map; ad binds the blob to
// its owner and field. An empty set is nil: nothing is stored.
func (s *Bolt) sealSecrets(sec model.Secrets, ad string) ([]byte, error) {
	if len(sec) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(sec)
	if err != nil {
		return nil, err
	}
	return s.sealer.seal(string(b), ad)
}

func (s *Bolt) openSecrets(blob []byte, ad string) (model.Secrets, error) {
	if blob == nil {
		return nil, nil
	}
	pt, err := s.sealer.open(blob, ad)
	if err != nil {
		return nil, err
	}
	var out model.Secrets
	if err := json.Unmarshal([]byte(pt), &out); err != nil {
		return nil, fmt.Errorf("sealed secrets: %w", err)
	}
	return out, nil
}

// putSecretParams writes (or, for an empty set, removes) the sealed secret
// params of an object of bucketSealed.
func (s *Bolt) putSecretParams(tx *bolt.Tx, kind Kind, name string, sec model.Secrets) error {
	key := sealedKey(kind, name)
	b := tx.Bucket(bucketSealed)
	if len(sec) == 0 {
		return b.Delete([]byte(key))
	}
	blob, err := s.sealSecrets(sec, key+"/secret_params")
	if err != nil {
		return objErr(kind, name, fmt.Errorf("sealing secret params: %w", err))
	}
	return b.Put([]byte(key), blob)
}

func (s *Bolt) getSecretParams(tx *bolt.Tx, kind Kind, name string) (model.Secrets, error) {
	key := sealedKey(kind, name)
	sec, err := s.openSecrets(tx.Bucket(bucketSealed).Get([]byte(key)), key+"/secret_params")
	if err != nil {
		return nil, objErr(kind, name, fmt.Errorf("secret params: %w", err))
	}
	return sec, nil
}

// GetSite implements Store. An agent that never stored site params has
// the zero Site (Version 0).
func (s *Bolt) GetSite(ctx context.Context) (*model.Site, error) {
	var out *model.Site
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = s.getSite(tx)
		return err
	})
	return out, err
}

func (s *Bolt) getSite(tx *bolt.Tx) (*model.Site, error) {
	site := &model.Site{}
	if data := tx.Bucket(bucketMeta).Get(metaKeySite); data != nil {
		if err := json.Unmarshal(data, site); err != nil {
			return nil, corrupt(KindSite, "", err)
		}
	}
	var err error
	site.SecretParams, err = s.getSecretParams(tx, KindSite, "")
	return site, err
}

// UpdateSite implements Store: mutate sees the current site (secrets
// opened); Version is bumped and UpdatedAt set by the store.
func (s *Bolt) UpdateSite(ctx context.Context, mutate func(site *model.Site) error) (*model.Site, error) {
	var out *model.Site
	err := s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		site, err := s.getSite(tx)
		if err != nil {
			return nil, beforeWrite(err)
		}
		old := site.Version
		if err := mutate(site); err != nil {
			return nil, beforeWrite(err)
		}
		site.Version = old + 1
		site.UpdatedAt = now()
		if err := putJSON(tx, bucketMeta, KindSite, string(metaKeySite), site); err != nil {
			return nil, err
		}
		if err := s.putSecretParams(tx, KindSite, "", site.SecretParams); err != nil {
			return nil, err
		}
		out = site
		return []Change{{Kind: KindSite, Name: string(KindSite), Revision: site.Version}}, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func cloneSecrets(s model.Secrets) model.Secrets {
	if s == nil {
		return nil
	}
	return maps.Clone(s)
}

// EnsureGeneratedSecret returns machine's generated secret name, making a
// random one (model.NewGeneratedSecret) the first time it is asked for;
// created says whether this call made it. The value then stays, across
// re-provisions, until RotateGeneratedSecret drops it.
func EnsureGeneratedSecret(ctx context.Context, st Store, machine, name string) (value string, created bool, err error) {
	m, err := st.GetMachine(ctx, machine)
	if err != nil {
		return "", false, err
	}
	if v, ok := m.GeneratedSecrets[name]; ok {
		return v, false, nil
	}
	_, err = st.UpdateMachine(ctx, machine, func(m *model.Machine) (bool, error) {
		// Another request may have made it since the read above: theirs
		// stands.
		if v, ok := m.GeneratedSecrets[name]; ok {
			value, created = v, false
			return false, nil
		}
		v, err := model.NewGeneratedSecret()
		if err != nil {
			return false, err
		}
		if m.GeneratedSecrets == nil {
			m.GeneratedSecrets = model.Secrets{}
		}
		m.GeneratedSecrets[name] = v
		value, created = v, true
		return false, nil
	})
	if err != nil {
		return "", false, err
	}
	return value, created, nil
}
