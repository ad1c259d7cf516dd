package provision

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// steps builds a run's boot steps one minute apart, the last one at last.
func steps(last time.Time, s ...model.BootStep) []model.BootStep {
	for i := range s {
		s[i].At = last.Add(-time.Duration(len(s)-1-i) * time.Minute)
	}
	return s
}

func TestDescribeStall(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	ago5 := now.Add(-5 * time.Minute)
	var (
		proxy    = model.BootStep{Signal: model.SignalPXERequested, Name: "proxydhcp"}
		pxe      = model.BootStep{Signal: model.SignalPXERequested}
		script   = model.BootStep{Signal: model.SignalScriptServed}
		kernel   = model.BootStep{Signal: model.SignalKernelFetched, Name: "vmlinuz"}
		initrd   = model.BootStep{Signal: model.SignalInitrdFetched, Name: "initrd.img"}
		initrdA  = model.BootStep{Signal: model.SignalInitrdFetched, Name: "a.img"}
		userData = model.BootStep{Signal: model.SignalTemplatesFetched, Name: "user-data"}
		metaData = model.BootStep{Signal: model.SignalTemplatesFetched, Name: "meta-data"}
	)
	oneInitrd := bootPlan{Kernel: true, Initrds: []string{"initrd.img"}, Templates: true}
	for _, tc := range []struct {
		name string
		run  model.Run
		plan bootPlan
		want string
	}{
		{"nothing since power-on", model.Run{PoweredOnAt: ago5}, oneInitrd,
			"no boot script requested since power-on 5m ago: check the PXE/DHCP setup and the boot order"},
		{"not powered on by this run yet", model.Run{}, oneInitrd, ""},
		{"ProxyDHCP answered, no script requested", model.Run{Steps: steps(ago5, proxy)}, oneInitrd,
			"PXE request answered by ProxyDHCP 5m ago, no boot script requested since: check that the machine loads the iPXE binary over TFTP and that iPXE reaches the boot URL"},
		{"script requested, none served", model.Run{Steps: steps(ago5, proxy, pxe)}, oneInitrd,
			"boot script requested 5m ago, none served: rendering it failed (see the render_failed event); check the boot profile"},
		{"script served, no kernel", model.Run{Steps: steps(ago5, pxe, script)}, oneInitrd,
			"boot script served 5m ago, no kernel fetched since: iPXE did not load it; check the console and the profile's kernel path"},
		{"script served, kernel and initrd elsewhere", model.Run{Steps: steps(ago5, pxe, script)}, bootPlan{Templates: true},
			"boot script served 5m ago, no template fetched since (the kernel comes from another server, which the agent does not see): the kernel may not have started; check the console"},
		{"script served, kernel elsewhere, initrd here", model.Run{Steps: steps(ago5, pxe, script)}, bootPlan{Initrds: []string{"initrd.img"}, Templates: true},
			"boot script served 5m ago, no initrd fetched since (the kernel comes from another server, which the agent does not see): check the console"},
		{"kernel, no initrd", model.Run{Steps: steps(ago5, pxe, script, kernel)}, oneInitrd,
			"kernel served 5m ago, no initrd initrd.img fetched since: iPXE did not load it; check the console and the profile's initrd paths"},
		{"kernel and one of two initrds", model.Run{Steps: steps(ago5, pxe, script, kernel, initrdA)}, bootPlan{Kernel: true, Initrds: []string{"a.img", "b.img"}, Templates: true},
			"kernel and initrd a.img served 5m ago, no initrd b.img fetched since: iPXE did not load it; check the console and the profile's initrd paths"},
		{"kernel and initrd, no template", model.Run{Steps: steps(ago5, pxe, script, kernel, initrd)}, oneInitrd,
			"kernel and initrd served 5m ago, no template fetched since: the kernel may not have started; check the console"},
		{"kernel only profile, no template", model.Run{Steps: steps(ago5, pxe, script, kernel)}, bootPlan{Kernel: true, Templates: true},
			"kernel served 5m ago, no template fetched since: the kernel may not have started; check the console"},
		{"kernel and initrd of a profile without templates", model.Run{Steps: steps(ago5, pxe, script, kernel, initrd)}, bootPlan{Kernel: true, Initrds: []string{"initrd.img"}},
			"kernel and initrd served 5m ago, no callback since: the kernel may not have started; check the console"},
		{"a clean run's ramdisk fetches no template", model.Run{Clean: model.WipeConfigDrive,
			Steps: steps(ago5, pxe, script, kernel, model.BootStep{Signal: model.SignalInitrdFetched, Name: "deploy-image/initrd.img"})}, cleanPlan,
			"kernel and initrd served 5m ago, no callback since: the kernel may not have started; check the console"},
		{"one template, no callback", model.Run{Steps: steps(ago5, pxe, script, kernel, initrd, userData)}, oneInitrd,
			"template user-data fetched 5m ago, no callback since: the installer may still be running, or it is stuck; check the console"},
		{"two templates, no callback", model.Run{Steps: steps(ago5, pxe, script, kernel, initrd, userData, metaData)}, oneInitrd,
			"templates user-data, meta-data fetched 5m ago, no callback since: the installer may still be running, or it is stuck; check the console"},
		{"the age is the last step's, in hours", model.Run{Steps: steps(now.Add(-65*time.Minute), pxe, script, kernel, initrd)}, oneInitrd,
			"kernel and initrd served 1h5m ago, no template fetched since: the kernel may not have started; check the console"},
		{"the age in seconds", model.Run{Steps: steps(now.Add(-45*time.Second), pxe, script)}, oneInitrd,
			"boot script served 45s ago, no kernel fetched since: iPXE did not load it; check the console and the profile's kernel path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, describeStall(&tc.run, tc.plan, now))
		})
	}
}

func TestPlanOf(t *testing.T) {
	p := &model.BootProfile{Kernel: "https://mirror.example/vmlinuz", Initrds: []string{"/local/initrd.img", "http://mirror.example/fw.img"},
		Templates: map[string]string{"user-data": "x"}}
	assert.Equal(t, bootPlan{Initrds: []string{"local/initrd.img"}, Templates: true}, planOf(p))
	assert.Equal(t, bootPlan{Kernel: true}, planOf(&model.BootProfile{Kernel: "vmlinuz"}))
}

func TestRunStepsAreBounded(t *testing.T) {
	r := &model.Run{}
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	require.True(t, r.AddStep(model.BootStep{Signal: model.SignalTemplatesFetched, Name: "t0", At: t0}))
	require.False(t, r.AddStep(model.BootStep{Signal: model.SignalTemplatesFetched, Name: "t0", At: t0.Add(time.Second)}), "a repeated step is not new")
	for i := 1; i < 2*model.MaxRunSteps; i++ {
		require.True(t, r.AddStep(model.BootStep{Signal: model.SignalTemplatesFetched, Name: fmt.Sprintf("t%d", i), At: t0.Add(time.Duration(i) * time.Second)}))
	}
	require.Len(t, r.Steps, model.MaxRunSteps)
	last, ok := r.LastStep()
	require.True(t, ok)
	assert.Equal(t, t0.Add(time.Duration(2*model.MaxRunSteps-1)*time.Second), last.At, "the newest step is kept past the bound")
}

// TestStallDecision drives the stall note through decide: when it falls
// due, how often it is refreshed, when it is cleared, and the failure at
// the step's deadline naming where the boot stalled.
func TestStallDecision(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	const warn = 5 * time.Minute
	tos := StepTimeouts{WaitPXE: 10 * time.Minute, BootInstaller: 10 * time.Minute, Install: time.Hour, Retries: 3}
	boot := bootPlan{Kernel: true, Initrds: []string{"initrd.img"}, Templates: true}
	installing := func(lastStep time.Time, mod func(r *model.Run)) model.Machine {
		r := &model.Run{ID: "r1", Token: "t", Profile: "os", ProfileVersion: 2, ParamsHash: "h2", StepDeadline: now.Add(30 * time.Minute),
			Signals: map[model.Signal]time.Time{model.SignalKernelFetched: lastStep},
			Steps: steps(lastStep, model.BootStep{Signal: model.SignalScriptServed}, model.BootStep{Signal: model.SignalKernelFetched, Name: "vmlinuz"},
				model.BootStep{Signal: model.SignalInitrdFetched, Name: "initrd.img"})}
		if mod != nil {
			mod(r)
		}
		return model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepInstalling}, Run: r}
	}
	const stalled = "kernel and initrd served 5m ago, no template fetched since: the kernel may not have started; check the console"
	type want struct {
		op       op
		after    time.Duration
		reason   string
		newStall bool
		stallOf  time.Time
	}
	for _, tc := range []struct {
		name string
		m    model.Machine
		warn time.Duration
		want want
	}{
		{"before the warning it waits for it, not for the deadline",
			installing(now.Add(-2*time.Minute), nil), warn, want{op: opWait, after: 3 * time.Minute}},
		{"no new step for the warning period: last_error says where, with an event",
			installing(now.Add(-warn), nil), warn, want{op: opStall, reason: stalled, newStall: true, stallOf: now.Add(-warn)}},
		{"a noted stall waits a period before its age is refreshed",
			installing(now.Add(-7*time.Minute), func(r *model.Run) { r.StallNotedAt = now.Add(-2 * time.Minute) }), warn,
			want{op: opWait, after: 3 * time.Minute}},
		{"a lasting stall gets its age refreshed, without another event",
			installing(now.Add(-10*time.Minute), func(r *model.Run) { r.StallNotedAt = now.Add(-warn) }), warn,
			want{op: opStall, reason: "kernel and initrd served 10m ago, no template fetched since: the kernel may not have started; check the console", stallOf: now.Add(-10 * time.Minute)}},
		{"a step after the note clears it",
			installing(now.Add(-time.Minute), func(r *model.Run) { r.StallNotedAt = now.Add(-2 * time.Minute) }), warn,
			want{op: opStall, stallOf: now.Add(-time.Minute)}},
		{"a step after the note clears it even with the warning turned off since",
			installing(now.Add(-time.Minute), func(r *model.Run) { r.StallNotedAt = now.Add(-2 * time.Minute) }), 0,
			want{op: opStall, stallOf: now.Add(-time.Minute)}},
		{"no warning when it is off",
			installing(now.Add(-time.Hour+time.Minute), nil), 0, want{op: opWait, after: 30 * time.Minute}},
		{"the deadline comes before the warning",
			installing(now.Add(-time.Minute), func(r *model.Run) { r.StepDeadline = now.Add(time.Minute) }), warn, want{op: opWait, after: time.Minute}},
		{"past the deadline the run fails, saying where the boot stalled",
			installing(now.Add(-59*time.Minute), func(r *model.Run) { r.StepDeadline = now.Add(-time.Second) }), warn,
			want{op: opTransition, reason: "run r1: the installer did not call back within 1h0m0s; kernel and initrd served 59m ago, no template fetched since: the kernel may not have started; check the console"}},
		{"waiting for PXE since power-on",
			model.Machine{State: model.StateProvisioned, Status: model.Status{Phase: model.PhaseProvisioning, Step: model.StepWaitingPXE},
				Run: &model.Run{ID: "r1", Profile: "os", ProfileVersion: 2, ParamsHash: "h2", StepDeadline: now.Add(5 * time.Minute), PoweredOnAt: now.Add(-warn)}}, warn,
			want{op: opStall, reason: "no boot script requested since power-on 5m ago: check the PXE/DHCP setup and the boot order", newStall: true, stallOf: now.Add(-warn)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m
			m.Name = "m1"
			v := view{M: &m, Target: target{Profile: "os", Version: 2, ParamsHash: "h2"}, Gate: gate{Open: true}, Now: now,
				Timeouts: tos, StallWarning: tc.warn, Boot: boot}
			p := decide(v)
			require.Equal(t, tc.want.op, p.Op, "reason %q", p.Reason)
			assert.Equal(t, tc.want.reason, p.Reason)
			switch p.Op {
			case opWait:
				assert.Equal(t, tc.want.after, p.After)
			case opStall:
				assert.Equal(t, tc.want.newStall, p.NewStall)
				assert.Equal(t, tc.want.stallOf, p.StallOf)
			case opTransition:
				assert.True(t, p.Fail)
			}
		})
	}
}
