package main

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Per source, at most logBurst warnings and errors are written per
// logWindow; the rest are counted, and the next line written for that
// source says how many were suppressed. A client that can make the agent
// log (failed requests, refused tokens, cancelled streams) thus cannot
// bury the log or fill the disk.
const (
	logBurst   = 10
	logWindow  = time.Minute
	logSources = 4096
)

// limitedHandler applies that limit to records at slog.LevelWarn and above.
// The source is the record's "remote" attribute (the client address the
// boot edge and the API log), or its message when it has none.
type limitedHandler struct {
	next slog.Handler
	st   *logLimits
}

type logLimits struct {
	mu      sync.Mutex
	now     func() time.Time
	sources map[string]*logSource
}

type logSource struct {
	start      time.Time
	written    int
	suppressed int
}

func newLimitedHandler(next slog.Handler) *limitedHandler {
	return &limitedHandler{next: next, st: &logLimits{now: time.Now, sources: map[string]*logSource{}}}
}

func (h *limitedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *limitedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &limitedHandler{next: h.next.WithAttrs(as), st: h.st}
}

func (h *limitedHandler) WithGroup(name string) slog.Handler {
	return &limitedHandler{next: h.next.WithGroup(name), st: h.st}
}

func (h *limitedHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	key := "msg:" + r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "remote" {
			key = "remote:" + a.Value.String()
			return false
		}
		return true
	})
	ok, suppressed := h.st.allow(key)
	if !ok {
		return nil
	}
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return h.next.Handle(ctx, r)
}

// allow reports whether a record from key may be written now, and how many
// of key's records were suppressed since the last one written.
func (l *logLimits) allow(key string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	src := l.sources[key]
	if src == nil {
		if len(l.sources) >= logSources {
			for k, s := range l.sources {
				if now.Sub(s.start) >= logWindow && s.suppressed == 0 {
					delete(l.sources, k)
				}
			}
		}
		if len(l.sources) >= logSources {
			// Beyond that many sources at once, they share one budget.
			key = "overflow"
			if src = l.sources[key]; src == nil {
				src = &logSource{start: now}
				l.sources[key] = src
			}
		} else {
			src = &logSource{start: now}
			l.sources[key] = src
		}
	}
	if now.Sub(src.start) >= logWindow {
		src.start, src.written = now, 0
	}
	if src.written >= logBurst {
		src.suppressed++
		return false, 0
	}
	src.written++
	n := src.suppressed
	src.suppressed = 0
	return true, n
}
