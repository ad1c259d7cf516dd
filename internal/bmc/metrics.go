package bmc

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	ops      *prometheus.CounterVec
	opTime   *prometheus.HistogramVec
	inFlight prometheus.Gauge
	requests *prometheus.CounterVec
	reqTime  prometheus.Histogram
	retries  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	mt := &metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baremetal_bmc_operations_total",
			Help: "BMC operations by operation and result (ok or error).",
		}, []string{"op", "result"}),
		opTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "baremetal_bmc_operation_duration_seconds",
			Help:    "Duration of BMC operations, including retries and power-state waits.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"op"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "baremetal_bmc_operations_in_flight",
			Help: "BMC operations currently holding a concurrency slot.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baremetal_bmc_http_requests_total",
			Help: "HTTP requests sent to BMCs, by method and status code (or \"error\").",
		}, []string{"method", "code"}),
		reqTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "baremetal_bmc_http_request_duration_seconds",
			Help:    "Latency of single HTTP requests to BMCs.",
			Buckets: prometheus.DefBuckets,
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baremetal_bmc_http_retries_total",
			Help: "HTTP requests to BMCs retried after a transient failure.",
		}),
	}
	if reg != nil {
		mt.ops = register(reg, mt.ops)
		mt.opTime = register(reg, mt.opTime)
		mt.inFlight = register(reg, mt.inFlight)
		mt.requests = register(reg, mt.requests)
		mt.reqTime = register(reg, mt.reqTime)
		mt.retries = register(reg, mt.retries)
	}
	return mt
}

// register lets two Managers share one registry (tests, or a restart in
// process) by reusing the collector already there.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

func (mt *metrics) observeRequest(method string, resp *http.Response, err error, d time.Duration) {
	code := "error"
	if err == nil && resp != nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	mt.requests.WithLabelValues(method, code).Inc()
	mt.reqTime.Observe(d.Seconds())
}

func (mt *metrics) observeOp(op string, err error, d time.Duration) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	mt.ops.WithLabelValues(op, result).Inc()
	mt.opTime.WithLabelValues(op).Observe(d.Seconds())
}
