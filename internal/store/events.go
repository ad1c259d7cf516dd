package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// DefaultEventLimit is what ListEvents returns at most when limit <= 0.
const DefaultEventLimit = 1000

// AppendEvent implements Store. An event for a machine the store does not
// hold is refused with ErrNotFound: accepting it would leave a log behind
// that a machine created later under the same name would inherit.
//
// Each log's entry count lives in its bucket's sequence field, so capping
// is a counter check plus deleting the first keys, whatever the log size.
func (s *Bolt) AppendEvent(ctx context.Context, e model.Event) (model.Event, error) {
	var out model.Event
	err := s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		if e.Machine != "" && tx.Bucket(bucketMachines).Get([]byte(e.Machine)) == nil {
			return nil, beforeWrite(objErr(KindMachine, e.Machine, ErrNotFound))
		}
		// e stays as the caller passed it: a re-run must stamp the time
		// and sequence afresh.
		stored, change, err := s.appendEvent(tx, e)
		if err != nil {
			return nil, err
		}
		out = stored
		return []Change{change}, nil
	})
	if err != nil {
		return model.Event{}, err
	}
	return out, nil
}

// appendEvent assigns e the next sequence number and stores it in its log
// inside tx, dropping the log's oldest entries beyond its cap.
func (s *Bolt) appendEvent(tx *bolt.Tx, e model.Event) (model.Event, Change, error) {
	b, limit, err := s.eventLog(tx, e.Machine, true)
	if err != nil {
		return e, Change{}, err
	}
	meta := tx.Bucket(bucketMeta)
	var seq uint64
	if v := meta.Get(metaEventSeq); len(v) == 8 {
		seq = binary.BigEndian.Uint64(v)
	} else if v != nil {
		return e, Change{}, fmt.Errorf("event sequence counter is corrupt (%d bytes)", len(v))
	}
	seq++
	if err := meta.Put(metaEventSeq, be64(seq)); err != nil {
		return e, Change{}, err
	}
	e.Seq = seq
	if e.Time.IsZero() {
		e.Time = now()
	}
	data, err := json.Marshal(&e)
	if err != nil {
		return e, Change{}, fmt.Errorf("event for machine %q: %w", e.Machine, err)
	}
	if err := b.Put(be64(seq), data); err != nil {
		return e, Change{}, err
	}
	n := b.Sequence() + 1
	c := b.Cursor()
	for ; n > uint64(limit); n-- {
		if k, _ := c.First(); k == nil {
			break
		}
		if err := c.Delete(); err != nil {
			return e, Change{}, err
		}
	}
	if err := b.SetSequence(n); err != nil {
		return e, Change{}, err
	}
	return e, Change{Kind: KindEvent, Name: e.Machine, Revision: seq}, nil
}

// eventLog returns the bucket holding machine's events ("" for agent-wide
// ones) and its cap. b is nil when the machine exists but has no events yet
// and create is false.
func (s *Bolt) eventLog(tx *bolt.Tx, machine string, create bool) (b *bolt.Bucket, limit int, err error) {
	if machine == "" {
		return tx.Bucket(bucketAgentEvents), s.maxAgentEvents, nil
	}
	if tx.Bucket(bucketMachines).Get([]byte(machine)) == nil {
		return nil, 0, objErr(KindMachine, machine, ErrNotFound)
	}
	events := tx.Bucket(bucketEvents)
	if create {
		b, err = events.CreateBucketIfNotExists([]byte(machine))
	} else {
		b = events.Bucket([]byte(machine))
	}
	return b, s.maxMachineEvents, err
}

// ListEvents implements Store. Listing events of a machine the store does
// not hold returns ErrNotFound.
func (s *Bolt) ListEvents(ctx context.Context, machine string, after uint64, limit int) ([]model.Event, error) {
	if limit <= 0 {
		limit = DefaultEventLimit
	}
	out := []model.Event{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b, _, err := s.eventLog(tx, machine, false)
		if err != nil || b == nil || after == math.MaxUint64 {
			return err
		}
		c := b.Cursor()
		for k, v := c.Seek(be64(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			var e model.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("event %d of machine %q: stored record is corrupt: %v", binary.BigEndian.Uint64(k), machine, err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
