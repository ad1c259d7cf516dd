package store

import "sync"

// subscriberBuffer is how many changes a subscriber may fall behind before
// it is told to resync instead.
const subscriberBuffer = 256

// hub fans changes out to subscribers without ever blocking a writer.
type hub struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	ch chan Change
	// missed is set when a change was dropped; the next change delivered is
	// then the resync marker Change{}, so the subscriber knows to re-list.
	missed bool
}

func (h *hub) subscribe() (<-chan Change, func()) {
	sub := &subscriber{ch: make(chan Change, subscriberBuffer)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(sub.ch)
		return sub.ch, func() {}
	}
	if h.subs == nil {
		h.subs = make(map[*subscriber]struct{})
	}
	h.subs[sub] = struct{}{}
	return sub.ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[sub]; ok {
			delete(h.subs, sub)
			close(sub.ch)
		}
	}
}

func (h *hub) publish(c Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		if sub.missed {
			select {
			case sub.ch <- Change{}:
				sub.missed = false
			default:
				continue
			}
		}
		select {
		case sub.ch <- c:
		default:
			sub.missed = true
		}
	}
}

// closeAll ends every subscription; later subscribers get a closed channel.
func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for sub := range h.subs {
		delete(h.subs, sub)
		close(sub.ch)
	}
}
