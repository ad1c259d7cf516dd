package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

var bucketTest = []byte("test")

// hold makes a write whose fn blocks until release is called lead a batch,
// so writes submitted meanwhile queue up behind it and form the next one.
// The held write commits (nothing) on release.
func hold(t *testing.T, s *Bolt) (release func()) {
	t.Helper()
	started, unblock := make(chan struct{}), make(chan struct{})
	errc := make(chan error)
	go func() {
		errc <- s.update(context.Background(), func(tx *bolt.Tx) ([]Change, error) {
			close(started)
			<-unblock
			return nil, nil
		})
	}()
	<-started
	return func() {
		close(unblock)
		if err := <-errc; err != nil {
			t.Errorf("held write: %v", err)
		}
	}
}

type outcome struct {
	err      error
	panicked any
}

// waitAll waits for each write on a goroutine of its own, as update's
// callers do: any of them may be handed the lead.
func waitAll(s *Bolt, ws []*write) []outcome {
	out := make([]outcome, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() {
			defer func() { out[i].panicked = recover() }()
			out[i].err = s.wait(w)
		})
	}
	wg.Wait()
	return out
}

func openGroupTest(t *testing.T) *Bolt {
	t.Helper()
	s := openTest(t, "", BoltOptions{})
	err := s.update(context.Background(), func(tx *bolt.Tx) ([]Change, error) {
		_, err := tx.CreateBucket(bucketTest)
		return nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// putKey is a write fn storing key in the test bucket; it records the
// transaction it ran in, so a test can tell which writes shared one.
func putKey(key string, txID *int) func(tx *bolt.Tx) ([]Change, error) {
	return func(tx *bolt.Tx) ([]Change, error) {
		*txID = tx.ID()
		if err := tx.Bucket(bucketTest).Put([]byte(key), []byte("v")); err != nil {
			return nil, err
		}
		return []Change{{Kind: "test", Name: key}}, nil
	}
}

func testKeys(t *testing.T, s *Bolt) []string {
	t.Helper()
	var keys []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTest).ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestGroupCommitBatches queues writes behind a held one: all of them must
// share the next transaction, up to maxBatch, and each caller returns only
// once that transaction committed.
func TestGroupCommitBatches(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes int
	}{
		{"one", 1},
		{"few", 10},
		{"full batch", maxBatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openGroupTest(t)
			ctx := context.Background()
			release := hold(t, s)
			before := s.commits.Load()
			txIDs := make([]int, tc.writes)
			ws := make([]*write, tc.writes)
			for i := range ws {
				var err error
				if ws[i], err = s.submit(ctx, putKey(fmt.Sprintf("k%03d", i), &txIDs[i])); err != nil {
					t.Fatal(err)
				}
			}
			release()
			for i, o := range waitAll(s, ws) {
				if o.err != nil || o.panicked != nil {
					t.Fatalf("write %d: %v %v", i, o.err, o.panicked)
				}
			}
			if got := s.commits.Load() - before; got != 2 {
				t.Errorf("%d writes behind a held one took %d commits, want 2 (held + one batch)", tc.writes, got)
			}
			for i, id := range txIDs {
				if id != txIDs[0] {
					t.Fatalf("write %d ran in tx %d, write 0 in tx %d", i, id, txIDs[0])
				}
			}
			if got := len(testKeys(t, s)); got != tc.writes {
				t.Errorf("%d keys stored, want %d", got, tc.writes)
			}
		})
	}
}

// TestGroupCommitBatchBound overfills the queue: the first batch must stop
// at maxBatch and the rest still land.
func TestGroupCommitBatchBound(t *testing.T) {
	s := openGroupTest(t)
	ctx := context.Background()
	release := hold(t, s)
	const extra = 20
	txIDs := make([]int, maxBatch+extra)
	ws := make([]*write, maxBatch)
	for i := range ws {
		var err error
		if ws[i], err = s.submit(ctx, putKey(fmt.Sprintf("k%03d", i), &txIDs[i])); err != nil {
			t.Fatal(err)
		}
	}
	// These queue behind the first maxBatch.
	var wg sync.WaitGroup
	errs := make([]error, extra)
	for i := range extra {
		wg.Go(func() {
			errs[i] = s.update(ctx, putKey(fmt.Sprintf("k%03d", maxBatch+i), &txIDs[maxBatch+i]))
		})
	}
	release()
	for i, o := range waitAll(s, ws) {
		if o.err != nil || o.panicked != nil {
			t.Fatalf("write %d: %v %v", i, o.err, o.panicked)
		}
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("write %d: %v", maxBatch+i, err)
		}
	}
	sizes := map[int]int{}
	for _, id := range txIDs {
		sizes[id]++
	}
	if sizes[txIDs[0]] != maxBatch {
		t.Errorf("first batch held %d writes, want %d", sizes[txIDs[0]], maxBatch)
	}
	for id, n := range sizes {
		if n > maxBatch {
			t.Errorf("tx %d held %d writes, more than %d", id, n, maxBatch)
		}
	}
	if got := len(testKeys(t, s)); got != maxBatch+extra {
		t.Errorf("%d keys stored, want %d", got, maxBatch+extra)
	}
}

var errTest = errors.New("test refusal")

// TestGroupCommitErrorIsolation puts a failing write among succeeding ones
// in one batch: the others must land and be published in order, the
// failing caller must get its own error (or panic) and nothing it wrote
// may stay behind.
func TestGroupCommitErrorIsolation(t *testing.T) {
	type failure struct {
		fn func(calls int, tx *bolt.Tx) ([]Change, error)
		// wantErr: the failing caller's outcome; nil means it succeeds on
		// its re-run alone.
		wantErr     error
		wantPanic   bool
		wantCommits uint64 // besides the held write's
		wantBad     bool   // the failing fn's key is stored
	}
	writeBad := func(tx *bolt.Tx) error { return tx.Bucket(bucketTest).Put([]byte("bad"), []byte("v")) }
	failures := map[string]failure{
		"refusal before writing": {
			fn: func(_ int, tx *bolt.Tx) ([]Change, error) {
				return nil, beforeWrite(errTest)
			},
			wantErr: errTest, wantCommits: 1,
		},
		"error after writing": {
			fn: func(_ int, tx *bolt.Tx) ([]Change, error) {
				if err := writeBad(tx); err != nil {
					return nil, err
				}
				return nil, fmt.Errorf("wrapped: %w", errTest)
			},
			wantErr: errTest, wantCommits: 1,
		},
		"marked error passed on after writing": {
			fn: func(_ int, tx *bolt.Tx) ([]Change, error) {
				if err := writeBad(tx); err != nil {
					return nil, err
				}
				return nil, fmt.Errorf("inner: %w", beforeWrite(errTest))
			},
			wantErr: errTest, wantCommits: 1,
		},
		"panic after writing": {
			fn: func(_ int, tx *bolt.Tx) ([]Change, error) {
				if err := writeBad(tx); err != nil {
					return nil, err
				}
				panic(errTest)
			},
			wantPanic: true, wantCommits: 1,
		},
		"fails only in the shared batch": {
			fn: func(calls int, tx *bolt.Tx) ([]Change, error) {
				if err := writeBad(tx); err != nil {
					return nil, err
				}
				if calls == 1 {
					return nil, errTest
				}
				return []Change{{Kind: "test", Name: "bad"}}, nil
			},
			wantCommits: 2, wantBad: true,
		},
	}
	for name, f := range failures {
		for _, at := range []int{0, 2, 4} {
			t.Run(fmt.Sprintf("%s at %d", name, at), func(t *testing.T) {
				s := openGroupTest(t)
				ctx := context.Background()
				ch, unsub := s.Subscribe()
				defer unsub()
				release := hold(t, s)
				before := s.commits.Load()

				const n = 5
				var want []string
				ws := make([]*write, n)
				txIDs := make([]int, n)
				calls := 0
				for i := range n {
					fn := putKey(fmt.Sprintf("ok%d", i), &txIDs[i])
					if i == at {
						fn = func(tx *bolt.Tx) ([]Change, error) {
							calls++
							return f.fn(calls, tx)
						}
					} else {
						want = append(want, fmt.Sprintf("ok%d", i))
					}
					var err error
					if ws[i], err = s.submit(ctx, fn); err != nil {
						t.Fatal(err)
					}
				}
				release()

				outs := waitAll(s, ws)
				for i, o := range outs {
					if i != at && (o.err != nil || o.panicked != nil) {
						t.Errorf("write %d failed beside the failing one: %v %v", i, o.err, o.panicked)
					}
				}
				err, panicked := outs[at].err, outs[at].panicked
				switch {
				case f.wantPanic:
					if panicked != errTest {
						t.Errorf("failing caller got panic %v, err %v; want panic %v", panicked, err, errTest)
					}
				case panicked != nil:
					t.Errorf("failing caller panicked: %v", panicked)
				case !errors.Is(err, f.wantErr) || (f.wantErr == nil) != (err == nil):
					t.Errorf("failing caller got %v, want %v", err, f.wantErr)
				}
				if _, marked := err.(noWriteErr); marked {
					t.Errorf("caller got the internal mark: %#v", err)
				}

				if f.wantBad {
					want = append(want, "bad")
				}
				if got := testKeys(t, s); !slices.Equal(got, sortedCopy(want)) {
					t.Errorf("stored keys %v, want %v", got, sortedCopy(want))
				}
				if got := s.commits.Load() - before - 1; got != f.wantCommits {
					t.Errorf("%d commits besides the held write's, want %d", got, f.wantCommits)
				}
				// Changes are published before callers are released, so all
				// of them are in the channel by now.
				var published []string
			drain:
				for {
					select {
					case c := <-ch:
						published = append(published, c.Name)
					default:
						break drain
					}
				}
				if !slices.Equal(published, want) {
					t.Errorf("published %v, want %v (commit order)", published, want)
				}
			})
		}
	}
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestGroupCommitLoneWriter: a write with no company gets its own
// transaction, committed before update returns; it waits for nothing else.
func TestGroupCommitLoneWriter(t *testing.T) {
	s := openGroupTest(t)
	ctx := context.Background()
	for i := range 5 {
		before := s.commits.Load()
		var txID int
		if err := s.update(ctx, putKey(fmt.Sprintf("k%d", i), &txID)); err != nil {
			t.Fatal(err)
		}
		if got := s.commits.Load() - before; got != 1 {
			t.Fatalf("write %d: %d commits, want 1", i, got)
		}
		var committed int
		if err := s.db.View(func(tx *bolt.Tx) error { committed = tx.ID(); return nil }); err != nil {
			t.Fatal(err)
		}
		if committed != txID {
			t.Fatalf("write %d ran in tx %d, last committed is %d", i, txID, committed)
		}
	}
}

// TestGroupCommitContext: a write whose ctx ends before the writer takes it
// is dropped with ctx's error; once taken, it is written.
func TestGroupCommitContext(t *testing.T) {
	s := openGroupTest(t)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	var txID int
	if err := s.update(cancelled, putKey("early", &txID)); !errors.Is(err, context.Canceled) {
		t.Fatalf("write with a cancelled ctx: %v", err)
	}

	release := hold(t, s)
	queued, cancelQueued := context.WithCancel(context.Background())
	w, err := s.submit(queued, putKey("queued", &txID))
	if err != nil {
		t.Fatal(err)
	}
	kept, err := s.submit(context.Background(), putKey("kept", &txID))
	if err != nil {
		t.Fatal(err)
	}
	cancelQueued()
	release()
	outs := waitAll(s, []*write{w, kept})
	if !errors.Is(outs[0].err, context.Canceled) {
		t.Errorf("write cancelled while queued: %v", outs[0].err)
	}
	if outs[1].err != nil {
		t.Errorf("write queued beside it: %v", outs[1].err)
	}
	if got := testKeys(t, s); !slices.Equal(got, []string{"kept"}) {
		t.Errorf("stored keys %v, want [kept]", got)
	}
}

// TestGroupCommitClose: Close lets queued writes commit before it closes
// the file, and later writes fail.
func TestGroupCommitClose(t *testing.T) {
	path := t.TempDir() + "/agent.db"
	s := openTest(t, path, BoltOptions{})
	ctx := context.Background()
	if err := s.update(ctx, func(tx *bolt.Tx) ([]Change, error) {
		_, err := tx.CreateBucket(bucketTest)
		return nil, err
	}); err != nil {
		t.Fatal(err)
	}
	release := hold(t, s)
	var ws []*write
	var txID int
	for i := range 3 {
		w, err := s.submit(ctx, putKey(fmt.Sprintf("k%d", i), &txID))
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	// Close refuses new writes first, then waits for the queue to drain.
	for {
		s.qmu.Lock()
		refusing := s.closed
		s.qmu.Unlock()
		if refusing {
			break
		}
		runtime.Gosched()
	}
	release()
	for i, o := range waitAll(s, ws) {
		if o.err != nil {
			t.Errorf("write %d queued before Close: %v", i, o.err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := s.update(ctx, putKey("late", &txID)); !errors.Is(err, berrors.ErrDatabaseNotOpen) {
		t.Errorf("write after Close: %v", err)
	}
	s2 := openTest(t, path, BoltOptions{})
	if got := testKeys(t, s2); !slices.Equal(got, []string{"k0", "k1", "k2"}) {
		t.Errorf("after reopen: keys %v", got)
	}
}

// TestGroupCommitConcurrentWriters runs the store's own write paths from
// many goroutines: every write lands, every caller sees its own result, and
// the writes share commits.
func TestGroupCommitConcurrentWriters(t *testing.T) {
	s := openTest(t, "", BoltOptions{})
	ctx := context.Background()
	const writers, rounds = 16, 10
	before := s.commits.Load()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := range writers {
		wg.Go(func() {
			name := fmt.Sprintf("m%d", g)
			if _, err := s.CreateMachine(ctx, testMachine(name, macFor(g))); err != nil {
				errs <- err
				return
			}
			// Another writer's create of the same name fails alone.
			if _, err := s.CreateMachine(ctx, testMachine(name, macFor(g+writers))); !errors.Is(err, ErrExists) {
				errs <- fmt.Errorf("duplicate create of %s: %v", name, err)
				return
			}
			for r := range rounds {
				m, evs, err := s.UpdateMachineRecording(ctx, name, func(m *model.Machine) (bool, []model.Event, error) {
					m.Params["round"] = fmt.Sprint(r)
					return false, []model.Event{{Type: "round", Message: fmt.Sprint(r)}}, nil
				})
				if err != nil {
					errs <- err
					return
				}
				if m.Name != name || m.Revision != uint64(r+2) || m.Params["round"] != fmt.Sprint(r) {
					errs <- fmt.Errorf("%s round %d: got %s revision %d round %s", name, r, m.Name, m.Revision, m.Params["round"])
					return
				}
				if len(evs) != 1 || evs[0].Machine != name || evs[0].Message != fmt.Sprint(r) || evs[0].Seq == 0 {
					errs <- fmt.Errorf("%s round %d: recorded %+v", name, r, evs)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The refused duplicate creates commit nothing, so they do not count.
	const writes = writers * (1 + rounds)
	commits := s.commits.Load() - before
	t.Logf("%d writes, %d commits", writes, commits)
	if commits >= writes {
		t.Errorf("%d writes from %d goroutines took %d commits: no write shared one", writes, writers, commits)
	}
	for g := range writers {
		name := fmt.Sprintf("m%d", g)
		m, err := s.GetMachine(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if m.Revision != rounds+1 {
			t.Errorf("%s revision %d, want %d", name, m.Revision, rounds+1)
		}
		evs, err := s.ListEvents(ctx, name, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != rounds {
			t.Errorf("%s has %d events, want %d", name, len(evs), rounds)
		}
	}
}
