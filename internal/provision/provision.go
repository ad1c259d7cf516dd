package provision

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/bmc"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// BMC is what the reconciler needs from a baseboard controller client; the
// bmc.Manager implements it. Power waits until the BMC reports the asked
// state; SetBootOverride returns bmc.ErrOverrideReverted when the BMC
// silently reverts the setting.
type BMC interface {
	PowerState(ctx context.Context, c model.BMC) (string, error)
	Power(ctx context.Context, c model.BMC, a bmc.PowerAction) error
	SetBootOverride(ctx context.Context, c model.BMC, t bmc.BootTarget, persistent bool, mode bmc.BootMode) error
	Inventory(ctx context.Context, c model.BMC) (*model.Inventory, error)
}

// StepTimeouts bounds each step. The BMC steps (Inspect, SetBoot, PowerOn,
// Finish, PowerOff) bound one BMC call; the waiting steps (WaitPXE,
// BootInstaller, Install) bound how long the machine may take to show the
// next boot signal.
type StepTimeouts struct {
	Inspect       time.Duration // default 2m
	SetBoot       time.Duration // default 2m
	PowerOn       time.Duration // default 5m
	WaitPXE       time.Duration // default 10m
	BootInstaller time.Duration // default 10m
	Install       time.Duration // default 60m
	Finish        time.Duration // default 2m (boot override to disk)
	PowerOff      time.Duration // default 10m (graceful, then forced by the BMC client)
	// Retries is how often a failed BMC call is retried, and how often a
	// machine that never asked for PXE is power-cycled again (default 3).
	Retries int
}

func (t StepTimeouts) waitFor(s model.Step) time.Duration {
	switch s {
	case model.StepBootingInstaller:
		return t.BootInstaller
	case model.StepInstalling:
		return t.Install
	}
	return t.WaitPXE
}

// Config tunes the reconciler. Zero values take the defaults.
type Config struct {
	// MaxActive bounds machines in an active power/boot step (setting_boot,
	// powering_on, finishing, powering_off) at once, like Metal3's
	// PROVISIONING_LIMIT. Default 20. A BMC step occupies a worker, so at
	// most min(MaxActive, Workers) run at once.
	MaxActive int
	// Workers is the number of reconcile goroutines. Default 8.
	Workers int
	// PowerPollInterval is how often a settled machine's power state is read
	// for drift. Default 60s; negative disables polling.
	PowerPollInterval time.Duration
	// PowerPollRate bounds drift polls across all machines, per second.
	// Default 50: a 60s interval holds for 3,000 machines; beyond that the
	// interval stretches rather than the agent polling faster.
	PowerPollRate float64
	// ResyncInterval is how often every machine and cluster is looked at
	// even without a change. Default 5m.
	ResyncInterval time.Duration
	Timeouts       StepTimeouts
	// BootStallWarning is how long a run in a waiting step may go without
	// a new boot step before the machine's last_error says where its boot
	// stalled (an event records each stall). Default 5m; negative disables.
	BootStallWarning time.Duration
	// InventoryInterval is how often a settled machine's inventory is read
	// again, so hardware changes show as drift (each machine at its own
	// offset within a tenth of it). Default 24h; negative disables.
	InventoryInterval time.Duration
	// RetryBase and RetryMax bound the jittered exponential backoff between
	// BMC retries. Defaults 2s and 1m.
	RetryBase, RetryMax time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Logger receives the reconciler's logs as is (nil: slog.Default()
	// with component=provision).
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

func (c *Config) defaults() {
	if c.MaxActive <= 0 {
		c.MaxActive = 20
	}
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.PowerPollInterval == 0 {
		c.PowerPollInterval = time.Minute
	}
	if c.PowerPollRate <= 0 {
		c.PowerPollRate = 50
	}
	if c.ResyncInterval <= 0 {
		c.ResyncInterval = 5 * time.Minute
	}
	if c.BootStallWarning == 0 {
		c.BootStallWarning = 5 * time.Minute
	}
	if c.InventoryInterval == 0 {
		c.InventoryInterval = 24 * time.Hour
	}
	t := &c.Timeouts
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Inspect, 2*time.Minute)
	def(&t.SetBoot, 2*time.Minute)
	def(&t.PowerOn, 5*time.Minute)
	def(&t.WaitPXE, 10*time.Minute)
	def(&t.BootInstaller, 10*time.Minute)
	def(&t.Install, 60*time.Minute)
	def(&t.Finish, 2*time.Minute)
	def(&t.PowerOff, 10*time.Minute)
	if t.Retries <= 0 {
		t.Retries = 3
	}
	def(&c.RetryBase, 2*time.Second)
	def(&c.RetryMax, time.Minute)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default().With("component", "provision")
	}
}

// Reconciler drives machines and clusters. It implements boot.Lifecycle
// (Signal, Callback) and api.Actions (MachineAction).
type Reconciler struct {
	cfg  Config
	st   store.Store
	bmc  BMC
	log  *slog.Logger
	q    *queue
	sem  chan struct{}
	poll *limiter
	met  *metrics

	mu sync.Mutex
	// machines is the in-memory state of each machine (see machineState),
	// guarded by mu.
	machines map[string]*machineState
	// slotWait lists, oldest first, the machines that found every
	// max-active slot taken; machineState.slotWaiting marks the ones still
	// waiting (a name that got a slot or was forgotten stays in the list
	// until popped). A released slot wakes the oldest waiter, so a backlog
	// of thousands of machines costs nothing while it waits instead of each
	// one re-reading its record every few hundred milliseconds.
	slotWait []string
	// clusterLocks order run starts and completions within a cluster, so
	// two members never both see the same free rollout slot.
	clusterLocks map[string]*sync.Mutex
	// unknownMACs rate-limits unknown_mac events per MAC.
	unknownMACs map[string]time.Time
}

type failure struct {
	key string // phase/step/run the failures belong to
	n   int
}

// machineState is what the reconciler keeps in memory about one machine;
// forget drops it with the machine. In memory on purpose: a restart
// resets it, which costs at most an earlier retry or power poll.
type machineState struct {
	// lock serialises the machine's reconcile with operator power actions.
	lock sync.Mutex
	// write makes the machine's status write and the events describing it
	// one unit for every writer (reconcile, Callback, Signal), so the event
	// log shows its transitions in the order they happened.
	write sync.Mutex
	// failure counts consecutive BMC failures of the current step;
	// notBefore holds its backoff.
	failure   failure
	notBefore time.Time
	// lastPoll is when the power was last read for drift; pollSlot is the
	// drift-poll slot held from the limiter (zero: none).
	lastPoll time.Time
	pollSlot time.Time
	// powerIntent is the run whose power-on this agent issued (see powerOn).
	powerIntent string
	// onNotDone is the run whose last On attempt did not bring the machine
	// on: if it is on at the next try, that On came in late, and a restart
	// now would be a second power cycle.
	onNotDone string
	// cluster is the machine's cluster, so a member's change also wakes
	// the cluster (its gates and status depend on every member).
	cluster string
	// slotWaiting: the machine is in slotWait, still waiting for a slot.
	slotWaiting bool
}

// stateOf returns name's state, creating it on first use; r.mu must be
// held.
func (r *Reconciler) stateOf(name string) *machineState {
	s, ok := r.machines[name]
	if !ok {
		s = &machineState{}
		r.machines[name] = s
	}
	return s
}

// New builds a Reconciler; nothing runs until Run.
func New(cfg Config, st store.Store, b BMC) *Reconciler {
	cfg.defaults()
	return &Reconciler{
		cfg:          cfg,
		st:           st,
		bmc:          b,
		log:          cfg.Logger,
		q:            newQueue(),
		sem:          make(chan struct{}, cfg.MaxActive),
		poll:         newLimiter(cfg.PowerPollRate),
		met:          newMetrics(cfg.Registerer),
		machines:     map[string]*machineState{},
		clusterLocks: map[string]*sync.Mutex{},
		unknownMACs:  map[string]time.Time{},
	}
}

// clusterKeyPrefix marks cluster work in the queue; object names cannot
// contain ':' (model.ValidName), so keys never collide.
const clusterKeyPrefix = "cluster:"

// Run reconciles until ctx ends: it follows store changes, resyncs
// periodically, and requeues machines on deadlines and backoff. In-flight
// BMC calls see ctx cancelled; everything already done is in the store, so
// a new Reconciler on the same store resumes. Run returns once every worker
// has stopped, and may be called once.
func (r *Reconciler) Run(ctx context.Context) error {
	changes, cancel := r.st.Subscribe()
	defer cancel()

	var wg sync.WaitGroup
	for range r.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.work(ctx)
		}()
	}
	defer func() {
		r.q.close()
		wg.Wait()
	}()

	r.resync(ctx)
	tick := time.NewTicker(r.cfg.ResyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			r.resync(ctx)
		case ch, ok := <-changes:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("store closed the change feed")
			}
			r.onChange(ctx, ch)
		}
	}
}

func (r *Reconciler) onChange(ctx context.Context, ch store.Change) {
	switch ch.Kind {
	case store.KindMachine:
		if ch.Deleted {
			r.forget(ch.Name)
			return
		}
		r.q.add(ch.Name)
		var c string
		r.mu.Lock()
		if s := r.machines[ch.Name]; s != nil {
			c = s.cluster
		}
		r.mu.Unlock()
		if c != "" {
			r.q.add(clusterKeyPrefix + c)
		}
	case store.KindCluster:
		r.q.add(clusterKeyPrefix + ch.Name)
	case store.KindProfile, store.KindTemplate, store.KindSite:
		// Any machine may use the profile, directly, as a cluster role or as
		// a wipe profile: look at them all (cheap, and changes are rare).
		r.resync(ctx)
	case store.KindEvent:
	default:
		// Kind "": the feed overflowed and changes were lost.
		r.resync(ctx)
	}
}

func (r *Reconciler) resync(ctx context.Context) {
	ms, err := r.st.ListMachines(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("resync: listing machines failed", "err", err)
		}
		return
	}
	for _, m := range ms {
		r.q.add(m.Name)
	}
	cs, err := r.st.ListClusters(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("resync: listing clusters failed", "err", err)
		}
		return
	}
	for _, c := range cs {
		r.q.add(clusterKeyPrefix + c.Name)
	}
}

func (r *Reconciler) forget(name string) {
	r.q.forget(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.machines, name)
}

func (r *Reconciler) work(ctx context.Context) {
	for {
		key, ok := r.q.get()
		if !ok {
			return
		}
		r.met.queueDepth.Set(float64(r.q.len()))
		if ctx.Err() == nil {
			if len(key) > len(clusterKeyPrefix) && key[:len(clusterKeyPrefix)] == clusterKeyPrefix {
				r.reconcileCluster(ctx, key[len(clusterKeyPrefix):])
			} else {
				r.reconcileMachine(ctx, key)
			}
		}
		r.q.done(key)
	}
}

func (r *Reconciler) machineLock(name string) *sync.Mutex {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &r.stateOf(name).lock
}

func (r *Reconciler) writeLock(name string) *sync.Mutex {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &r.stateOf(name).write
}

// clusterLock returns the cluster's mutex, creating it on first use.
func (r *Reconciler) clusterLock(name string) *sync.Mutex {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.clusterLocks[name]
	if !ok {
		l = &sync.Mutex{}
		r.clusterLocks[name] = l
	}
	return l
}

// limiter spaces calls evenly at rate per second. Every caller gets a slot
// of its own, so a thousand callers due at once are each woken once, at
// their own slot, instead of all waking at the next free slot and all but
// one going back to sleep (which made a large fleet's drift polls cost
// thousands of useless reconciles a second).
type limiter struct {
	mu    sync.Mutex
	every time.Duration
	next  time.Time
}

func newLimiter(rate float64) *limiter {
	return &limiter{every: time.Duration(float64(time.Second) / rate)}
}

// reserve takes the next free slot and returns it; the caller may go at
// that time (now or later), and the slot is its own.
func (l *limiter) reserve(now time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	slot := l.next
	if slot.Before(now) {
		slot = now
	}
	l.next = slot.Add(l.every)
	return slot
}
