package provision

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// decideNow is the clock of the decide table rows.
var decideNow = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

type decideWant struct {
	op     op
	phase  model.Phase
	step   model.Step
	newRun bool
	abort  bool
	fail   bool
	reason string // substring
	clean  string // the new run's wipe level: a clean run
}

// decideCase is a row of the decide table; TestTransitionsDeclared runs
// the same rows against the state table.
type decideCase struct {
	name string
	m    model.Machine
	v    func(v *view)
	want decideWant
}

func decideCases() []decideCase {
	now := decideNow
	inv := &model.Inventory{}
	run := func(step model.Step, mod func(r *model.Run)) *model.Run { //nolint:unparam // step names the case's step for the reader; a Run does not carry it
		r := &model.Run{ID: "r1", Token: "t", Profile: "os", ProfileVersion: 2, ParamsHash: "h2", StepDeadline: now.Add(time.Minute)}
		if mod != nil {
			mod(r)
		}
		return r
	}
	sig := func(s ...model.Signal) func(r *model.Run) {
		return func(r *model.Run) {
			r.Signals = map[model.Signal]time.Time{}
			for _, x := range s {
				r.Signals[x] = now
			}
		}
	}
	return []decideCase{
		{name: "new machine is inspected first",
			m:    model.Machine{State: model.StateProvisioned},
			want: decideWant{op: opTransition, phase: model.PhaseInspecting}},
		{name: "inspecting reads the inventory",
			m:    model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseInspecting}},
			want: decideWant{op: opInspect, phase: model.PhaseAvailable}},
		{name: "deleting while inspecting a machine found on powers off",
			m:    model.Machine{DeletionRequested: now, Status: model.Status{Phase: model.PhaseInspecting, PowerState: model.PowerOn}},
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepPoweringOff}},
		{name: "deleting a machine never powered on forgets it without a BMC call",
			m:    model.Machine{DeletionRequested: now, Status: model.Status{Phase: model.PhaseInspecting}},
			want: decideWant{op: opForget, reason: "never powered the machine on"}},
		{name: "deleting during a run's power-on step that may have powered on powers off",
			m: model.Machine{DeletionRequested: now, State: model.StateProvisioned,
				Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepPoweringOn}, Run: run(model.StepPoweringOn, nil)},
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepPoweringOff, abort: true}},
		{name: "deleting during a run that never powered on forgets it",
			m: model.Machine{DeletionRequested: now, State: model.StateProvisioned,
				Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepSettingBoot}, Run: run(model.StepSettingBoot, nil)},
			want: decideWant{op: opForget}},
		{name: "adopt records the target as installed without a run",
			m:    model.Machine{State: model.StateProvisioned, Adopt: true, Status: model.Status{Phase: model.PhaseAvailable, Inventory: inv}},
			want: decideWant{op: opTransition, phase: model.PhaseProvisioned, reason: "adopted"}},
		{name: "adopt without a usable target waits, saying why",
			m:    model.Machine{State: model.StateProvisioned, Adopt: true, Status: model.Status{Phase: model.PhaseAvailable, Inventory: inv}},
			v:    func(v *view) { v.Target = target{Problem: "boot profile \"x\" does not exist"} },
			want: decideWant{op: opNote, reason: "cannot adopt"}},
		{name: "adopt refuses a machine its BMC reports off",
			m:    model.Machine{State: model.StateProvisioned, Adopt: true, Status: model.Status{Phase: model.PhaseAvailable, Inventory: &model.Inventory{PowerState: model.PowerOff}}},
			want: decideWant{op: opTransition, phase: model.PhaseFailed, fail: true, reason: "power it on and apply again"}},
		{name: "adopt counts only until the first install",
			m: model.Machine{State: model.StateProvisioned, Adopt: true, MACs: []string{"52:54:00:00:00:01"},
				Status: model.Status{Phase: model.PhaseAvailable, Inventory: inv, ProvisionedAt: now.Add(-time.Hour)}},
			want: decideWant{op: opTransition, phase: model.PhaseProvisioning, step: model.StepSettingBoot, newRun: true}},
		{name: "configured MACs the BMC does not report fail the run start, naming the reported ones",
			m: model.Machine{State: model.StateProvisioned, MACs: []string{"52:54:00:00:00:09"},
				Status: model.Status{Phase: model.PhaseAvailable, Inventory: &model.Inventory{NICs: []model.NIC{{MAC: "52:54:00:00:00:01"}}}}},
			want: decideWant{op: opTransition, phase: model.PhaseFailed, fail: true, reason: "52:54:00:00:00:09 are not among the NICs the BMC reports (52:54:00:00:00:01)"}},
		{name: "settled with a refusing BMC keeps last_error",
			m: model.Machine{Version: 2, State: model.StateAvailable,
				Status: model.Status{Phase: model.PhaseAvailable, ObservedVersion: 2, LastError: "login refused", BMCStatus: model.BMCStatusAuthFailed, PowerCheckedAt: now}},
			v:    func(v *view) { v.PollEvery = time.Minute },
			want: decideWant{op: opWait}},
		{name: "a spec write to a machine whose BMC refuses checks the BMC at once",
			m: model.Machine{Version: 3, State: model.StateAvailable,
				Status: model.Status{Phase: model.PhaseAvailable, ObservedVersion: 2, LastError: "login refused", BMCStatus: model.BMCStatusAuthFailed, PowerCheckedAt: now}},
			v:    func(v *view) { v.PollEvery = time.Minute },
			want: decideWant{op: opPollPower}},
		{name: "an inventory older than its period is read again",
			m: model.Machine{Version: 2, State: model.StateAvailable,
				Status: model.Status{Phase: model.PhaseAvailable, ObservedVersion: 2, PowerCheckedAt: now, Inventory: &model.Inventory{CollectedAt: now.Add(-2 * time.Hour)}}},
			v:    func(v *view) { v.PollEvery = time.Minute; v.InventoryEvery = time.Hour },
			want: decideWant{op: opReinspect}},
		{name: "a fresh inventory is not read again",
			m: model.Machine{Version: 2, State: model.StateAvailable,
				Status: model.Status{Phase: model.PhaseAvailable, ObservedVersion: 2, PowerCheckedAt: now, Inventory: &model.Inventory{CollectedAt: now}}},
			v:    func(v *view) { v.PollEvery = time.Minute; v.InventoryEvery = time.Hour },
			want: decideWant{op: opWait}},
		{name: "available and desired provisioned starts a run",
			m:    model.Machine{State: model.StateProvisioned, MACs: []string{"52:54:00:00:00:01"}, Status: model.Status{Phase: model.PhaseAvailable, Inventory: inv}},
			want: decideWant{op: opTransition, phase: model.PhaseProvisioning, step: model.StepSettingBoot, newRun: true}},
		{name: "no run while the cluster gate is closed",
			m:    model.Machine{State: model.StateProvisioned, MACs: []string{"52:54:00:00:00:01"}, Status: model.Status{Phase: model.PhaseAvailable}},
			v:    func(v *view) { v.Gate = gate{Reason: "waiting for role control-plane"} },
			want: decideWant{op: opWait}},
		{name: "no run without a profile, and it says why",
			m:    model.Machine{State: model.StateProvisioned, MACs: []string{"52:54:00:00:00:01"}, Status: model.Status{Phase: model.PhaseAvailable}},
			v:    func(v *view) { v.Target = target{Problem: `boot profile "os" does not exist`} },
			want: decideWant{op: opNote, reason: `boot profile "os" does not exist`}},
		{name: "no run without a MAC",
			m:    model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseAvailable}},
			want: decideWant{op: opNote, reason: "no MAC"}},
		{name: "available and desired available polls power when due",
			m:    model.Machine{State: model.StateAvailable, Status: model.Status{Phase: model.PhaseAvailable, PowerCheckedAt: now.Add(-2 * time.Minute)}},
			want: decideWant{op: opPollPower}},
		{name: "available and desired available waits for the next poll",
			m:    model.Machine{State: model.StateAvailable, Status: model.Status{Phase: model.PhaseAvailable, PowerCheckedAt: now.Add(-10 * time.Second)}},
			want: decideWant{op: opWait}},
		{name: "a new spec version at rest is acknowledged",
			m:    model.Machine{Version: 3, State: model.StateAvailable, Status: model.Status{Phase: model.PhaseAvailable, ObservedVersion: 2}},
			want: decideWant{op: opObserve}},
		{name: "available and desired off powers off",
			m:    model.Machine{State: model.StateOff, Status: model.Status{Phase: model.PhaseAvailable}},
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepPoweringOff}},
		{name: "off and desired available leaves the power",
			m:    model.Machine{State: model.StateAvailable, Status: model.Status{Phase: model.PhaseOff}},
			want: decideWant{op: opTransition, phase: model.PhaseAvailable}},
		{name: "setting_boot sets the PXE override",
			m:    model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepSettingBoot}, Run: run("", nil)},
			want: decideWant{op: opSetBootPXE, phase: model.PhaseProvisioning, step: model.StepPoweringOn}},
		{name: "powering_on powers on",
			m:    model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepPoweringOn}, Run: run("", nil)},
			want: decideWant{op: opPowerOn, phase: model.PhaseProvisioning, step: model.StepWaitingPXE}},
		{name: "powering_on never powers a machine that already asked for PXE",
			m:    model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepPoweringOn}, Run: run("", sig(model.SignalPXERequested))},
			want: decideWant{op: opTransition, phase: model.PhaseProvisioning, step: model.StepWaitingPXE}},
		{name: "powering_on never powers a machine past its callback",
			m:    model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepPoweringOn}, Run: run("", func(r *model.Run) { r.CallbackAt = now })},
			want: decideWant{op: opTransition, phase: model.PhaseProvisioning, step: model.StepWaitingPXE}},
		{name: "waiting_pxe moves on with the script served",
			m:    model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepWaitingPXE}, Run: run("", sig(model.SignalScriptServed))},
			want: decideWant{op: opTransition, phase: model.PhaseProvisioning, step: model.StepBootingInstaller}},
		{name: "waiting_pxe jumps to installing when the templates were fetched (lost signals)",
			m:    model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepWaitingPXE}, Run: run("", sig(model.SignalTemplatesFetched))},
			want: decideWant{op: opTransition, phase: model.PhaseProvisioning, step: model.StepInstalling}},
		{name: "waiting_pxe waits before its deadline",
			m:    model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepWaitingPXE}, Run: run("", nil)},
			want: decideWant{op: opWait}},
		{name: "waiting_pxe past its deadline without any signal power-cycles again",
			m: model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepWaitingPXE},
				Run: run("", func(r *model.Run) { r.StepDeadline = now.Add(-time.Second); r.Attempts = 1 })},
			want: decideWant{op: opTransition, phase: model.PhaseProvisioning, step: model.StepSettingBoot, reason: "retry 2 of 3"}},
		{name: "waiting_pxe past its deadline after all retries fails",
			m: model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepWaitingPXE},
				Run: run("", func(r *model.Run) { r.StepDeadline = now.Add(-time.Second); r.Attempts = 3 })},
			want: decideWant{op: opTransition, phase: model.PhaseFailed, fail: true, reason: "no PXE request"}},
		{name: "booting_installer past its deadline fails without a power cycle",
			m: model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepBootingInstaller},
				Run: run("", func(r *model.Run) { sig(model.SignalPXERequested)(r); r.StepDeadline = now.Add(-time.Second) })},
			want: decideWant{op: opTransition, phase: model.PhaseFailed, fail: true, reason: "did not fetch the installer"}},
		{name: "installing past its deadline fails",
			m: model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepInstalling},
				Run: run("", func(r *model.Run) { sig(model.SignalKernelFetched)(r); r.StepDeadline = now.Add(-time.Second) })},
			want: decideWant{op: opTransition, phase: model.PhaseFailed, fail: true, reason: "did not call back"}},
		{name: "finishing sets the next boot to disk",
			m: model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepFinishing},
				Run: run("", func(r *model.Run) { r.CallbackAt = now; r.TokenUsed = true })},
			want: decideWant{op: opSetBootDisk, phase: model.PhaseProvisioned, reason: "installed with os v2 (run r1)"}},
		{name: "image_written boots the deployed image",
			m: model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepImageWritten},
				Run: run("", func(r *model.Run) { r.Deploy = &model.Deploy{Disk: "sda", WrittenAt: now} })},
			want: decideWant{op: opRebootToOS, phase: model.PhaseProvisioning, step: model.StepBootingOS, reason: "booting the deployed image"}},
		{name: "a changed target restarts an unfinished run",
			m:    model.Machine{State: model.StateProvisioned, MACs: []string{"52:54:00:00:00:01"}, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepInstalling}, Run: run("", nil)},
			v:    func(v *view) { v.Target.Version = 3 },
			want: decideWant{op: opTransition, phase: model.PhaseProvisioning, step: model.StepSettingBoot, newRun: true}},
		{name: "a changed target waits for a run past its callback",
			m: model.Machine{State: model.StateProvisioned, MACs: []string{"52:54:00:00:00:01"}, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepFinishing},
				Run: run("", func(r *model.Run) { r.CallbackAt = now; r.TokenUsed = true })},
			v:    func(v *view) { v.Target.Version = 3 },
			want: decideWant{op: opSetBootDisk, phase: model.PhaseProvisioned, reason: "installed with os v2 (run r1)"}},
		{name: "desired available aborts an unfinished run",
			m:    model.Machine{State: model.StateAvailable, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepWaitingPXE}, Run: run("", nil)},
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepPoweringOff, abort: true}},
		{name: "provisioned with its target polls power",
			m: model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseProvisioned,
				ProvisionedProfile: "os", ProvisionedProfileVersion: 2, ProvisionedParamsHash: "h2"}},
			want: decideWant{op: opPollPower}},
		{name: "provisioned with an older profile version re-provisions",
			m: model.Machine{State: model.StateProvisioned, MACs: []string{"52:54:00:00:00:01"}, Status: model.Status{Phase: model.PhaseProvisioned,
				ProvisionedProfile: "os", ProvisionedProfileVersion: 1, ProvisionedParamsHash: "h2"}},
			want: decideWant{op: opTransition, phase: model.PhaseProvisioning, step: model.StepSettingBoot, newRun: true, reason: "re-provision"}},
		{name: "provisioned with other params re-provisions",
			m: model.Machine{State: model.StateProvisioned, MACs: []string{"52:54:00:00:00:01"}, Status: model.Status{Phase: model.PhaseProvisioned,
				ProvisionedProfile: "os", ProvisionedProfileVersion: 2, ProvisionedParamsHash: "h1"}},
			want: decideWant{op: opTransition, phase: model.PhaseProvisioning, newRun: true, step: model.StepSettingBoot}},
		{name: "deprovision without a wipe profile powers off",
			m:    model.Machine{State: model.StateAvailable, Status: model.Status{Phase: model.PhaseProvisioned, ProvisionedProfile: "os"}},
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepPoweringOff}},
		{name: "deprovision with a wipe profile starts a wipe run",
			m:    model.Machine{State: model.StateAvailable, Status: model.Status{Phase: model.PhaseProvisioned, ProvisionedProfile: "os"}},
			v:    func(v *view) { v.Wipe, v.WipeVersion = "wipe", 1 },
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepSettingBoot, newRun: true, reason: "wiping"}},
		{name: "deprovision waits when the wipe profile is missing",
			m:    model.Machine{State: model.StateAvailable, Status: model.Status{Phase: model.PhaseProvisioned, ProvisionedProfile: "os"}},
			v:    func(v *view) { v.WipeProblem = `wipe profile "wipe" named by boot profile "os" does not exist` },
			want: decideWant{op: opNote, reason: "cannot deprovision"}},
		{name: "desired off from provisioned powers off without a wipe",
			m:    model.Machine{State: model.StateOff, Status: model.Status{Phase: model.PhaseProvisioned}},
			v:    func(v *view) { v.Wipe, v.WipeVersion = "wipe", 1 },
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepPoweringOff}},
		{name: "powering_off powers off",
			m:    model.Machine{State: model.StateAvailable, Status: model.Status{Phase: model.PhaseDeprovisioning, Step: model.StepPoweringOff}},
			want: decideWant{op: opPowerOff, phase: model.PhaseAvailable, reason: "powered off; available"}},
		{name: "powering_off with desired off rests off",
			m:    model.Machine{State: model.StateOff, Status: model.Status{Phase: model.PhaseDeprovisioning, Step: model.StepPoweringOff}},
			want: decideWant{op: opPowerOff, phase: model.PhaseOff, reason: "powered off"}},
		{name: "a wipe run advances like a provisioning run",
			m:    model.Machine{State: model.StateAvailable, Status: model.Status{Phase: model.PhaseDeprovisioning, Step: model.StepSettingBoot}, Run: run("", nil)},
			want: decideWant{op: opSetBootPXE, phase: model.PhaseDeprovisioning, step: model.StepPoweringOn}},
		{name: "failed waits for the operator",
			m:    model.Machine{Version: 2, State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseFailed, ObservedVersion: 2, Inventory: inv}},
			want: decideWant{op: opWait}},
		{name: "failed retries from the inventory after a spec change",
			m:    model.Machine{Version: 3, State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseFailed, ObservedVersion: 2, Inventory: inv}},
			want: decideWant{op: opTransition, phase: model.PhaseInspecting, reason: "retrying"}},
		{name: "deleting a failed machine powers it off",
			m:    model.Machine{Version: 2, DeletionRequested: now, Status: model.Status{Phase: model.PhaseFailed, ObservedVersion: 2, PhaseSince: now.Add(-time.Hour), ProvisionedAt: now.Add(-2 * time.Hour)}},
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepPoweringOff}},
		{name: "deleting a failed machine never powered on forgets it",
			m:    model.Machine{Version: 2, DeletionRequested: now, Status: model.Status{Phase: model.PhaseFailed, ObservedVersion: 2, PhaseSince: now.Add(-time.Hour), LastError: "login refused"}},
			want: decideWant{op: opForget, reason: "never powered"}},
		{name: "a failed power-off for deletion forgets the machine, saying why",
			m: model.Machine{Version: 2, DeletionRequested: now.Add(-time.Hour),
				Status: model.Status{Phase: model.PhaseFailed, ObservedVersion: 2, PhaseSince: now, ProvisionedAt: now.Add(-2 * time.Hour), LastError: "BMC x: no answer"}},
			want: decideWant{op: opForget, reason: "deleted without a power-off, which failed: BMC x: no answer; the machine may still be powered on"}},
		{name: "a failed machine retries once its target changed (a fixed profile)",
			m: model.Machine{Version: 2, State: model.StateProvisioned, Run: run(model.StepNone, func(r *model.Run) { r.ProfileVersion = 1 }),
				Status: model.Status{Phase: model.PhaseFailed, ObservedVersion: 2, Inventory: inv}},
			want: decideWant{op: opTransition, phase: model.PhaseInspecting, reason: "target changed since run r1 failed"}},
		{name: "a failed machine with its run's target waits",
			m: model.Machine{Version: 2, State: model.StateProvisioned, Run: run(model.StepNone, nil),
				Status: model.Status{Phase: model.PhaseFailed, ObservedVersion: 2, Inventory: inv}},
			want: decideWant{op: opWait}},
		{name: "failed before any inventory retries reading it",
			m:    model.Machine{Version: 3, State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseFailed, ObservedVersion: 2}},
			want: decideWant{op: opTransition, phase: model.PhaseInspecting}},
		// An image deploy's config drive (Status.CleanPending) makes every
		// release go through a clean run of the deploy ramdisk.
		{name: "deleting an image-deployed machine starts a clean run",
			m: model.Machine{DeletionRequested: now, State: model.StateProvisioned, Run: run(model.StepNone, func(r *model.Run) { r.TokenUsed = true }),
				Status: model.Status{Phase: model.PhaseProvisioned, ProvisionedProfile: "os", ProvisionedAt: now, CleanPending: model.WipeConfigDrive}},
			v:    cleanView(model.WipeConfigDrive),
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepSettingBoot, newRun: true, clean: model.WipeConfigDrive, reason: "cleans the disk first (wipe config-drive)"}},
		{name: "desired available cleans at the profile's current wipe level",
			m: model.Machine{State: model.StateAvailable,
				Status: model.Status{Phase: model.PhaseProvisioned, ProvisionedProfile: "os", ProvisionedAt: now, CleanPending: model.WipeConfigDrive}},
			v:    cleanView(model.WipeFull),
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepSettingBoot, newRun: true, clean: model.WipeFull, reason: "desired state available"}},
		{name: "the clean comes before a wipe profile",
			m: model.Machine{State: model.StateAvailable,
				Status: model.Status{Phase: model.PhaseProvisioned, ProvisionedProfile: "os", ProvisionedAt: now, CleanPending: model.WipeMetadata}},
			v:    func(v *view) { cleanView(model.WipeMetadata)(v); v.Wipe, v.WipeVersion = "wipe", 1 },
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepSettingBoot, newRun: true, clean: model.WipeMetadata}},
		{name: "the clean waits for its missing profile rather than be skipped",
			m: model.Machine{DeletionRequested: now, State: model.StateProvisioned,
				Status: model.Status{Phase: model.PhaseProvisioned, ProvisionedProfile: "os", ProvisionedAt: now, CleanPending: model.WipeConfigDrive}},
			v:    func(v *view) { v.CleanProblem = `boot profile "os", whose image the disk holds, does not exist` },
			want: decideWant{op: opNote, reason: "cannot deprovision: boot profile \"os\""}},
		{name: "desired off keeps the disk as it is",
			m: model.Machine{State: model.StateOff,
				Status: model.Status{Phase: model.PhaseProvisioned, ProvisionedProfile: "os", ProvisionedAt: now, CleanPending: model.WipeConfigDrive}},
			v:    cleanView(model.WipeConfigDrive),
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepPoweringOff}},
		{name: "deleting mid-deploy after the image was written aborts the run and cleans",
			m: model.Machine{DeletionRequested: now, State: model.StateProvisioned, Run: run(model.StepBootingOS, nil),
				Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepBootingOS, CleanPending: model.WipeConfigDrive}},
			v:    cleanView(model.WipeConfigDrive),
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepSettingBoot, newRun: true, abort: true, clean: model.WipeConfigDrive}},
		{name: "a clean run advances like a provisioning run",
			m: model.Machine{DeletionRequested: now, Run: run(model.StepSettingBoot, func(r *model.Run) { r.Clean = model.WipeFull }),
				Status: model.Status{Phase: model.PhaseDeprovisioning, Step: model.StepSettingBoot, CleanPending: model.WipeFull}},
			want: decideWant{op: opSetBootPXE, phase: model.PhaseDeprovisioning, step: model.StepPoweringOn}},
		{name: "a failed clean of a machine being deleted is not forgotten",
			m: model.Machine{DeletionRequested: now.Add(-time.Hour), Run: run(model.StepNone, func(r *model.Run) { r.Clean = model.WipeConfigDrive; r.TokenUsed = true }),
				Status: model.Status{Phase: model.PhaseFailed, PhaseSince: now, CleanPending: model.WipeConfigDrive, LastError: "deprovision: cleaning the disk failed"}},
			v:    cleanView(model.WipeConfigDrive),
			want: decideWant{op: opWait}},
		{name: "a failed clean that never powered on is not forgotten either",
			m: model.Machine{DeletionRequested: now.Add(-time.Hour), Run: run(model.StepNone, func(r *model.Run) { r.Clean = model.WipeConfigDrive; r.TokenUsed = true }),
				Status: model.Status{Phase: model.PhaseFailed, PhaseSince: now, CleanPending: model.WipeConfigDrive}},
			want: decideWant{op: opWait}},
		{name: "deleting again after a failed clean retries it",
			m: model.Machine{DeletionRequested: now, Run: run(model.StepNone, func(r *model.Run) { r.Clean = model.WipeConfigDrive; r.TokenUsed = true }),
				Status: model.Status{Phase: model.PhaseFailed, PhaseSince: now.Add(-time.Minute), CleanPending: model.WipeConfigDrive}},
			v:    cleanView(model.WipeConfigDrive),
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepSettingBoot, newRun: true, clean: model.WipeConfigDrive}},
		{name: "an available machine still holding a config drive is cleaned",
			m:    model.Machine{State: model.StateAvailable, Status: model.Status{Phase: model.PhaseAvailable, CleanPending: model.WipeConfigDrive}},
			v:    cleanView(model.WipeConfigDrive),
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepSettingBoot, newRun: true, clean: model.WipeConfigDrive}},
		{name: "deleting an available machine that holds a config drive cleans it",
			m:    model.Machine{DeletionRequested: now, Status: model.Status{Phase: model.PhaseAvailable, PowerState: model.PowerOff, CleanPending: model.WipeConfigDrive}},
			v:    cleanView(model.WipeConfigDrive),
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepSettingBoot, newRun: true, clean: model.WipeConfigDrive}},
		{name: "deleting while inspecting a machine that holds a config drive cleans it",
			m:    model.Machine{DeletionRequested: now, Status: model.Status{Phase: model.PhaseInspecting, CleanPending: model.WipeConfigDrive}},
			v:    cleanView(model.WipeConfigDrive),
			want: decideWant{op: opTransition, phase: model.PhaseDeprovisioning, step: model.StepSettingBoot, newRun: true, clean: model.WipeConfigDrive}},
	}
}

// decideView is the view a decide table row is decided on.
func decideView(tc decideCase) view {
	m := tc.m
	m.Name = "m1"
	v := view{M: &m, Target: target{Profile: "os", Version: 2, ParamsHash: "h2"}, Gate: gate{Open: true}, Now: decideNow,
		Timeouts: StepTimeouts{WaitPXE: 10 * time.Minute, BootInstaller: 10 * time.Minute, Install: time.Hour, Retries: 3}, PollEvery: time.Minute}
	if tc.v != nil {
		tc.v(&v)
	}
	return v
}

func TestDecide(t *testing.T) {
	for _, tc := range decideCases() {
		t.Run(tc.name, func(t *testing.T) {
			p := decide(decideView(tc))
			if p.Op != tc.want.op {
				t.Fatalf("op = %s (%q), want %s", p.Op, p.Reason, tc.want.op)
			}
			if (p.Phase != "" || tc.want.phase != "") && (p.Phase != tc.want.phase || p.Step != tc.want.step) {
				t.Fatalf("→ %s/%s, want %s/%s (%q)", p.Phase, p.Step, tc.want.phase, tc.want.step, p.Reason)
			}
			if (p.NewRun != nil) != tc.want.newRun || p.AbortRun != tc.want.abort || p.Fail != tc.want.fail {
				t.Fatalf("newRun=%v abort=%v fail=%v, want %v %v %v", p.NewRun != nil, p.AbortRun, p.Fail, tc.want.newRun, tc.want.abort, tc.want.fail)
			}
			if p.NewRun != nil && p.NewRun.Clean != tc.want.clean {
				t.Fatalf("new run's clean = %q, want %q", p.NewRun.Clean, tc.want.clean)
			}
			if !strings.Contains(p.Reason, tc.want.reason) {
				t.Fatalf("reason %q does not contain %q", p.Reason, tc.want.reason)
			}
			if p.Op == opTransition && p.Reason == "" {
				t.Fatal("a transition without a reason")
			}
		})
	}
}

// cleanView is the view of a machine whose disk holds a config drive, its
// profile "os" asking for wipe.
func cleanView(wipe string) func(v *view) {
	return func(v *view) { v.Clean = target{Profile: "os", Version: 2, Clean: wipe} }
}

func TestExpectedPower(t *testing.T) {
	for _, tc := range []struct {
		m    model.Machine
		want string
	}{
		{model.Machine{Status: model.Status{Phase: model.PhaseProvisioned}}, model.PowerOn},
		{model.Machine{Status: model.Status{Phase: model.PhaseOff}}, model.PowerOff},
		{model.Machine{Status: model.Status{Phase: model.PhaseAvailable}}, ""},
		{model.Machine{Status: model.Status{Phase: model.PhaseAvailable}, Run: &model.Run{ID: "r"}}, model.PowerOff},
		{model.Machine{Status: model.Status{Phase: model.PhaseProvisioning}}, ""},
	} {
		if got := expectedPower(&tc.m); got != tc.want {
			t.Errorf("%s (run %v): %q, want %q", tc.m.Status.Phase, tc.m.Run != nil, got, tc.want)
		}
	}
}

func TestParamsHash(t *testing.T) {
	a := paramsHash(map[string]string{"x": "1", "y": "2"}, nil, map[string]string{})
	if b := paramsHash(map[string]string{"y": "2", "x": "1"}, map[string]string{}, nil); a != b {
		t.Fatal("hash depends on map order or nil vs empty")
	}
	// Moving a key between layers changes what renders when precedences
	// differ, so it must change the hash.
	if c := paramsHash(map[string]string{"x": "1"}, map[string]string{"y": "2"}, nil); c == a {
		t.Fatal("layers are not distinguished")
	}
}

func TestQueueDedupAndSerialises(t *testing.T) {
	q := newQueue()
	q.add("a")
	q.add("a")
	q.add("b")
	if n := q.len(); n != 2 {
		t.Fatalf("len = %d, want 2 (deduplicated)", n)
	}
	k, _ := q.get()
	if k != "a" {
		t.Fatalf("got %q", k)
	}
	q.add("a") // while active: marked to run again, not handed out twice
	k2, _ := q.get()
	if k2 != "b" || q.len() != 0 {
		t.Fatalf("got %q with %d left, want b and nothing (a is active)", k2, q.len())
	}
	q.done("a")
	if k3, _ := q.get(); k3 != "a" {
		t.Fatalf("a was not requeued after done: %q", k3)
	}
	q.addAfter("c", 20*time.Millisecond)
	q.addAfter("c", time.Hour) // a later delay does not postpone the earlier one
	start := time.Now()
	if k4, _ := q.get(); k4 != "c" || time.Since(start) > 5*time.Second {
		t.Fatalf("delayed add: %q after %s", k4, time.Since(start))
	}
	q.close()
	if _, ok := q.get(); ok {
		t.Fatal("get after close")
	}
}

func TestTokenProblem(t *testing.T) {
	active := func() *model.Machine {
		return &model.Machine{Status: model.Status{Phase: model.PhaseProvisioning}, Run: &model.Run{ID: "r", Token: "good-token"}}
	}
	used := active()
	used.Run.TokenUsed = true
	idle := active()
	idle.Status.Phase = model.PhaseProvisioned
	for _, tc := range []struct {
		m     *model.Machine
		token string
		want  string
	}{
		{active(), "good-token", ""},
		{active(), "", "no token"},
		{active(), "good-toke", "does not belong"},
		{active(), "good-token-and-more", "does not belong"},
		{used, "good-token", "replay"},
		{idle, "good-token", "not provisioning"},
		{&model.Machine{}, "good-token", "no provisioning run"},
	} {
		got := tokenProblem(tc.m, tc.token)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("token %q: %q, want %q", tc.token, got, tc.want)
		}
		if strings.Contains(got, "good-token") {
			t.Errorf("reason leaks the token: %q", got)
		}
	}
}

func TestLimiterGivesEachCallerItsOwnSlot(t *testing.T) {
	l := newLimiter(4) // one poll per 250ms
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for _, tc := range []struct {
		name     string
		now, got time.Duration
	}{
		{"first caller goes at once", 0, 0},
		{"second caller 100ms later gets the next slot", 100 * time.Millisecond, 250 * time.Millisecond},
		{"third caller at the same moment gets the slot after", 100 * time.Millisecond, 500 * time.Millisecond},
		{"a caller after the backlog drained goes at once", 2 * time.Second, 2 * time.Second},
	} {
		if got := l.reserve(at(tc.now)); !got.Equal(at(tc.got)) {
			t.Errorf("%s: slot at %s, want %s", tc.name, got.Sub(t0), tc.got)
		}
	}
}

func TestPollWaitWakesEachMachineOnce(t *testing.T) {
	r := New(Config{PowerPollRate: 10}, nil, nil) // one poll per 100ms
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	const machines = 50
	waits := map[string]time.Duration{}
	for i := range machines {
		name := fmt.Sprintf("m%d", i)
		waits[name] = r.pollWait(name, now)
	}
	seen := map[time.Duration]bool{}
	for name, w := range waits {
		if seen[w] {
			t.Fatalf("two machines share the slot %s", w)
		}
		seen[w] = true
		if w == 0 {
			continue // it polled at once
		}
		// Reconciled again before its slot (an outside change): it keeps
		// its slot rather than taking a later one.
		if again := r.pollWait(name, now.Add(w/2)); again != w-w/2 {
			t.Errorf("%s: early wake waits %s, want %s", name, again, w-w/2)
		}
		// At its slot it polls.
		if got := r.pollWait(name, now.Add(w)); got != 0 {
			t.Errorf("%s: at its slot waits %s more", name, got)
		}
	}
	if len(seen) != machines || !seen[(machines-1)*100*time.Millisecond] {
		t.Errorf("slots are not spaced 100ms apart: %v", seen)
	}
}
