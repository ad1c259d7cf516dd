package provision

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/bmc"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// Machine actions, as the API names them; the reconciler takes them as
// strings from apiserver's Actions interface.
const (
	ActionPowerOn     = string(api.ActionPowerOn)
	ActionPowerOff    = string(api.ActionPowerOff)
	ActionReset       = string(api.ActionReset)
	ActionProvision   = string(api.ActionProvision)
	ActionDeprovision = string(api.ActionDeprovision)
	ActionInspect     = string(api.ActionInspect)
)

const (
	// unknownMACEvery bounds unknown_mac events to one per MAC per period,
	// and unknownMACMax the MACs remembered, so a flood of made-up MACs
	// cannot flood the event log.
	unknownMACEvery = 10 * time.Minute
	unknownMACMax   = 1024
	// maxLogTail bounds the installer log kept in last_error.
	maxLogTail   = 1024
	maxAddresses = 16
)

// bootSignals are the observations that move a run forward; only these are
// kept on the run (others are just events).
var bootSignals = map[model.Signal]bool{
	model.SignalPXERequested: true, model.SignalScriptServed: true,
	model.SignalKernelFetched: true, model.SignalInitrdFetched: true,
	model.SignalTemplatesFetched: true,
	model.SignalDeployDisks:      true, model.SignalDeployProgress: true,
}

// stepName tells boot steps of one signal apart (model.BootStep.Name): a
// ProxyDHCP answer from the script request, each initrd and template.
func stepName(sig model.Signal, data map[string]string) string {
	switch sig {
	case model.SignalPXERequested:
		return data["via"]
	case model.SignalKernelFetched, model.SignalInitrdFetched:
		return data["path"]
	case model.SignalTemplatesFetched:
		return data["template"]
	case model.SignalDeployProgress:
		return data["gib"]
	}
	return ""
}

// Signal records a boot-chain observation (boot.Lifecycle). A boot signal
// of the machine's active run is kept on the run as a boot step, where
// the next reconcile pass reads it; every signal is an event. It does one
// small store write.
func (r *Reconciler) Signal(ctx context.Context, machine string, sig model.Signal, data map[string]string) {
	data = cleanData(data)
	if machine == "" {
		r.unknownSignal(ctx, sig, data)
		return
	}
	wl := r.writeLock(machine)
	wl.Lock()
	defer wl.Unlock()
	if bootSignals[sig] {
		now := r.cfg.Now()
		step := model.BootStep{Signal: sig, Name: stepName(sig, data), At: now}
		_, err := r.writeStatus(ctx, machine, statusWrite{lock: lockHeld, guard: func(m *model.Machine) error {
			if run := m.Run; run == nil || run.TokenUsed || (data["run"] != "" && data["run"] != run.ID) {
				return errStale
			}
			return nil
		}, apply: func(m *model.Machine) (bool, []model.Event, error) {
			run := m.Run
			// The first script fetch binds the run to its address (see
			// callbackSource); it is recorded before the step check, as a
			// later fetch by another address must not rebind it.
			bound := false
			if sig == model.SignalScriptServed && run.ScriptFrom == "" && data["remote"] != "" {
				run.ScriptFrom = data["remote"]
				bound = true
			}
			if !run.AddStep(step) && !bound {
				return false, nil, errStale
			}
			if _, seen := run.Signals[sig]; !seen {
				if run.Signals == nil {
					run.Signals = map[model.Signal]time.Time{}
				}
				run.Signals[sig] = now
			}
			return false, nil, nil
		}})
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if err != nil && !errors.Is(err, errStale) && ctx.Err() == nil {
			r.log.Error("recording boot signal failed", "machine", machine, "signal", sig, "err", err)
		}
	}
	if sig == model.SignalRenderFailed {
		r.noteRenderError(ctx, machine, data)
	}
	r.appendEvent(ctx, model.Event{Machine: machine, Type: string(sig), Data: data})
	r.q.add(machine)
}

// noteRenderError records a render failure on the machine's active run,
// which decide then fails with it.
func (r *Reconciler) noteRenderError(ctx context.Context, machine string, data map[string]string) {
	// Called under Signal's write lock.
	_, err := r.writeStatus(ctx, machine, statusWrite{lock: lockHeld, guard: func(m *model.Machine) error {
		if run := m.Run; run == nil || run.TokenUsed || run.RenderError != "" || (data["run"] != "" && data["run"] != run.ID) {
			return errStale
		}
		return nil
	}, apply: func(m *model.Machine) (bool, []model.Event, error) {
		m.Run.RenderError = orDash(data["error"])
		return false, nil, nil
	}})
	if err != nil && !errors.Is(err, errStale) && !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
		r.log.Error("recording a render failure failed", "machine", machine, "err", err)
	}
}

func (r *Reconciler) unknownSignal(ctx context.Context, sig model.Signal, data map[string]string) {
	key := string(sig) + " " + data["mac"]
	now := time.Now()
	r.mu.Lock()
	last, seen := r.unknownMACs[key]
	record := !seen || now.Sub(last) >= unknownMACEvery
	if record {
		if len(r.unknownMACs) >= unknownMACMax {
			for k, t := range r.unknownMACs {
				if now.Sub(t) >= unknownMACEvery {
					delete(r.unknownMACs, k)
				}
			}
		}
		if len(r.unknownMACs) < unknownMACMax {
			r.unknownMACs[key] = now
		} else {
			record = false
		}
	}
	r.mu.Unlock()
	if record {
		r.appendEvent(ctx, model.Event{Type: string(sig), Data: data,
			Message: "boot request from a MAC no machine lists (recorded once per " + unknownMACEvery.String() + ")"})
	}
}

// cleanData copies signal data, dropping anything that looks like a
// credential so it can never reach the event log.
func cleanData(in map[string]string) map[string]string {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		lk := strings.ToLower(k)
		if strings.Contains(lk, "token") || strings.Contains(lk, "password") || strings.Contains(lk, "secret") {
			continue
		}
		n := 256
		if k == "error" {
			// A render error names template, line, column and param; cut
			// short it says none of them.
			n = 1024
		}
		out[k] = printable(v, n)
	}
	return out
}

// Callback consumes the active run's one-time token (boot.Lifecycle). The
// token check and its consumption happen in one store transaction, so two
// concurrent callbacks cannot both succeed. A callback completes the run
// at whatever step it is in: boot signals may have been lost, the callback
// is what counts.
func (r *Reconciler) Callback(ctx context.Context, machine, token string, report model.CallbackReport) error {
	now := r.cfg.Now()
	var before *model.Machine
	var reject string
	wl := r.writeLock(machine)
	wl.Lock()
	defer wl.Unlock()
	// The callback's events are written with the status they explain.
	events := func(m *model.Machine, why string) []model.Event {
		data := map[string]string{"run": m.Run.ID, "status": orDash(printable(report.Status, 32)), "addresses": strings.Join(m.Status.Addresses, ",")}
		if report.Hostname != "" {
			data["hostname"] = printable(report.Hostname, 253)
		}
		if m.Run.Deploy != nil && report.Stage != "" {
			data["stage"] = printable(report.Stage, 32)
		}
		return []model.Event{
			{Type: string(model.SignalCallbackReceived), Phase: m.Status.Phase, Step: m.Status.Step, Message: callbackWho(m.Run) + " called back", Data: data},
			{Type: model.EventPhaseChanged, Phase: m.Status.Phase, Step: m.Status.Step, Message: why, Data: phaseEvent(before, "", "", "").Data},
		}
	}
	out, err := r.writeStatus(ctx, machine, statusWrite{lock: lockHeld, guard: func(m *model.Machine) error {
		if reject = tokenProblem(m, token); reject != "" {
			return errRejected
		}
		if reject = r.sourceProblem(ctx, m, report.From); reject != "" {
			return errRejected
		}
		return nil
	}, apply: func(m *model.Machine) (bool, []model.Event, error) {
		b := *m
		run := *m.Run
		b.Run = &run
		before = &b
		p := decideCallback(m, report)
		switch {
		case p.Refuse != "":
			reject = p.Refuse
			return false, nil, errRejected
		case p.Kind == callbackClean:
			return false, cleanCallback(m, report, p.plan, now), nil
		case p.Kind == callbackImageWritten:
			return false, imageWritten(m, report, p.plan, now), nil
		}
		m.Run.TokenUsed = true
		m.Run.CallbackAt = now
		m.Run.AddStep(model.BootStep{Signal: model.SignalCallbackReceived, At: now})
		m.Status.Addresses = cleanAddresses(report.Addresses)
		setPhase(m, p.Phase, p.Step, now)
		m.Status.LastError = ""
		if p.Fail {
			m.Status.LastError = p.Reason
		}
		return false, events(m, p.Reason), nil
	}})
	switch {
	case errors.Is(err, store.ErrNotFound):
		r.met.callbacks.WithLabelValues("rejected").Inc()
		return fmt.Errorf("%w: no machine %q", model.ErrTokenRejected, machine)
	case errors.Is(err, errRejected):
		r.met.callbacks.WithLabelValues("rejected").Inc()
		r.appendEvent(ctx, model.Event{Machine: machine, Type: string(model.SignalCallbackRejected), Message: "callback refused: " + reject})
		r.log.Warn("installer callback refused", "machine", machine, "reason", reject)
		return fmt.Errorf("%w: %s", model.ErrTokenRejected, reject)
	case err != nil:
		return fmt.Errorf("recording the callback of machine %s: %w", machine, err)
	}
	result := "accepted"
	if out.Status.Phase == model.PhaseFailed {
		result = "failed_install"
	}
	r.met.callbacks.WithLabelValues(result).Inc()
	r.q.add(machine)
	return nil
}

var errRejected = errors.New("callback rejected")

// tokenProblem says why token does not authorise a callback now ("" = it
// does). The comparison is constant-time over fixed-length digests, so
// neither the content nor the length of the real token leaks.
func tokenProblem(m *model.Machine, token string) string {
	switch {
	case token == "":
		return "no token presented"
	case m.Run == nil || m.Run.Token == "":
		return "the machine has no provisioning run"
	}
	a, b := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(m.Run.Token))
	switch {
	case subtle.ConstantTimeCompare(a[:], b[:]) != 1:
		return "token does not belong to the machine's current run"
	case m.Run.TokenUsed:
		return "token already used or its run was aborted (replay)"
	case m.Status.Phase != model.PhaseProvisioning && m.Status.Phase != model.PhaseDeprovisioning:
		return "the machine is not provisioning"
	}
	return ""
}

// sourceProblem says why a callback from address from is not accepted for
// m's run ("" = it is): a run's callback must come from the address its
// boot script was served to, unless its profile opts out. The token alone
// is not enough, as anyone who asks for the machine's MAC during the run
// can read it from the script.
func (r *Reconciler) sourceProblem(ctx context.Context, m *model.Machine, from string) string {
	if from == "" {
		return ""
	}
	if p, err := r.st.GetProfile(ctx, m.Run.Profile); err == nil && p.CallbackAnySource {
		return ""
	}
	switch m.Run.ScriptFrom {
	case "":
		return "no boot script was served for this run"
	case from:
		return ""
	}
	return "callback from " + from + ", but the run's boot script went to " + m.Run.ScriptFrom
}

// cleanAddresses keeps the reported addresses that are IP addresses, in
// canonical form (the boot edge refuses a report with any other).
func cleanAddresses(in []string) []string {
	var out []string
	for _, a := range in {
		ip, err := model.ReportedAddress(a)
		if err != nil {
			continue
		}
		out = append(out, ip)
		if len(out) == maxAddresses {
			break
		}
	}
	return out
}

// printable keeps the printable part of s, at most n bytes of it.
func printable(s string, n int) string {
	s = strings.Map(func(c rune) rune {
		if !unicode.IsPrint(c) {
			return -1
		}
		return c
	}, s)
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}

// cleanLogTail keeps the end of an installer log (the part that says what
// went wrong), printable and bounded.
func cleanLogTail(s string) string {
	s = strings.Map(func(c rune) rune {
		switch {
		case c == '\n' || c == '\t':
			return ' '
		case !unicode.IsPrint(c):
			return -1
		}
		return c
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxLogTail {
		s = "…" + strings.ToValidUTF8(s[len(s)-maxLogTail:], "")
	}
	return s
}

// MachineAction carries out an operator action (api.Actions). Power
// actions are direct BMC calls, serialised with the machine's reconcile
// and refused while a run or power-off is in progress. provision starts a
// fresh run now (bypassing the cluster gate: the operator asked);
// deprovision sets the desired state to available; inspect reads the
// inventory again now.
func (r *Reconciler) MachineAction(ctx context.Context, name, action string) error {
	switch action {
	case ActionInspect:
		return r.inspectNow(ctx, name)
	case ActionPowerOn, ActionPowerOff, ActionReset:
		return r.powerAction(ctx, name, action)
	case ActionProvision:
		return r.provisionNow(ctx, name)
	case ActionDeprovision:
		m, err := r.writeStatus(ctx, name, statusWrite{lock: lockNone, apply: func(m *model.Machine) (bool, []model.Event, error) {
			if m.State == model.StateAvailable {
				return false, nil, nil
			}
			m.State = model.StateAvailable
			return true, nil, nil
		}})
		if err != nil {
			return fmt.Errorf("machine %s: %w", name, err)
		}
		r.appendEvent(ctx, model.Event{Machine: name, Type: model.EventSpecChanged, Phase: m.Status.Phase, Step: m.Status.Step,
			Message: "deprovision action: desired state available"})
		r.q.add(name)
		return nil
	}
	return fmt.Errorf("unknown machine action %q (want %s, %s, %s, %s, %s or %s)", action,
		ActionPowerOn, ActionPowerOff, ActionReset, ActionProvision, ActionDeprovision, ActionInspect)
}

// inspectNow reads the machine's inventory at the operator's request,
// serialised with its reconcile like a power action.
func (r *Reconciler) inspectNow(ctx context.Context, name string) error {
	l := r.machineLock(name)
	l.Lock()
	defer l.Unlock()
	m, err := r.st.GetMachine(ctx, name)
	if err != nil {
		return fmt.Errorf("machine %s: %w", name, err)
	}
	if !m.DeletionRequested.IsZero() {
		return fmt.Errorf("machine %s is being deleted: %w", name, store.ErrConflict)
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeouts.Inspect)
	inv, err := r.readInventory(cctx, m.BMC)
	cancel()
	if err != nil {
		r.met.bmcErrors.WithLabelValues("action_" + ActionInspect).Inc()
		return errors.New(describeBMCError(m.BMC.Endpoint, err, r.cfg.Timeouts.Inspect) + " during operator action " + ActionInspect)
	}
	if err := r.recordInventory(ctx, m, inv); err != nil {
		return fmt.Errorf("machine %s: inventory read, recording it failed (try again): %w", name, err)
	}
	return nil
}

func (r *Reconciler) powerAction(ctx context.Context, name, action string) error {
	l := r.machineLock(name)
	l.Lock()
	defer l.Unlock()
	m, err := r.st.GetMachine(ctx, name)
	if err != nil {
		return fmt.Errorf("machine %s: %w", name, err)
	}
	switch {
	case !m.DeletionRequested.IsZero():
		return fmt.Errorf("machine %s is being deleted: %w", name, store.ErrConflict)
	case m.Status.Phase == model.PhaseProvisioning || m.Status.Phase == model.PhaseDeprovisioning:
		return fmt.Errorf("machine %s is %s: a power action now would break it; wait, or deprovision it first: %w",
			name, phaseString(m), store.ErrConflict)
	}
	pa, want, timeout := bmc.PowerOn, model.PowerOn, r.cfg.Timeouts.PowerOn
	switch action {
	case ActionPowerOff:
		pa, want, timeout = bmc.PowerGracefulShutdown, model.PowerOff, r.cfg.Timeouts.PowerOff
	case ActionReset:
		pa = bmc.PowerForceRestart
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	issued := r.cfg.Now()
	err = r.bmc.Power(cctx, m.BMC, pa)
	cancel()
	if err != nil {
		msg := describeBMCError(m.BMC.Endpoint, err, timeout) + " during operator action " + action
		r.met.bmcErrors.WithLabelValues("action_" + action).Inc()
		o := bmc.OutcomeOf(err)
		e := powerEvent(m, pa, o, "operator action "+action+": power "+string(pa)+": "+string(o)+": "+msg, issued)
		e.Data["operator"] = "true"
		delete(e.Data, "run") // not part of any run
		r.appendEvent(ctx, e)
		return errors.New(msg)
	}
	now := r.cfg.Now()
	out, err := r.writeStatus(ctx, name, statusWrite{lock: lockNone, apply: func(x *model.Machine) (bool, []model.Event, error) {
		x.Status.PowerState = want
		x.Status.PowerCheckedAt = now
		exp := expectedPower(x)
		x.Status.PowerDrift = exp != "" && exp != want
		return false, nil, nil
	}})
	if err != nil {
		return fmt.Errorf("machine %s: power %s done, recording it failed: %w", name, pa, err)
	}
	e := powerEvent(out, pa, bmc.PowerConfirmed, "operator action "+action+": power "+string(pa), issued)
	e.Data["operator"] = "true"
	delete(e.Data, "run")
	r.appendEvent(ctx, e)
	if out.Status.PowerDrift != m.Status.PowerDrift {
		r.appendEvent(ctx, model.Event{Machine: name, Type: model.EventPowerDrift, Phase: out.Status.Phase,
			Message: fmt.Sprintf("power is %s after operator action %s, phase %s expects %s", want, action, out.Status.Phase, orDash(expectedPower(out))),
			Data:    map[string]string{"observed": want, "expected": expectedPower(out), "drift": fmt.Sprint(out.Status.PowerDrift)}})
	}
	return nil
}

// provisionAction is the operator's provision action's plan: a new run,
// from whatever phase the machine is in.
func provisionAction() plan {
	return to(model.PhaseProvisioning, model.StepSettingBoot, "provision action: new run")
}

func (r *Reconciler) provisionNow(ctx context.Context, name string) error {
	l := r.machineLock(name)
	l.Lock()
	defer l.Unlock()
	m, err := r.st.GetMachine(ctx, name)
	if err != nil {
		return fmt.Errorf("machine %s: %w", name, err)
	}
	if !m.DeletionRequested.IsZero() {
		return fmt.Errorf("machine %s is being deleted: %w", name, store.ErrConflict)
	}
	c, err := r.clusterOfMachine(ctx, m)
	if err != nil {
		return err
	}
	t, err := r.targetFor(ctx, m, c, profileCache{})
	if err != nil {
		return err
	}
	if t.Problem != "" {
		return fmt.Errorf("machine %s cannot be provisioned: %s: %w", name, t.Problem, store.ErrConflict)
	}
	if len(m.MACs) == 0 {
		return fmt.Errorf("machine %s cannot be provisioned: it has no MAC address yet (set macs, or wait for its inventory): %w", name, store.ErrConflict)
	}
	now := r.cfg.Now()
	run, err := newRun(t, now)
	if err != nil {
		return err
	}
	p := provisionAction()
	_, err = r.writeStatus(ctx, name, statusWrite{lock: lockNone, apply: func(x *model.Machine) (bool, []model.Event, error) {
		spec := x.State != model.StateProvisioned
		x.State = model.StateProvisioned
		if x.Run != nil {
			x.Run.TokenUsed = true
		}
		x.Run = run
		setPhase(x, p.Phase, p.Step, now)
		x.Status.LastError = ""
		if !spec {
			// The operator's retry acknowledges whatever spec is stored now.
			x.Status.ObservedVersion = x.Version
		} else {
			x.Status.ObservedVersion = x.Version + 1
		}
		return spec, []model.Event{
			{Type: model.EventPhaseChanged, Phase: p.Phase, Step: p.Step, Message: p.Reason, Data: phaseEvent(m, "", "", "").Data},
			{Type: model.EventRunStarted, Phase: p.Phase, Step: p.Step,
				Message: fmt.Sprintf("run %s with profile %s v%d", run.ID, run.Profile, run.ProfileVersion),
				Data:    map[string]string{"run": run.ID, "profile": run.Profile, "profile_version": fmt.Sprint(run.ProfileVersion), "operator": "true"}},
		}, nil
	}})
	if err != nil {
		return fmt.Errorf("machine %s: %w", name, err)
	}
	r.met.runs.Inc()
	r.q.add(name)
	return nil
}
