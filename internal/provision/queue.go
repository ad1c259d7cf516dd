package provision

import (
	"sync"
	"time"
)

// queue is a deduplicating work queue keyed by object name. A key is handed
// to at most one worker at a time; adding a key while it is being processed
// marks it to run again once the worker is done, so no change is lost and no
// two workers ever touch the same machine concurrently.
type queue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	order  []string
	queued map[string]bool
	active map[string]bool
	again  map[string]bool
	timers map[string]*delayed
	closed bool
}

type delayed struct {
	at time.Time
	t  *time.Timer
}

func newQueue() *queue {
	q := &queue{
		queued: map[string]bool{},
		active: map[string]bool{},
		again:  map[string]bool{},
		timers: map[string]*delayed{},
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// add makes key ready now.
func (q *queue) add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key)
}

func (q *queue) addLocked(key string) {
	if q.closed {
		return
	}
	if q.active[key] {
		q.again[key] = true
		return
	}
	if q.queued[key] {
		return
	}
	q.queued[key] = true
	q.order = append(q.order, key)
	q.cond.Signal()
}

// addAfter makes key ready after d. Only the earliest pending delay per key
// is kept: a later one would only postpone work someone asked for sooner.
func (q *queue) addAfter(key string, d time.Duration) {
	if d <= 0 {
		q.add(key)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	at := time.Now().Add(d)
	if cur, ok := q.timers[key]; ok {
		if !cur.at.After(at) {
			return
		}
		cur.t.Stop()
	}
	dl := &delayed{at: at}
	dl.t = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.timers[key] == dl {
			delete(q.timers, key)
		}
		q.addLocked(key)
	})
	q.timers[key] = dl
}

// get blocks until a key is ready or the queue is closed.
func (q *queue) get() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", false
	}
	key := q.order[0]
	q.order = q.order[1:]
	delete(q.queued, key)
	q.active[key] = true
	return key, true
}

// done releases key; if it was added while active it becomes ready again.
func (q *queue) done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.active, key)
	if q.again[key] {
		delete(q.again, key)
		q.addLocked(key)
	}
}

// forget drops a pending delayed add (the object is gone).
func (q *queue) forget(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if d, ok := q.timers[key]; ok {
		d.t.Stop()
		delete(q.timers, key)
	}
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order)
}

// close wakes every worker and stops all timers; later adds are ignored.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for k, d := range q.timers {
		d.t.Stop()
		delete(q.timers, k)
	}
	q.cond.Broadcast()
}
