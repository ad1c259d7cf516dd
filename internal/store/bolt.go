package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
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

	// qmu guards the write queue and leadership (see update). idle is
	// signalled when the last leader steps down, for Close to wait on.
	qmu     sync.Mutex
	queue   []*write
	leading bool
	closed  bool
	idle    sync.Cond
	// commits counts durable write transactions, for tests and benchmarks
	// to compare with the number of writes.
	commits atomic.Uint64
	hub     hub

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
	s.idle.L = &s.qmu
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
		for _, name := range [][]byte{bucketMachines, bucketMACs, bucketProfiles, bucketClusters, bucketEvents, bucketAgentEvents, bucketMeta, bucketBMCSessions} {
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
		// Writes already queued are committed before the file closes, so
		// every caller that got its write in gets the answer it waits for.
		s.qmu.Lock()
		s.closed = true
		for s.leading {
			s.idle.Wait()
		}
		s.qmu.Unlock()
		s.closeErr = s.db.Close()
		s.hub.closeAll()
	})
	return s.closeErr
}

// Subscribe implements Store.
func (s *Bolt) Subscribe() (<-chan Change, func()) { return s.hub.subscribe() }

// update runs fn in a write transaction and returns once that transaction
// is durable and the changes fn reported are published. A ctx cancelled
// before the write is taken into a transaction makes it return ctx.Err()
// unwritten.
//
// Writes are group-committed. One caller at a time is the leader: it takes
// the queued writes (up to maxBatch), runs them in one transaction, commits
// it, and hands leadership to the first write queued meanwhile. Writes that
// arrive during a commit thus share the next one (two fdatasyncs for all)
// instead of each waiting for its own in turn, while a lone write runs at
// once on its caller's goroutine: no timer, no hand-off. fn must therefore be
// safe to run more than once (see commit) and must not call update itself.
func (s *Bolt) update(ctx context.Context, fn func(tx *bolt.Tx) ([]Change, error)) error {
	w, err := s.submit(ctx, fn)
	if err != nil {
		return err
	}
	return s.wait(w)
}

// maxBatch bounds the writes one transaction takes, so a burst does not
// build a transaction whose dirty pages grow without limit.
const maxBatch = 256

// write is one update call on its way through the queue.
type write struct {
	ctx     context.Context
	fn      func(tx *bolt.Tx) ([]Change, error)
	changes []Change
	err     error
	// panicked holds what fn panicked with, re-raised on the caller's
	// goroutine after the transaction is rolled back.
	panicked any
	stack    []byte
	done     chan struct{}
	// lead gets a token when this write's caller is to lead the next batch.
	lead chan struct{}
}

// submit queues fn. The caller must then wait for it.
func (s *Bolt) submit(ctx context.Context, fn func(tx *bolt.Tx) ([]Change, error)) (*write, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w := &write{ctx: ctx, fn: fn, done: make(chan struct{}), lead: make(chan struct{}, 1)}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.closed {
		return nil, berrors.ErrDatabaseNotOpen
	}
	s.queue = append(s.queue, w)
	if !s.leading {
		s.leading = true
		w.lead <- struct{}{}
	}
	return w, nil
}

// wait returns w's outcome once it is committed (or refused), leading a
// batch first if leadership passes to w.
func (s *Bolt) wait(w *write) error {
	select {
	case <-w.done:
	case <-w.lead:
		s.runBatch()
		<-w.done
	}
	if w.panicked != nil {
		panic(w.panicked)
	}
	return w.err
}

// runBatch is the leader's turn: it commits the writes at the head of the
// queue, its own among them (a leader is always the head: leadership goes
// to the head, or to a write that found the queue empty), then passes the
// lead on or, with nothing queued, lets the next arrival take it.
func (s *Bolt) runBatch() {
	s.qmu.Lock()
	n := min(len(s.queue), maxBatch)
	batch := make([]*write, 0, n)
	for _, w := range s.queue[:n] {
		batch = take(batch, w)
	}
	rest := copy(s.queue, s.queue[n:])
	clear(s.queue[rest:])
	s.queue = s.queue[:rest]
	s.qmu.Unlock()

	defer func() {
		s.qmu.Lock()
		defer s.qmu.Unlock()
		if len(s.queue) == 0 {
			s.leading = false
			s.idle.Broadcast()
			return
		}
		s.queue[0].lead <- struct{}{}
	}()
	if len(batch) > 0 {
		s.commit(batch)
	}
}

// take adds w to batch unless its caller gave up while it was queued.
func take(batch []*write, w *write) []*write {
	if err := w.ctx.Err(); err != nil {
		w.err = err
		close(w.done)
		return batch
	}
	return append(batch, w)
}

// noWriteErr marks an error a write fn returned before it wrote anything.
// The transaction it shares with other callers then goes on without it:
// the common refusals (not found, exists, conflict, a mutate or check
// error) cost no rollback and no re-run. Only an error returned as is
// counts, never one found by unwrapping, so a fn that wrote and then
// passed on an inner fn's marked error is still rolled back.
type noWriteErr struct{ err error }

func (e noWriteErr) Error() string { return e.err.Error() }
func (e noWriteErr) Unwrap() error { return e.err }

// beforeWrite marks err (returned by a write fn that has not written yet)
// as leaving the transaction untouched.
func beforeWrite(err error) error { return noWriteErr{err} }

// run calls w.fn, turning a panic into a failed fn so the batch's
// transaction is rolled back rather than left open.
func (w *write) run(tx *bolt.Tx) {
	w.changes, w.err, w.panicked, w.stack = nil, nil, nil, nil
	defer func() {
		if r := recover(); r != nil {
			w.panicked, w.stack = r, debug.Stack()
		}
	}()
	w.changes, w.err = w.fn(tx)
}

// commit runs batch's fns in one transaction and commits it. Then, in batch
// order, it publishes each successful write's changes and releases every
// caller; callers whose fn failed get their error and nothing of theirs is
// written.
//
// A fn that fails without the beforeWrite mark (or panics) may have
// written part of its change, which bbolt cannot undo short of rolling
// back the whole transaction. So the transaction is rolled back, the other
// fns run again as a new batch and the failing one alone after them, where
// what it returns is its caller's answer.
func (s *Bolt) commit(batch []*write) {
	tx, err := s.db.Begin(true)
	if err != nil {
		for _, w := range batch {
			w.err = err
			close(w.done)
		}
		return
	}
	for i, w := range batch {
		w.run(tx)
		if w.panicked == nil {
			if w.err == nil {
				continue
			}
			if nw, ok := w.err.(noWriteErr); ok {
				w.err = nw.err
				continue
			}
		}
		_ = tx.Rollback()
		if len(batch) == 1 {
			if w.panicked != nil {
				// The caller's goroutine re-panics with the value but not
				// this stack, which is the one that shows where fn failed.
				s.log.Error("store write panicked", "panic", w.panicked, "stack", string(w.stack))
			}
			close(w.done)
			return
		}
		// The others' results came from the rolled-back transaction,
		// failures included (they may have seen the failing fn's writes),
		// so all of them run again.
		rest := make([]*write, 0, len(batch)-1)
		rest = append(append(rest, batch[:i]...), batch[i+1:]...)
		s.commit(rest)
		s.commit([]*write{w})
		return
	}
	ok := 0
	for _, w := range batch {
		if w.err == nil {
			ok++
		}
	}
	if ok == 0 {
		// Every fn refused before writing: nothing to make durable, and a
		// commit would still cost the fdatasyncs.
		_ = tx.Rollback()
	} else if err := tx.Commit(); err != nil {
		for _, w := range batch {
			if w.err == nil {
				w.err = err
			}
		}
	} else {
		s.commits.Add(1)
	}
	for _, w := range batch {
		if w.err == nil {
			for _, c := range w.changes {
				s.hub.publish(c)
			}
		}
	}
	for _, w := range batch {
		close(w.done)
	}
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
