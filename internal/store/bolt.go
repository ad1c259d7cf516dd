package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// Defaults for BoltOptions' zero values.
const (
	DefaultMaxEventsPerMachine = 500
	DefaultMaxAgentEvents      = 2000
	DefaultLockTimeout         = time.Second
)

// Bucket names. Events of one machine live in their own sub-bucket of
// events, keyed by big-endian Seq, so listing from a cursor is a seek and
// capping drops from the front without touching other machines.
var (
	bucketMachines    = []byte("machines")
	bucketMACs        = []byte("macs") // normalised MAC -> machine name
	bucketProfiles    = []byte("profiles")
	bucketClusters    = []byte("clusters")
	bucketEvents      = []byte("events")       // machine name -> sub-bucket
	bucketAgentEvents = []byte("agent_events") // events recorded with Machine ""
	bucketMeta        = []byte("meta")

	metaEventSeq = []byte("event_seq")
	// metaKeyCheck holds a value sealed with the store's key, so opening the
	// file with another key fails at start rather than at the first BMC login.
	metaKeyCheck = []byte("key_check")
)

const keyCheckPlaintext = "baremetal-agent store key check"

// BoltOptions configures OpenBolt. Zero values take the defaults.
type BoltOptions struct {
	// KeyFile holds the AES-256 key (32 raw bytes) that seals secrets. It is
	// created with mode 0600 on first open; an existing one readable or
	// writable by group or others is refused. Default: the data file path
	// with ".key" appended.
	KeyFile string
	// MaxEventsPerMachine caps each machine's event log; the oldest events
	// are dropped. Default 500.
	MaxEventsPerMachine int
	// MaxAgentEvents caps the agent-wide event log (events with Machine "").
	// Default 2000.
	MaxAgentEvents int
	// LockTimeout is how long to wait for another process to release the
	// data file. Default 1s.
	LockTimeout time.Duration
	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger
}

// Bolt is the bbolt-backed Store.
type Bolt struct {
	db      *bolt.DB
	path    string
	keyFile string
	sealer  *sealer
	log     *slog.Logger

	maxMachineEvents int
	maxAgentEvents   int

	// wmu orders publish calls the same way as commits: bbolt releases its
	// writer lock before commit handlers run, so without it two writers could
	// notify subscribers in the opposite order of their commits.
	wmu sync.Mutex
	hub hub

	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens (creating if needed) the bbolt data file at path and its key
// file. It fails if another process holds the data file, if the key file is
// exposed to group or others, or if the key does not match the data file.
func OpenBolt(path string, opts BoltOptions) (*Bolt, error) {
	if opts.KeyFile == "" {
		opts.KeyFile = path + ".key"
	}
	if opts.MaxEventsPerMachine <= 0 {
		opts.MaxEventsPerMachine = DefaultMaxEventsPerMachine
	}
	if opts.MaxAgentEvents <= 0 {
		opts.MaxAgentEvents = DefaultMaxAgentEvents
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}

	// Check an existing key's permissions before touching the data file, so a
	// leaked key is reported even when the data file is also broken.
	key, keyErr := loadKey(opts.KeyFile)
	if keyErr != nil && !isNotExist(keyErr) {
		return nil, keyErr
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("data file %s is locked by another baremetal-agent (waited %s); stop it or use another --data-dir", path, opts.LockTimeout)
		}
		return nil, fmt.Errorf("opening data file %s: %w", path, err)
	}
	s := &Bolt{
		db:               db,
		path:             path,
		keyFile:          opts.KeyFile,
		log:              log,
		maxMachineEvents: opts.MaxEventsPerMachine,
		maxAgentEvents:   opts.MaxAgentEvents,
	}
	if err := s.init(key); err != nil {
		db.Close()
		return nil, err
	}
	log.Info("store opened", "path", path, "key_file", opts.KeyFile)
	return s, nil
}

func (s *Bolt) init(key []byte) error {
	if key == nil {
		var sealed bool
		err := s.db.View(func(tx *bolt.Tx) error {
			if b := tx.Bucket(bucketMeta); b != nil {
				sealed = b.Get(metaKeyCheck) != nil
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("reading data file %s: %w", s.path, err)
		}
		if sealed {
			return fmt.Errorf("key file %s is missing but data file %s holds secrets sealed with it; restore the key file (a new key cannot decrypt them)", s.keyFile, s.path)
		}
		key, err = createKey(s.keyFile)
		if err != nil {
			return err
		}
		s.log.Info("created store key file", "key_file", s.keyFile)
	}
	sl, err := newSealer(key)
	if err != nil {
		return fmt.Errorf("key file %s: %w", s.keyFile, err)
	}
	s.sealer = sl

	err = s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMachines, bucketMACs, bucketProfiles, bucketClusters, bucketEvents, bucketAgentEvents, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("creating bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if check := meta.Get(metaKeyCheck); check != nil {
			if _, err := s.sealer.open(check, string(metaKeyCheck)); err != nil {
				return fmt.Errorf("key file %s does not match data file %s: secrets in it cannot be decrypted; use the key file it was created with", s.keyFile, s.path)
			}
			return nil
		}
		blob, err := s.sealer.seal(keyCheckPlaintext, string(metaKeyCheck))
		if err != nil {
			return err
		}
		return meta.Put(metaKeyCheck, blob)
	})
	if err != nil {
		return fmt.Errorf("initialising data file %s: %w", s.path, err)
	}
	return nil
}

// Close closes the data file and every subscriber channel. In-flight
// transactions finish first.
func (s *Bolt) Close() error {
	s.closeOnce.Do(func() {
		s.wmu.Lock()
		s.closeErr = s.db.Close()
		s.wmu.Unlock()
		s.hub.closeAll()
	})
	return s.closeErr
}

// Subscribe implements Store.
func (s *Bolt) Subscribe() (<-chan Change, func()) { return s.hub.subscribe() }

// update runs fn in a write transaction and, once it committed, publishes
// the changes fn reported.
func (s *Bolt) update(ctx context.Context, fn func(tx *bolt.Tx) ([]Change, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var changes []Change
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		changes, err = fn(tx)
		return err
	})
	if err != nil {
		return err
	}
	for _, c := range changes {
		s.hub.publish(c)
	}
	return nil
}

func (s *Bolt) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

// now is the store's clock: UTC without a monotonic reading, so a returned
// object compares equal to the same object read back from disk.
func now() time.Time { return time.Now().UTC() }

func objErr(kind Kind, name string, err error) error {
	return fmt.Errorf("%s %q: %w", kind, name, err)
}

func corrupt(kind Kind, name string, err error) error {
	return fmt.Errorf("%s %q: stored record is corrupt: %v", kind, name, err)
}

// validName keeps keys the store writes to the names the rest of the agent
// can put in URLs and templates.
func validName(kind Kind, name string) error {
	if !model.ValidName(name) {
		return fmt.Errorf("%s %q: invalid name: want %s", kind, name, model.NameRule)
	}
	return nil
}

func be64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// getJSON decodes the object stored under name in bucket. Profiles and
// clusters hold no secrets, so they are stored as plain JSON.
func getJSON[T any](tx *bolt.Tx, bucket []byte, kind Kind, name string) (*T, error) {
	data := tx.Bucket(bucket).Get([]byte(name))
	if data == nil {
		return nil, objErr(kind, name, ErrNotFound)
	}
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, corrupt(kind, name, err)
	}
	return v, nil
}

func listJSON[T any](tx *bolt.Tx, bucket []byte, kind Kind) ([]*T, error) {
	out := []*T{}
	err := tx.Bucket(bucket).ForEach(func(k, data []byte) error {
		v := new(T)
		if err := json.Unmarshal(data, v); err != nil {
			return corrupt(kind, string(k), err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

func putJSON(tx *bolt.Tx, bucket []byte, kind Kind, name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return objErr(kind, name, err)
	}
	return tx.Bucket(bucket).Put([]byte(name), data)
}
