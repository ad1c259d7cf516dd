package provision

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// op is the one thing a reconcile pass does.
type op int

const (
	opWait        op = iota // nothing to do until the deadline / next poll / an outside change
	opObserve               // record that the spec version was seen (no other change)
	opTransition            // a status-only write: phase/step change, run start/abort, failure
	opNote                  // record last_error without changing phase (waiting on the operator)
	opInspect               // BMC Inventory
	opSetBootPXE            // BMC one-time PXE boot override
	opPowerOn               // BMC power on (or restart when already on)
	opSetBootDisk           // BMC next boot from disk
	opPowerOff              // BMC graceful shutdown (force after the BMC's grace period)
	opPollPower             // BMC power-state read for drift
	opStall                 // write, refresh or clear a run's stall note (see stallPlan)
	opRebootToOS            // BMC next boot from disk, then power cycle: into the image just written
	opForget                // remove a machine being deleted from the store without any BMC call
	opReinspect             // BMC Inventory re-read of a settled machine (no phase change)
)

var opNames = map[op]string{
	opWait: "wait", opObserve: "observe", opTransition: "transition", opNote: "note",
	opInspect: "inspect", opSetBootPXE: "set_boot_pxe", opPowerOn: "power_on",
	opSetBootDisk: "set_boot_disk", opPowerOff: "power_off", opPollPower: "poll_power", opStall: "stall",
	opRebootToOS: "reboot_to_os",
	opForget:     "forget", opReinspect: "reinspect",
}

func (o op) String() string { return opNames[o] }

// target is what a machine should be installed with right now: its
// effective profile (the cluster role's, else its own), that profile's
// version and a hash of the params that feed rendering.
type target struct {
	Profile    string
	Version    uint64
	ParamsHash string
	// Snippets are the versions of the site snippets the profile includes;
	// they are part of ParamsHash.
	Snippets map[string]uint64
	// Problem explains why there is no usable target (no profile named, the
	// profile does not exist); a run cannot start until it is fixed.
	Problem string
	// Clean makes the run a clean run with this wipe level (view.Clean).
	Clean string
}

func (t target) same(profile string, version uint64, hash string) bool {
	return t.Problem == "" && t.Profile == profile && t.Version == version && t.ParamsHash == hash
}

func (t target) String() string { return fmt.Sprintf("%s v%d", t.Profile, t.Version) }

// gate is the cluster's verdict on whether this machine may start a run now.
type gate struct {
	Open   bool
	Reason string // why it is closed (shown in the cluster status)
}

// view is everything one decision looks at. It is built from a fresh read
// of the store, so decide is a pure function and table-testable.
type view struct {
	M      *model.Machine
	Target target
	Gate   gate
	// Wipe is the wipe profile (and its version) named by the profile the
	// machine was provisioned with; empty when there is none.
	Wipe        string
	WipeVersion uint64
	// WipeProblem is set when the wipe profile named is missing: the
	// deprovision waits rather than skip a wipe the operator asked for.
	WipeProblem string
	// Clean is the clean run a machine whose disk holds a config drive
	// (Status.CleanPending) needs before it is released: the profile of
	// its last run (whose hints find the disk) and the wipe level, the
	// profile's current one, else the one recorded with the config drive.
	Clean target
	// CleanProblem is set when that profile is gone: the release waits
	// rather than skip the clean.
	CleanProblem string
	Now          time.Time
	Timeouts     StepTimeouts
	// StallWarning is how long an active run may go without a new boot
	// step before last_error says where it stalled (0: never).
	StallWarning time.Duration
	// Boot is what the active run's profile makes the machine fetch here.
	Boot      bootPlan
	PollEvery time.Duration
	// LastPolled is when the power was last read (recorded or not).
	LastPolled time.Time
	// InventoryEvery is how often a settled machine's inventory is read
	// again (plus a per-machine jitter of up to a tenth); 0: never.
	InventoryEvery time.Duration
}

// plan is decide's answer.
type plan struct {
	Op op
	// Phase and Step are where the plan takes the machine: at once for
	// opTransition, once its BMC step succeeds for the BMC ops that end a
	// step (their executors write no other phase).
	Phase  model.Phase
	Step   model.Step
	Reason string // event message / last_error for opNote and failures

	NewRun   *target // opTransition: start a run with this target (aborting any active one)
	Adopt    *target // opTransition to provisioned: record this target as installed, with no run
	AbortRun bool    // opTransition: the active run's token dies
	Deadline time.Time
	Attempt  bool // opTransition: this is a power-cycle retry (Run.Attempts++)
	Fail     bool // opTransition to failed: Reason becomes last_error

	After time.Duration // opWait: look again after this long (0: only on a change)

	// opStall: StallOf is the progress time the note is about, so a boot
	// step arriving meanwhile voids the write; NewStall records the
	// boot_stalled event. An empty Reason clears the note.
	StallOf  time.Time
	NewStall bool
}

// decide makes one reconcile decision for a machine: the state table in
// the package documentation, as a pure function of the view.
func decide(v view) plan {
	m := v.M
	st := m.Status
	deleting := !m.DeletionRequested.IsZero()
	if deleting && st.Phase != model.PhaseDeprovisioning && st.Phase != model.PhaseFailed && neverPoweredOn(m) {
		return plan{Op: opForget, Reason: "deletion requested; the agent never powered the machine on, so it is removed without a power-off"}
	}
	switch st.Phase {
	case "", model.PhaseRegistering:
		return to(model.PhaseInspecting, model.StepNone, "reconciler took over the machine; reading its inventory")
	case model.PhaseInspecting:
		if deleting {
			return release(v, "deletion requested")
		}
		return then(opInspect, model.PhaseAvailable, model.StepNone, "")
	case model.PhaseAvailable:
		switch {
		case deleting:
			return release(v, "deletion requested")
		case m.State == model.StateAvailable && st.CleanPending != "":
			return release(v, "desired state available, and the disk still holds a config drive")
		case m.State == model.StateOff:
			return to(model.PhaseDeprovisioning, model.StepPoweringOff, "desired state off")
		case m.State == model.StateProvisioned && m.Adopt && st.ProvisionedAt.IsZero():
			return adopt(v)
		case m.State == model.StateProvisioned:
			return startRun(v, "desired state provisioned")
		}
		return settled(v)
	case model.PhaseOff:
		switch {
		case deleting:
			return release(v, "deletion requested")
		case m.State == model.StateAvailable:
			return to(model.PhaseAvailable, model.StepNone, "desired state available; power left as is")
		case m.State == model.StateProvisioned:
			return startRun(v, "desired state provisioned")
		}
		return settled(v)
	case model.PhaseProvisioned:
		switch {
		case deleting || m.State == model.StateAvailable:
			why := "desired state available"
			if deleting {
				why = "deletion requested"
			}
			if st.CleanPending != "" {
				return release(v, why)
			}
			if v.WipeProblem != "" {
				return plan{Op: opNote, Reason: "cannot deprovision: " + v.WipeProblem}
			}
			if v.Wipe != "" {
				p := to(model.PhaseDeprovisioning, model.StepSettingBoot, why+"; wiping with profile "+v.Wipe)
				p.NewRun = &target{Profile: v.Wipe, Version: v.WipeVersion}
				return p
			}
			return to(model.PhaseDeprovisioning, model.StepPoweringOff, why)
		case m.State == model.StateOff:
			return to(model.PhaseDeprovisioning, model.StepPoweringOff, "desired state off")
		}
		if !v.Target.same(st.ProvisionedProfile, st.ProvisionedProfileVersion, st.ProvisionedParamsHash) {
			return startRun(v, fmt.Sprintf("re-provision: installed %s v%d (params %s), wanted %s (params %s)",
				st.ProvisionedProfile, st.ProvisionedProfileVersion, short(st.ProvisionedParamsHash), v.Target, short(v.Target.ParamsHash)))
		}
		return settled(v)
	case model.PhaseProvisioning:
		r := m.Run
		if r == nil {
			// Only a damaged record gets here; starting over is safe because
			// no callback can have been accepted without a run.
			return to(model.PhaseAvailable, model.StepNone, "provisioning without a run record; starting over")
		}
		if r.CallbackAt.IsZero() {
			if deleting || m.State != model.StateProvisioned {
				why := "desired state " + string(m.State)
				if deleting {
					why = "deletion requested"
				}
				p := to(model.PhaseDeprovisioning, model.StepPoweringOff, why+"; run "+r.ID+" aborted")
				if m.State != model.StateOff {
					p = release(v, why+"; run "+r.ID+" aborted")
				}
				p.AbortRun = p.Op == opTransition
				return p
			}
			if v.Target.Problem == "" && !v.Target.same(r.Profile, r.ProfileVersion, r.ParamsHash) {
				return startRun(v, fmt.Sprintf("target changed during run %s: %s v%d → %s", r.ID, r.Profile, r.ProfileVersion, v.Target))
			}
		}
		return runStep(v)
	case model.PhaseDeprovisioning:
		if st.Step == model.StepPoweringOff {
			return poweredOff(m)
		}
		if m.Run == nil {
			return to(model.PhaseDeprovisioning, model.StepPoweringOff, "wipe run record missing; powering off")
		}
		return runStep(v)
	case model.PhaseFailed:
		if deleting {
			switch {
			case neverPoweredOn(m):
				return plan{Op: opForget, Reason: "deletion requested; the agent never powered the machine on, so it is removed without a power-off"}
			case m.DeletionRequested.After(st.PhaseSince):
				return release(v, "deletion requested")
			case st.CleanPending != "":
				// The clean failed: the disk still holds the config drive,
				// so the machine is not forgotten (last_error says what
				// to do; force_destroy removes it without the clean).
				return plan{Op: opWait}
			}
			// The power-off asked for by the deletion failed for good (its
			// retries are the bound): the record goes, the machine may
			// still run, and the reason says why.
			return plan{Op: opForget, Reason: "deleted without a power-off, which failed: " + st.LastError + "; the machine may still be powered on"}
		}
		if m.Version > st.ObservedVersion {
			return retry(fmt.Sprintf("spec changed (version %d); retrying from the start", m.Version))
		}
		if r := m.Run; r != nil && v.Target.Problem == "" && m.State == model.StateProvisioned && !v.Target.same(r.Profile, r.ProfileVersion, r.ParamsHash) {
			return retry(fmt.Sprintf("target changed since run %s failed (%s v%d → %s); retrying from the start", r.ID, r.Profile, r.ProfileVersion, v.Target))
		}
		return plan{Op: opWait}
	}
	return fail(fmt.Sprintf("unknown phase %q", st.Phase))
}

// retry leaves the failed phase for a fresh start, from reading the
// inventory: what failed may have been fixed at the hardware (a NIC, the
// power) as well as in the spec.
func retry(why string) plan {
	return to(model.PhaseInspecting, model.StepNone, why)
}

// neverPoweredOn reports whether the agent has no reason to think the
// machine is on because of it: never installed, no power-on in its run,
// and not seen on. Deleting such a machine needs no power-off, which is
// what lets a machine whose BMC never answered be deleted at all.
func neverPoweredOn(m *model.Machine) bool {
	if !m.Status.ProvisionedAt.IsZero() || m.Status.PowerState == model.PowerOn || m.Status.CleanPending != "" {
		return false
	}
	if r := m.Run; r != nil {
		// A powering_on step with a deadline may have sent its power-on
		// just before a crash (see powerOn): that counts as powered on.
		return r.PowerOns == 0 && (m.Status.Step != model.StepPoweringOn || r.StepDeadline.IsZero())
	}
	return true
}

// release is how a machine leaves its installed state (deletion, desired
// available): through a clean run while its disk holds a config drive
// written by the deploy ramdisk, else straight to the power-off. The
// clean cannot be skipped by accident: it waits for its profile rather
// than release the machine without it, and only force_destroy (which
// removes the record without the reconciler) goes around it.
func release(v view, why string) plan {
	if v.M.Status.CleanPending == "" {
		return to(model.PhaseDeprovisioning, model.StepPoweringOff, why)
	}
	if v.CleanProblem != "" {
		return plan{Op: opNote, Reason: "cannot deprovision: " + v.CleanProblem}
	}
	c := v.Clean
	p := to(model.PhaseDeprovisioning, model.StepSettingBoot, fmt.Sprintf("%s; the deploy ramdisk cleans the disk first (wipe %s)", why, c.Clean))
	p.NewRun = &c
	return p
}

// adopt records a machine already running its OS as provisioned with
// its target, without a power action or an install.
func adopt(v view) plan {
	if v.Target.Problem != "" {
		return plan{Op: opNote, Reason: "cannot adopt: " + v.Target.Problem}
	}
	if inv := v.M.Status.Inventory; inv != nil && inv.PowerState == model.PowerOff {
		return fail("cannot adopt: the BMC reports the machine off, and adopt takes over a running machine: power it on and apply again, or unset adopt to install it")
	}
	t := v.Target
	p := to(model.PhaseProvisioned, model.StepNone, fmt.Sprintf("adopted as installed with %s (params %s); no power action, no install", t, short(t.ParamsHash)))
	p.Adopt = &t
	return p
}

// macProblem says why the machine's configured MACs cannot be its
// provisioning NICs, as far as the BMC's inventory tells; "" when they
// can or the inventory lists no MAC.
func macProblem(m *model.Machine) string {
	if m.Status.Inventory == nil {
		return ""
	}
	reported := inventoryMACs(m.Status.Inventory)
	if len(reported) == 0 {
		return ""
	}
	var missing []string
	for _, mac := range m.MACs {
		if !slices.Contains(reported, mac) {
			missing = append(missing, mac)
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return fmt.Sprintf("configured MACs %s are not among the NICs the BMC reports (%s): set macs to the provisioning NICs' MACs, or leave macs unset to use the inventory's",
		strings.Join(missing, ", "), strings.Join(reported, ", "))
}

// runStep advances an active run (provisioning, or a wipe run while
// deprovisioning) by one step.
func runStep(v view) plan {
	m, r, t := v.M, v.M.Run, v.Timeouts
	step := m.Status.Step
	if r.RenderError != "" && r.CallbackAt.IsZero() {
		// What the machine was to be served does not render: no retry or
		// timeout can fix that, an operator's change can.
		return fail(fmt.Sprintf("run %s: rendering failed: %s", r.ID, r.RenderError))
	}
	switch step {
	case model.StepSettingBoot:
		return then(opSetBootPXE, m.Status.Phase, model.StepPoweringOn, "boot override set to PXE")
	case model.StepPoweringOn:
		if bootSignalSeen(r) || !r.CallbackAt.IsZero() {
			p := to(m.Status.Phase, model.StepWaitingPXE, "boot signal already seen; not powering again")
			p.Deadline = v.Now.Add(t.WaitPXE)
			return p
		}
		// The reason depends on how the power-on went (see powerOn).
		return then(opPowerOn, m.Status.Phase, model.StepWaitingPXE, "")
	case model.StepWaitingPXE, model.StepBootingInstaller, model.StepInstalling:
		if far := furthestStep(r); stepRank[far] > stepRank[step] {
			p := to(m.Status.Phase, far, "boot signal "+string(signalFor(r, far)))
			p.Deadline = v.Now.Add(t.waitFor(far))
			return p
		}
		if r.StepDeadline.IsZero() {
			// A crash between entering the step and recording its deadline.
			p := to(m.Status.Phase, step, "deadline restored")
			p.Deadline = v.Now.Add(t.waitFor(step))
			return p
		}
		if v.Now.Before(r.StepDeadline) {
			p, wake := stallPlan(v)
			if p.Op != opWait {
				return p
			}
			p.After = r.StepDeadline.Sub(v.Now)
			if !wake.IsZero() && wake.Before(r.StepDeadline) {
				p.After = wake.Sub(v.Now)
			}
			return p
		}
		if step == model.StepWaitingPXE && !bootSignalSeen(r) && r.Attempts < t.Retries {
			p := to(m.Status.Phase, model.StepSettingBoot, fmt.Sprintf(
				"no PXE request within %s of power-on; power-cycling again (retry %d of %d)", t.WaitPXE, r.Attempts+1, t.Retries))
			p.Attempt = true
			return p
		}
		return fail(timeoutMessage(step, r, t, describeStall(r, v.Boot, v.Now)))
	case model.StepFinishing:
		return then(opSetBootDisk, model.PhaseProvisioned, model.StepNone,
			fmt.Sprintf("installed with %s v%d (run %s)", r.Profile, r.ProfileVersion, r.ID))
	case model.StepImageWritten:
		return then(opRebootToOS, m.Status.Phase, model.StepBootingOS, "booting the deployed image from disk; waiting for its OS to call back")
	case model.StepBootingOS:
		if r.StepDeadline.IsZero() {
			p := to(m.Status.Phase, step, "deadline restored")
			p.Deadline = v.Now.Add(t.Install)
			return p
		}
		if v.Now.Before(r.StepDeadline) {
			return plan{Op: opWait, After: r.StepDeadline.Sub(v.Now)}
		}
		disk := "the disk"
		if r.Deploy != nil && r.Deploy.Disk != "" {
			disk = r.Deploy.Disk
		}
		return fail(fmt.Sprintf("run %s: the image was written to %s, but the deployed OS did not call back within %s of the reboot; "+
			"check the machine's console: the firmware may not boot that disk (boot mode, boot order), or cloud-init did not run the config drive's user-data", r.ID, disk, t.Install))
	case model.StepNone:
		return to(m.Status.Phase, model.StepSettingBoot, "run "+r.ID+" resumed at its first step")
	}
	return fail(fmt.Sprintf("unknown step %q in phase %s", step, m.Status.Phase))
}

// timeoutMessage is the failure of a waiting step past its deadline; once
// the machine showed a boot step, stall (describeStall) says where it
// stopped and what to check.
func timeoutMessage(step model.Step, r *model.Run, t StepTimeouts, stall string) string {
	var msg string
	switch step {
	case model.StepWaitingPXE:
		if !bootSignalSeen(r) {
			return fmt.Sprintf("run %s: no PXE request from the machine within %s after each of %d power-ons; check that network boot is enabled and that DHCP (or ProxyDHCP) points it at this agent",
				r.ID, t.WaitPXE, r.Attempts+1)
		}
		msg = fmt.Sprintf("run %s: the machine asked for its boot script but made no further progress within %s", r.ID, t.WaitPXE)
	case model.StepBootingInstaller:
		msg = fmt.Sprintf("run %s: the machine got its boot script but did not fetch the installer kernel or templates within %s", r.ID, t.BootInstaller)
	default:
		msg = fmt.Sprintf("run %s: the installer did not call back within %s", r.ID, t.Install)
	}
	if stall == "" {
		return msg + "; check the machine's console and that it can reach the boot URL"
	}
	return msg + "; " + stall
}

// startRun begins a new run toward v.Target when it is usable and the
// cluster lets this machine go; otherwise it waits, telling why.
func startRun(v view, why string) plan {
	switch {
	case v.Target.Problem != "":
		return plan{Op: opNote, Reason: "cannot provision: " + v.Target.Problem}
	case len(v.M.MACs) == 0:
		return plan{Op: opNote, Reason: "cannot provision: the machine has no MAC address (none given and the BMC inventory listed no NIC); set macs"}
	case macProblem(v.M) != "":
		return fail("cannot provision: " + macProblem(v.M))
	case !v.Gate.Open:
		return plan{Op: opWait}
	}
	p := to(model.PhaseProvisioning, model.StepSettingBoot, why)
	t := v.Target
	p.NewRun = &t
	return p
}

// settled handles a machine at rest: acknowledge spec versions, poll power,
// re-read the inventory now and then.
func settled(v view) plan {
	m := v.M
	// While the BMC refuses or does not answer, last_error says so until a
	// poll succeeds; a spec write (new credentials, say) is checked at once.
	bmcDown := m.Status.BMCStatus != "" && m.Status.BMCStatus != model.BMCStatusOK
	switch {
	case m.Version > m.Status.ObservedVersion && bmcDown:
		return plan{Op: opPollPower}
	case m.Version > m.Status.ObservedVersion, m.Status.LastError != "" && !bmcDown:
		return plan{Op: opObserve}
	}
	var after time.Duration
	if inv := m.Status.Inventory; v.InventoryEvery > 0 && inv != nil && !bmcDown {
		due := inv.CollectedAt.Add(v.InventoryEvery + inventoryJitter(m.Name, v.InventoryEvery))
		if !v.Now.Before(due) {
			return plan{Op: opReinspect}
		}
		after = due.Sub(v.Now)
	}
	if v.PollEvery <= 0 {
		return plan{Op: opWait, After: after}
	}
	last := v.LastPolled
	if m.Status.PowerCheckedAt.After(last) {
		last = m.Status.PowerCheckedAt
	}
	due := last.Add(v.PollEvery)
	if !v.Now.Before(due) {
		return plan{Op: opPollPower}
	}
	if d := due.Sub(v.Now); after == 0 || d < after {
		after = d
	}
	return plan{Op: opWait, After: after}
}

// inventoryJitter spreads the inventory re-reads of machines registered
// together over a tenth of the period, the same for a machine every time
// so decide stays a pure function.
func inventoryJitter(name string, every time.Duration) time.Duration {
	span := every / 10
	if span <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	return time.Duration(h.Sum64() % uint64(span))
}

// expectedPower is the power state the machine's phase implies ("" = any).
func expectedPower(m *model.Machine) string {
	switch m.Status.Phase {
	case model.PhaseProvisioned:
		return model.PowerOn
	case model.PhaseOff:
		return model.PowerOff
	case model.PhaseAvailable:
		if m.Run != nil {
			return model.PowerOff
		}
	}
	return ""
}

func to(ph model.Phase, s model.Step, why string) plan {
	return plan{Op: opTransition, Phase: ph, Step: s, Reason: why}
}

// then is a BMC op whose success takes the machine to ph/s, why being the
// event's message ("" when the executor can only tell after the call).
func then(o op, ph model.Phase, s model.Step, why string) plan {
	return plan{Op: o, Phase: ph, Step: s, Reason: why}
}

// poweredOff is the power-off of a machine being released: its record
// goes when it is being deleted, else it rests off or available as asked.
func poweredOff(m *model.Machine) plan {
	if m.State == model.StateOff {
		return then(opPowerOff, model.PhaseOff, model.StepNone, "powered off")
	}
	return then(opPowerOff, model.PhaseAvailable, model.StepNone, "powered off; available")
}

func fail(msg string) plan {
	return plan{Op: opTransition, Phase: model.PhaseFailed, Step: model.StepNone, Reason: msg, Fail: true}
}

var stepRank = map[model.Step]int{
	model.StepWaitingPXE:       1,
	model.StepBootingInstaller: 2,
	model.StepInstalling:       3,
}

// furthestStep is the waiting step the run's boot signals have reached.
func furthestStep(r *model.Run) model.Step {
	if r == nil {
		return model.StepWaitingPXE
	}
	if _, ok := r.Signals[model.SignalKernelFetched]; ok {
		return model.StepInstalling
	}
	if _, ok := r.Signals[model.SignalInitrdFetched]; ok {
		return model.StepInstalling
	}
	if _, ok := r.Signals[model.SignalTemplatesFetched]; ok {
		return model.StepInstalling
	}
	if bootSignalSeen(r) {
		return model.StepBootingInstaller
	}
	return model.StepWaitingPXE
}

func signalFor(r *model.Run, s model.Step) model.Signal {
	order := []model.Signal{model.SignalTemplatesFetched, model.SignalInitrdFetched, model.SignalKernelFetched, model.SignalScriptServed, model.SignalPXERequested}
	if s == model.StepBootingInstaller {
		order = order[3:]
	}
	for _, sig := range order {
		if _, ok := r.Signals[sig]; ok {
			return sig
		}
	}
	return ""
}

// bootSignalSeen reports whether the machine showed any sign of booting
// during this run; after that a power cycle could interrupt an install.
func bootSignalSeen(r *model.Run) bool {
	return r != nil && len(r.Signals) > 0
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	if h == "" {
		return "-"
	}
	return h
}

// callbackKind is which end of which run a callback reports.
type callbackKind int

const (
	callbackEnd          callbackKind = iota // an installer's or deployed OS's report: the run ends
	callbackClean                            // a clean run's ramdisk: the run ends, the disk cleaned or not
	callbackImageWritten                     // a deploy ramdisk: the image is on disk, the OS boots next
)

// callbackPlan is decideCallback's answer: the plan (an opTransition whose
// Reason is the phase event's message, and last_error when it fails) and
// which executor carries it out.
type callbackPlan struct {
	plan
	Kind callbackKind
	// Refuse says why the report is out of order; nothing is written.
	Refuse string
}

// decideCallback decides what an authorised callback (tokenProblem and
// sourceProblem passed, so m has a run) does to the machine: a pure
// function of the machine and the report, like decide.
func decideCallback(m *model.Machine, report model.CallbackReport) callbackPlan {
	r := m.Run
	status := strings.ToLower(report.Status)
	failed := status != "" && status != "ok"
	if r.Clean != "" {
		if failed {
			why := printable(report.Message, 512)
			if why == "" {
				why = cleanLogTail(report.LogTail)
			}
			return callbackPlan{Kind: callbackClean, plan: fail(fmt.Sprintf("deprovision: cleaning the disk failed (run %s, wipe %s): %s; "+
				"the disk may still hold the config drive (user-data with its secrets), so the machine is not released: "+
				"fix the cause and ask again (delete again, or set the desired state available after a spec change), "+
				"or delete it with force_destroy to skip the clean", r.ID, r.Clean, orDash(why)))}
		}
		return callbackPlan{Kind: callbackClean, plan: to(model.PhaseDeprovisioning, model.StepPoweringOff, cleanedMessage(r, report)+"; powering off")}
	}
	written := model.StageImageWritten == strings.ToLower(report.Stage)
	switch d := r.Deploy; {
	case d == nil && written:
		return callbackPlan{Refuse: "an image_written report, but no deploy ramdisk reported its disks in this run"}
	case d != nil && !d.WrittenAt.IsZero() && written:
		return callbackPlan{Refuse: "the image of this run is already written"}
	case d != nil && d.WrittenAt.IsZero() && !written:
		return callbackPlan{Refuse: "a report from the deployed OS before the deploy ramdisk reported the image written"}
	case d != nil && d.WrittenAt.IsZero():
		if failed {
			why := printable(report.Message, 512)
			if why == "" {
				why = cleanLogTail(report.LogTail)
			}
			return callbackPlan{Kind: callbackImageWritten, plan: fail(fmt.Sprintf("image deploy failed (run %s, profile %s): %s", r.ID, r.Profile, orDash(why)))}
		}
		return callbackPlan{Kind: callbackImageWritten, plan: to(model.PhaseProvisioning, model.StepImageWritten, imageWrittenMessage(report)+"; booting it from disk")}
	}
	if failed {
		// "failed", or a status nobody defined: an installer that does not
		// say ok did not succeed as far as anyone can tell.
		msg := fmt.Sprintf("installer reported failure (run %s, profile %s)", r.ID, r.Profile)
		if status != "failed" {
			msg = fmt.Sprintf("installer reported status %q (run %s, profile %s)", printable(report.Status, 32), r.ID, r.Profile)
		}
		if tail := cleanLogTail(report.LogTail); tail != "" {
			msg += ": " + tail
		}
		if r.RenderError != "" {
			// The installer failed on a template the agent could not
			// render: that, not the installer's symptom, is what an
			// operator fixes.
			msg = fmt.Sprintf("run %s: rendering failed: %s; then %s", r.ID, r.RenderError, msg)
		}
		return callbackPlan{Kind: callbackEnd, plan: fail(msg)}
	}
	why := callbackWho(r) + " called back; run " + r.ID + " complete"
	if m.Status.Phase == model.PhaseDeprovisioning {
		return callbackPlan{Kind: callbackEnd, plan: to(model.PhaseDeprovisioning, model.StepPoweringOff, why)}
	}
	return callbackPlan{Kind: callbackEnd, plan: to(model.PhaseProvisioning, model.StepFinishing, why)}
}

// callbackWho names what sent a run's last callback: an image deploy's
// comes from the deployed OS, and operators read the event log to tell
// its two stages apart.
func callbackWho(r *model.Run) string {
	if r.Deploy != nil {
		return "deployed OS"
	}
	return "installer"
}

func cleanedMessage(r *model.Run, report model.CallbackReport) string {
	return fmt.Sprintf("deploy ramdisk cleaned %s (wipe %s): config drive removed", orDash(printable(report.Disk, 64)), r.Clean)
}

func imageWrittenMessage(report model.CallbackReport) string {
	msg := "image and config drive written"
	if report.Disk != "" {
		msg += " to " + printable(report.Disk, 64)
	}
	return msg
}
