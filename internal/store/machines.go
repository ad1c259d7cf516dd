package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// machineRecord is a machine as stored: the machine with its secrets blanked,
// and the secrets sealed beside it. Keeping them out of the machine JSON
// means no code path can marshal a plaintext secret into the file.
type machineRecord struct {
	Machine *model.Machine `json:"machine"`
	Sealed  sealedSecrets  `json:"sealed"`
}

type sealedSecrets struct {
	BMCPassword      []byte `json:"bmc_password,omitempty"`
	RunToken         []byte `json:"run_token,omitempty"`
	SecretParams     []byte `json:"secret_params,omitempty"`
	GeneratedSecrets []byte `json:"generated_secrets,omitempty"`
}

// Additional data for each sealed field: object kind, name and field, so a
// blob only opens where it was written.
func adBMCPassword(name string) string      { return "machine/" + name + "/bmc.password" }
func adRunToken(name string) string         { return "machine/" + name + "/run.token" }
func adSecretParams(name string) string     { return "machine/" + name + "/secret_params" }
func adGeneratedSecrets(name string) string { return "machine/" + name + "/generated_secrets" }

func (s *Bolt) encodeMachine(m *model.Machine) ([]byte, error) {
	blank := *m
	blank.BMC.Password = ""
	var rec machineRecord
	if m.BMC.Password != "" {
		blob, err := s.sealer.seal(m.BMC.Password, adBMCPassword(m.Name))
		if err != nil {
			return nil, objErr(KindMachine, m.Name, fmt.Errorf("sealing BMC password: %w", err))
		}
		rec.Sealed.BMCPassword = blob
	}
	var err error
	if rec.Sealed.SecretParams, err = s.sealSecrets(m.SecretParams, adSecretParams(m.Name)); err != nil {
		return nil, objErr(KindMachine, m.Name, fmt.Errorf("sealing secret params: %w", err))
	}
	if rec.Sealed.GeneratedSecrets, err = s.sealSecrets(m.GeneratedSecrets, adGeneratedSecrets(m.Name)); err != nil {
		return nil, objErr(KindMachine, m.Name, fmt.Errorf("sealing generated secrets: %w", err))
	}
	if m.Run != nil {
		run := *m.Run
		run.Token = ""
		blank.Run = &run
		if m.Run.Token != "" {
			blob, err := s.sealer.seal(m.Run.Token, adRunToken(m.Name))
			if err != nil {
				return nil, objErr(KindMachine, m.Name, fmt.Errorf("sealing run token: %w", err))
			}
			rec.Sealed.RunToken = blob
		}
	}
	rec.Machine = &blank
	data, err := json.Marshal(&rec)
	if err != nil {
		return nil, objErr(KindMachine, m.Name, err)
	}
	return data, nil
}

// decodeMachine returns a fresh, deep copy of the stored machine with its
// secrets opened.
func (s *Bolt) decodeMachine(name string, data []byte) (*model.Machine, error) {
	var rec machineRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, corrupt(KindMachine, name, err)
	}
	m := rec.Machine
	if m == nil {
		return nil, corrupt(KindMachine, name, errors.New("no machine in record"))
	}
	if m.Name != name {
		return nil, corrupt(KindMachine, name, fmt.Errorf("record names machine %q", m.Name))
	}
	if rec.Sealed.BMCPassword != nil {
		pw, err := s.sealer.open(rec.Sealed.BMCPassword, adBMCPassword(name))
		if err != nil {
			return nil, objErr(KindMachine, name, fmt.Errorf("BMC password: %w", err))
		}
		m.BMC.Password = pw
	}
	var err error
	if m.SecretParams, err = s.openSecrets(rec.Sealed.SecretParams, adSecretParams(name)); err != nil {
		return nil, objErr(KindMachine, name, fmt.Errorf("secret params: %w", err))
	}
	if m.GeneratedSecrets, err = s.openSecrets(rec.Sealed.GeneratedSecrets, adGeneratedSecrets(name)); err != nil {
		return nil, objErr(KindMachine, name, fmt.Errorf("generated secrets: %w", err))
	}
	if rec.Sealed.RunToken != nil {
		if m.Run == nil {
			return nil, corrupt(KindMachine, name, errors.New("run token without a run"))
		}
		tok, err := s.sealer.open(rec.Sealed.RunToken, adRunToken(name))
		if err != nil {
			return nil, objErr(KindMachine, name, fmt.Errorf("run token: %w", err))
		}
		m.Run.Token = tok
	}
	return m, nil
}

func (s *Bolt) getMachine(tx *bolt.Tx, name string) (*model.Machine, error) {
	data := tx.Bucket(bucketMachines).Get([]byte(name))
	if data == nil {
		return nil, objErr(KindMachine, name, ErrNotFound)
	}
	return s.decodeMachine(name, data)
}

// normalizeMACs rewrites m.MACs in canonical form, since the index and
// the boot edge's DHCP/iPXE lookups compare strings.
func normalizeMACs(m *model.Machine) error {
	for i, mac := range m.MACs {
		n, err := model.NormalizeMAC(mac)
		if err != nil {
			return objErr(KindMachine, m.Name, err)
		}
		m.MACs[i] = n
	}
	return nil
}

// macsFree fails with ErrMACInUse if a machine other than name holds one of
// macs. It only reads, so write fns call it before their first write.
func macsFree(tx *bolt.Tx, name string, macs []string) error {
	idx := tx.Bucket(bucketMACs)
	for _, mac := range macs {
		if owner := idx.Get([]byte(mac)); owner != nil && string(owner) != name {
			return fmt.Errorf("machine %q: mac %s is used by machine %q: %w", name, mac, string(owner), ErrMACInUse)
		}
	}
	return nil
}

// claimMACs points every MAC in newMACs at name in the index and drops the
// entries of oldMACs it no longer lists. The caller checked macsFree.
func claimMACs(tx *bolt.Tx, name string, oldMACs, newMACs []string) error {
	idx := tx.Bucket(bucketMACs)
	keep := make(map[string]bool, len(newMACs))
	for _, mac := range newMACs {
		keep[mac] = true
	}
	for _, mac := range oldMACs {
		if keep[mac] {
			continue
		}
		if owner := idx.Get([]byte(mac)); string(owner) == name {
			if err := idx.Delete([]byte(mac)); err != nil {
				return err
			}
		}
	}
	for mac := range keep {
		if err := idx.Put([]byte(mac), []byte(name)); err != nil {
			return err
		}
	}
	return nil
}

// CreateMachine implements Store.
func (s *Bolt) CreateMachine(ctx context.Context, in *model.Machine) (*model.Machine, error) {
	if in == nil {
		return nil, errors.New("machine is nil")
	}
	if err := validName(KindMachine, in.Name); err != nil {
		return nil, err
	}
	m := *in
	m.MACs = append([]string(nil), in.MACs...)
	if err := normalizeMACs(&m); err != nil {
		return nil, err
	}
	t := now()
	m.Version, m.Revision = 1, 1
	m.CreatedAt, m.UpdatedAt = t, t

	var out *model.Machine
	err := s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		b := tx.Bucket(bucketMachines)
		if b.Get([]byte(m.Name)) != nil {
			return nil, beforeWrite(objErr(KindMachine, m.Name, ErrExists))
		}
		if err := macsFree(tx, m.Name, m.MACs); err != nil {
			return nil, beforeWrite(err)
		}
		data, err := s.encodeMachine(&m)
		if err != nil {
			return nil, beforeWrite(err)
		}
		// Decoding what is written hands the caller a copy sharing nothing
		// with its input, exactly as a later Get would return it.
		if out, err = s.decodeMachine(m.Name, data); err != nil {
			return nil, beforeWrite(err)
		}
		if err := claimMACs(tx, m.Name, nil, m.MACs); err != nil {
			return nil, err
		}
		if err := b.Put([]byte(m.Name), data); err != nil {
			return nil, err
		}
		return []Change{{Kind: KindMachine, Name: m.Name, Revision: m.Revision}}, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetMachine implements Store.
func (s *Bolt) GetMachine(ctx context.Context, name string) (*model.Machine, error) {
	var m *model.Machine
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		m, err = s.getMachine(tx, name)
		return err
	})
	return m, err
}

// MachineByMAC implements Store. mac may be in any form NormalizeMAC accepts.
func (s *Bolt) MachineByMAC(ctx context.Context, mac string) (*model.Machine, error) {
	n, err := model.NormalizeMAC(mac)
	if err != nil {
		return nil, err
	}
	var m *model.Machine
	err = s.view(ctx, func(tx *bolt.Tx) error {
		owner := tx.Bucket(bucketMACs).Get([]byte(n))
		if owner == nil {
			return fmt.Errorf("mac %s: %w", n, ErrNotFound)
		}
		var err error
		m, err = s.getMachine(tx, string(owner))
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("mac %s: index names machine %q, which does not exist: %w", n, string(owner), ErrNotFound)
		}
		return err
	})
	return m, err
}

// ListMachines implements Store; machines come sorted by name.
func (s *Bolt) ListMachines(ctx context.Context) ([]*model.Machine, error) {
	out := []*model.Machine{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMachines).ForEach(func(k, data []byte) error {
			m, err := s.decodeMachine(string(k), data)
			if err != nil {
				return err
			}
			out = append(out, m)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UpdateMachine implements Store. mutate sees a private copy decoded inside
// the write transaction; the name, versions and timestamps it may change
// are reset to the store's values.
func (s *Bolt) UpdateMachine(ctx context.Context, name string, mutate func(m *model.Machine) (bool, error)) (*model.Machine, error) {
	out, _, err := s.UpdateMachineRecording(ctx, name, func(m *model.Machine) (bool, []model.Event, error) {
		specChanged, err := mutate(m)
		return specChanged, nil, err
	})
	return out, err
}

// UpdateMachineRecording implements Store: UpdateMachine plus the events
// mutate returns, in one transaction.
func (s *Bolt) UpdateMachineRecording(ctx context.Context, name string, mutate func(m *model.Machine) (bool, []model.Event, error)) (*model.Machine, []model.Event, error) {
	var out *model.Machine
	var recorded []model.Event
	err := s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		recorded = nil
		m, err := s.getMachine(tx, name)
		if err != nil {
			return nil, beforeWrite(err)
		}
		old := *m
		old.MACs = append([]string(nil), m.MACs...)
		specChanged, events, err := mutate(m)
		if err != nil {
			return nil, beforeWrite(err)
		}
		m.Name = name
		m.CreatedAt = old.CreatedAt
		m.Version = old.Version
		if specChanged {
			m.Version++
		}
		m.Revision = old.Revision + 1
		m.UpdatedAt = now()
		if err := normalizeMACs(m); err != nil {
			return nil, beforeWrite(err)
		}
		if err := macsFree(tx, name, m.MACs); err != nil {
			return nil, beforeWrite(err)
		}
		data, err := s.encodeMachine(m)
		if err != nil {
			return nil, beforeWrite(err)
		}
		if err := claimMACs(tx, name, old.MACs, m.MACs); err != nil {
			return nil, err
		}
		if err := tx.Bucket(bucketMachines).Put([]byte(name), data); err != nil {
			return nil, err
		}
		out = m
		changes := []Change{{Kind: KindMachine, Name: name, Revision: m.Revision}}
		for _, e := range events {
			e.Machine = name
			e, change, err := s.appendEvent(tx, e)
			if err != nil {
				return nil, err
			}
			recorded = append(recorded, e)
			changes = append(changes, change)
		}
		return changes, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, recorded, nil
}

// DeleteMachine implements Store. It also drops the machine's events and
// MAC index entries. A record that no longer decodes can still be deleted
// when check is nil, so an operator can clear it out.
func (s *Bolt) DeleteMachine(ctx context.Context, name string, check func(m *model.Machine) error) error {
	return s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		b := tx.Bucket(bucketMachines)
		data := b.Get([]byte(name))
		if data == nil {
			return nil, beforeWrite(objErr(KindMachine, name, ErrNotFound))
		}
		m, decodeErr := s.decodeMachine(name, data)
		if decodeErr != nil && check != nil {
			return nil, beforeWrite(decodeErr)
		}
		if check != nil {
			if err := check(m); err != nil {
				return nil, beforeWrite(err)
			}
		}
		if err := b.Delete([]byte(name)); err != nil {
			return nil, err
		}
		if err := dropMACs(tx, name, m); err != nil {
			return nil, err
		}
		if tx.Bucket(bucketEvents).Bucket([]byte(name)) != nil {
			if err := tx.Bucket(bucketEvents).DeleteBucket([]byte(name)); err != nil {
				return nil, err
			}
		}
		var rev uint64
		if m != nil {
			rev = m.Revision
		}
		return []Change{{Kind: KindMachine, Name: name, Revision: rev, Deleted: true}}, nil
	})
}

// dropMACs removes the index entries of a deleted machine. With the record
// unreadable (m nil) its MACs are unknown, so the index is scanned: a rare
// repair path, not the hot one.
func dropMACs(tx *bolt.Tx, name string, m *model.Machine) error {
	idx := tx.Bucket(bucketMACs)
	if m != nil {
		for _, mac := range m.MACs {
			if string(idx.Get([]byte(mac))) == name {
				if err := idx.Delete([]byte(mac)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var stale [][]byte
	err := idx.ForEach(func(k, v []byte) error {
		if string(v) == name {
			stale = append(stale, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range stale {
		if err := idx.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
