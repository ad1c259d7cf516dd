package provision

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	transitions *prometheus.CounterVec
	bmcErrors   *prometheus.CounterVec
	callbacks   *prometheus.CounterVec
	bootStalls  *prometheus.CounterVec
	runs        prometheus.Counter
	activeSteps prometheus.Gauge
	queueDepth  prometheus.Gauge
}

// newMetrics builds the collectors; with a nil Registerer they still count
// (cheaply) but nobody scrapes them.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "baremetal", Subsystem: "provision", Name: "transitions_total",
			Help: "Machine phase/step transitions made by the reconciler, by new phase and step.",
		}, []string{"phase", "step"}),
		bmcErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "baremetal", Subsystem: "provision", Name: "bmc_errors_total",
			Help: "Failed BMC calls made by the reconciler, by the step they served (inspecting, setting_boot, powering_on, finishing, powering_off, power_poll, action_<name>).",
		}, []string{"step"}),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "baremetal", Subsystem: "provision", Name: "callbacks_total",
			Help: "Installer callbacks, by result (accepted, failed_install, rejected).",
		}, []string{"result"}),
		bootStalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "baremetal", Subsystem: "provision", Name: "boot_stalls_total",
			Help: "Runs whose boot made no progress for the boot stall warning period, by the last boot step seen (none: powered on, nothing since).",
		}, []string{"last_step"}),
		runs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "baremetal", Subsystem: "provision", Name: "runs_started_total",
			Help: "Provisioning and wipe runs started.",
		}),
		activeSteps: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "baremetal", Subsystem: "provision", Name: "active_steps",
			Help: "Machines in an active power/boot step right now (bounded by the max-active limit).",
		}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "baremetal", Subsystem: "provision", Name: "queue_depth",
			Help: "Objects waiting for a reconcile worker.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.transitions, m.bmcErrors, m.callbacks, m.bootStalls, m.runs, m.activeSteps, m.queueDepth)
	}
	return m
}
