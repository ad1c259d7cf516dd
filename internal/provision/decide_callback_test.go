package provision

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

type callbackWant struct {
	kind   callbackKind
	refuse string // substring; set: the report is refused
	phase  model.Phase
	step   model.Step
	fail   bool
	reason string // substring
}

// callbackCase is a row of the decideCallback table; TestTransitionsDeclared
// runs the same rows against the state table.
type callbackCase struct {
	name   string
	m      model.Machine
	report model.CallbackReport
	want   callbackWant
}

func callbackCases() []callbackCase {
	now := decideNow
	run := func(mod func(r *model.Run)) *model.Run {
		r := &model.Run{ID: "r1", Token: "t", Profile: "os", ProfileVersion: 2}
		if mod != nil {
			mod(r)
		}
		return r
	}
	provisioning := func(r *model.Run) model.Machine {
		return model.Machine{State: model.StateProvisioned, Run: r, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepInstalling}}
	}
	deploying := func(d *model.Deploy) *model.Run { return run(func(r *model.Run) { r.Deploy = d }) }
	cleaning := model.Machine{DeletionRequested: now, Run: run(func(r *model.Run) { r.Clean = model.WipeConfigDrive }),
		Status: model.Status{Phase: model.PhaseDeprovisioning, Step: model.StepWaitingPXE, CleanPending: model.WipeConfigDrive}}
	return []callbackCase{
		{name: "an installer's ok ends the run at finishing",
			m: provisioning(run(nil)), report: model.CallbackReport{Status: "ok"},
			want: callbackWant{kind: callbackEnd, phase: model.PhaseProvisioning, step: model.StepFinishing, reason: "installer called back; run r1 complete"}},
		{name: "no status counts as ok",
			m:    provisioning(run(nil)),
			want: callbackWant{kind: callbackEnd, phase: model.PhaseProvisioning, step: model.StepFinishing}},
		{name: "a wipe run's callback powers off",
			m:      model.Machine{State: model.StateAvailable, Run: run(nil), Status: model.Status{Phase: model.PhaseDeprovisioning, Step: model.StepInstalling}},
			report: model.CallbackReport{Status: "ok"},
			want:   callbackWant{kind: callbackEnd, phase: model.PhaseDeprovisioning, step: model.StepPoweringOff}},
		{name: "an installer's failure fails the machine with its log tail",
			m: provisioning(run(nil)), report: model.CallbackReport{Status: "FAILED", LogTail: "disk full"},
			want: callbackWant{kind: callbackEnd, phase: model.PhaseFailed, fail: true, reason: "installer reported failure (run r1, profile os): disk full"}},
		{name: "a status nobody defined is a failure, quoted",
			m: provisioning(run(nil)), report: model.CallbackReport{Status: "meh"},
			want: callbackWant{kind: callbackEnd, phase: model.PhaseFailed, fail: true, reason: `installer reported status "meh"`}},
		{name: "a failure on a template that did not render names the template's error first",
			m: provisioning(run(func(r *model.Run) { r.RenderError = "no param site" })), report: model.CallbackReport{Status: "failed"},
			want: callbackWant{kind: callbackEnd, phase: model.PhaseFailed, fail: true, reason: "run r1: rendering failed: no param site; then installer reported failure"}},
		{name: "the deploy ramdisk's image_written boots the image next",
			m: provisioning(deploying(&model.Deploy{Disk: "sda"})), report: model.CallbackReport{Stage: "image_written", Status: "ok", Disk: "sda"},
			want: callbackWant{kind: callbackImageWritten, phase: model.PhaseProvisioning, step: model.StepImageWritten, reason: "image and config drive written to sda; booting it from disk"}},
		{name: "the deploy ramdisk's failure fails the machine with its message",
			m: provisioning(deploying(&model.Deploy{Disk: "sda"})), report: model.CallbackReport{Stage: "image_written", Status: "failed", Message: "checksum mismatch"},
			want: callbackWant{kind: callbackImageWritten, phase: model.PhaseFailed, fail: true, reason: "image deploy failed (run r1, profile os): checksum mismatch"}},
		{name: "the deployed OS's report ends the run",
			m: provisioning(deploying(&model.Deploy{Disk: "sda", WrittenAt: now})), report: model.CallbackReport{Status: "ok"},
			want: callbackWant{kind: callbackEnd, phase: model.PhaseProvisioning, step: model.StepFinishing, reason: "deployed OS called back"}},
		{name: "image_written without a deploy is refused",
			m: provisioning(run(nil)), report: model.CallbackReport{Stage: "image_written"},
			want: callbackWant{refuse: "no deploy ramdisk reported its disks"}},
		{name: "a second image_written is refused",
			m: provisioning(deploying(&model.Deploy{Disk: "sda", WrittenAt: now})), report: model.CallbackReport{Stage: "image_written"},
			want: callbackWant{refuse: "already written"}},
		{name: "the OS before the image is written is refused",
			m: provisioning(deploying(&model.Deploy{Disk: "sda"})), report: model.CallbackReport{Status: "ok"},
			want: callbackWant{refuse: "before the deploy ramdisk reported the image written"}},
		{name: "a clean run's ok powers off",
			m: cleaning, report: model.CallbackReport{Status: "ok", Disk: "sda"},
			want: callbackWant{kind: callbackClean, phase: model.PhaseDeprovisioning, step: model.StepPoweringOff, reason: "deploy ramdisk cleaned sda (wipe config-drive): config drive removed; powering off"}},
		{name: "a clean run's failure keeps the machine, saying how to go on",
			m: cleaning, report: model.CallbackReport{Status: "failed", LogTail: "wipefs: busy"},
			want: callbackWant{kind: callbackClean, phase: model.PhaseFailed, fail: true, reason: "cleaning the disk failed (run r1, wipe config-drive): wipefs: busy"}},
		{name: "a clean run's image_written report is its clean report",
			m: cleaning, report: model.CallbackReport{Stage: "image_written", Status: "ok"},
			want: callbackWant{kind: callbackClean, phase: model.PhaseDeprovisioning, step: model.StepPoweringOff}},
	}
}

func TestDecideCallback(t *testing.T) {
	for _, tc := range callbackCases() {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m
			p := decideCallback(&m, tc.report)
			if tc.want.refuse != "" {
				assert.Contains(t, p.Refuse, tc.want.refuse)
				assert.Zero(t, p.plan, "a refused report changes nothing")
				return
			}
			require.Empty(t, p.Refuse)
			assert.Equal(t, tc.want.kind, p.Kind)
			assert.Equal(t, opTransition, p.Op)
			assert.Equal(t, tc.want.phase, p.Phase)
			assert.Equal(t, tc.want.step, p.Step)
			assert.Equal(t, tc.want.fail, p.Fail)
			assert.Contains(t, p.Reason, tc.want.reason)
			assert.NotEmpty(t, p.Reason, "a transition without a reason")
		})
	}
}

// callbackMachines are machines a callback may be accepted for (a run, in
// provisioning or deprovisioning; see tokenProblem) at each point of each
// kind of run, for the state table check.
func callbackMachines() map[string]model.Machine {
	now := decideNow
	out := map[string]model.Machine{}
	for _, ph := range []model.Phase{model.PhaseProvisioning, model.PhaseDeprovisioning} {
		for name, r := range map[string]model.Run{
			"install":                   {ID: "r1"},
			"render error":              {ID: "r1", RenderError: "x"},
			"deploy, image not written": {ID: "r1", Deploy: &model.Deploy{Disk: "sda"}},
			"deploy, image written":     {ID: "r1", Deploy: &model.Deploy{Disk: "sda", WrittenAt: now}},
			"clean":                     {ID: "r1", Clean: model.WipeFull},
		} {
			out[string(ph)+", "+name] = model.Machine{Run: &r, Status: model.Status{Phase: ph, Step: model.StepInstalling}}
		}
	}
	return out
}

// callbackReports are the report shapes decideCallback branches on.
var callbackReports = map[string]model.CallbackReport{
	"ok": {Status: "ok"}, "empty": {}, "failed": {Status: "failed"}, "undefined status": {Status: "meh"},
	"image written": {Stage: model.StageImageWritten, Status: "ok"}, "image not written": {Stage: model.StageImageWritten, Status: "failed"},
}
