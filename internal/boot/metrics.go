package boot

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	tftpTransfers *prometheus.CounterVec
	tftpBytes     prometheus.Counter
	tftpRefused   prometheus.Counter
	tftpDuration  prometheus.Histogram
	httpRequests  *prometheus.CounterVec
	dhcpReplies   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		tftpTransfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baremetal_boot_tftp_transfers_total",
			Help: "TFTP read transfers by result (ok, failed, size_query: a UEFI client asked for the size and ended the transfer, as it does before every download; refused: a request without a valid mode or beyond the transfer caps; unacknowledged: the client never acknowledged the first datagram).",
		}, []string{"result"}),
		tftpBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baremetal_boot_tftp_bytes_total",
			Help: "Bytes sent over TFTP.",
		}),
		tftpRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baremetal_boot_tftp_refused_total",
			Help: "TFTP requests refused by the path check (escape attempts, missing or non-regular files).",
		}),
		tftpDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "baremetal_boot_tftp_transfer_duration_seconds",
			Help:    "Duration of TFTP transfers.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baremetal_boot_http_requests_total",
			Help: "Boot HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		dhcpReplies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baremetal_boot_proxydhcp_replies_total",
			Help: "ProxyDHCP replies by boot file kind (bios, efi-x86_64, efi-arm64, ipxe).",
		}, []string{"kind"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.tftpTransfers, m.tftpBytes, m.tftpRefused, m.tftpDuration, m.httpRequests, m.dhcpReplies} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("boot: registering metrics: %w", err)
		}
	}
	return m, nil
}

// rateLimiter admits one event per key per interval, remembering at most
// max keys, so a flood of unknown MACs produces a bounded number of events.
type rateLimiter struct {
	mu       sync.Mutex
	interval time.Duration
	max      int
	last     map[string]time.Time
	now      func() time.Time
}

func newRateLimiter(interval time.Duration, limit int) *rateLimiter {
	return &rateLimiter{interval: interval, max: limit, last: map[string]time.Time{}, now: time.Now}
}

func (r *rateLimiter) allow(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if t, ok := r.last[key]; ok && now.Sub(t) < r.interval {
		return false
	}
	if len(r.last) >= r.max {
		for k, t := range r.last {
			if now.Sub(t) >= r.interval {
				delete(r.last, k)
			}
		}
		// Still full of fresh keys: a flood. Refuse rather than grow.
		if len(r.last) >= r.max {
			return false
		}
	}
	r.last[key] = now
	return true
}
