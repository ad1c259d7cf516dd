package provision

import (
	"fmt"
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
)

var opNames = map[op]string{
	opWait: "wait", opObserve: "observe", opTransition: "transition", opNote: "note",
	opInspect: "inspect", opSetBootPXE: "set_boot_pxe", opPowerOn: "power_on",
	opSetBootDisk: "set_boot_disk", opPowerOff: "power_off", opPollPower: "poll_power", opStall: "stall",
	opRebootToOS: "reboot_to_os",
}

func (o op) String() string { return opNames[o] }

// target is what a machine should be installed with right now: its
// effective profile (the cluster role's, else its own), that profile's
// version and a hash of the params that feed rendering.
type target struct {
	Profile    string
	Version    uint64
	ParamsHash string
	// Problem explains why there is no usable target (no profile named, the
	// profile does not exist); a run cannot start until it is fixed.
	Problem string
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
	Now         time.Time
	Timeouts    StepTimeouts
	// StallWarning is how long an active run may go without a new boot
	// step before last_error says where it stalled (0: never).
	StallWarning time.Duration
	// Boot is what the active run's profile makes the machine fetch here.
	Boot      bootPlan
	PollEvery time.Duration
	// LastPolled is when the power was last read (recorded or not).
	LastPolled time.Time
}

// plan is decide's answer.
type plan struct {
	Op     op
	Phase  model.Phase // opTransition: new phase and step
	Step   model.Step
	Reason string // event message / last_error for opNote and failures

	NewRun   *target // opTransition: start a run with this target (aborting any active one)
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
	switch st.Phase {
	case "", model.PhaseRegistering:
		return to(model.PhaseInspecting, model.StepNone, "reconciler took over the machine; reading its inventory")
	case model.PhaseInspecting:
		if deleting {
			return to(model.PhaseDeprovisioning, model.StepPoweringOff, "deletion requested")
		}
		return plan{Op: opInspect}
	case model.PhaseAvailable:
		switch {
		case deleting:
			return to(model.PhaseDeprovisioning, model.StepPoweringOff, "deletion requested")
		case m.State == model.StateOff:
			return to(model.PhaseDeprovisioning, model.StepPoweringOff, "desired state off")
		case m.State == model.StateProvisioned:
			return startRun(v, "desired state provisioned")
		}
		return settled(v)
	case model.PhaseOff:
		switch {
		case deleting:
			return to(model.PhaseDeprovisioning, model.StepPoweringOff, "deletion requested")
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
				p.AbortRun = true
				return p
			}
			if v.Target.Problem == "" && !v.Target.same(r.Profile, r.ProfileVersion, r.ParamsHash) {
				return startRun(v, fmt.Sprintf("target changed during run %s: %s v%d → %s", r.ID, r.Profile, r.ProfileVersion, v.Target))
			}
		}
		return runStep(v)
	case model.PhaseDeprovisioning:
		if st.Step == model.StepPoweringOff {
			return plan{Op: opPowerOff}
		}
		if m.Run == nil {
			return to(model.PhaseDeprovisioning, model.StepPoweringOff, "wipe run record missing; powering off")
		}
		return runStep(v)
	case model.PhaseFailed:
		if deleting && m.DeletionRequested.After(st.PhaseSince) {
			// Deleting a failed machine still powers it off first; a failure
			// of that power-off (after the request) waits for the operator,
			// who can force the deletion.
			return to(model.PhaseDeprovisioning, model.StepPoweringOff, "deletion requested")
		}
		if m.Version > st.ObservedVersion {
			why := fmt.Sprintf("spec changed (version %d); retrying from the start", m.Version)
			if st.Inventory == nil {
				return to(model.PhaseRegistering, model.StepNone, why)
			}
			return to(model.PhaseAvailable, model.StepNone, why)
		}
		return plan{Op: opWait}
	}
	return fail(fmt.Sprintf("unknown phase %q", st.Phase))
}

// runStep advances an active run (provisioning, or a wipe run while
// deprovisioning) by one step.
func runStep(v view) plan {
	m, r, t := v.M, v.M.Run, v.Timeouts
	step := m.Status.Step
	switch step {
	case model.StepSettingBoot:
		return plan{Op: opSetBootPXE}
	case model.StepPoweringOn:
		if bootSignalSeen(r) || !r.CallbackAt.IsZero() {
			p := to(m.Status.Phase, model.StepWaitingPXE, "boot signal already seen; not powering again")
			p.Deadline = v.Now.Add(t.WaitPXE)
			return p
		}
		return plan{Op: opPowerOn}
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
		return plan{Op: opSetBootDisk}
	case model.StepImageWritten:
		return plan{Op: opRebootToOS}
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
	case !v.Gate.Open:
		return plan{Op: opWait}
	}
	p := to(model.PhaseProvisioning, model.StepSettingBoot, why)
	t := v.Target
	p.NewRun = &t
	return p
}

// settled handles a machine at rest: acknowledge spec versions, poll power.
func settled(v view) plan {
	m := v.M
	if m.Version > m.Status.ObservedVersion || m.Status.LastError != "" {
		return plan{Op: opObserve}
	}
	if v.PollEvery <= 0 {
		return plan{Op: opWait}
	}
	last := v.LastPolled
	if m.Status.PowerCheckedAt.After(last) {
		last = m.Status.PowerCheckedAt
	}
	due := last.Add(v.PollEvery)
	if !v.Now.Before(due) {
		return plan{Op: opPollPower}
	}
	return plan{Op: opWait, After: due.Sub(v.Now)}
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
