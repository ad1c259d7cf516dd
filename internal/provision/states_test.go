package provision

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// bmcOps are the ops whose executor fails the machine once its BMC step
// has failed for good (see stepFailed), from the phase the plan was made in.
var bmcOps = []op{opInspect, opSetBootPXE, opSetBootDisk, opPowerOn, opPowerOff, opRebootToOS}

// successors are the phases a plan may move the machine to: the phase it
// names, and failed for a BMC step (its retries used up).
func successors(p plan) []model.Phase {
	var out []model.Phase
	if p.Phase != "" {
		out = append(out, p.Phase)
	}
	if slices.Contains(bmcOps, p.Op) {
		out = append(out, model.PhaseFailed)
	}
	return out
}

// assertDeclared fails the test for every move p names from phase from
// that the state table does not declare.
func assertDeclared(t *testing.T, what string, from model.Phase, p plan) {
	t.Helper()
	for _, to := range successors(p) {
		assert.NoError(t, checkTransition(from, to), "%s: plan %s (%q) names a transition the state table lacks", what, p.Op, p.Reason)
	}
}

// TestTransitionsDeclared runs every plan decide and decideCallback
// produce for their table rows and for an enumeration of the inputs they
// branch on, and the provision action's from every phase, and fails when
// a plan names a transition that is not in allowed.
func TestTransitionsDeclared(t *testing.T) {
	t.Run("decide rows", func(t *testing.T) {
		for _, tc := range decideCases() {
			v := decideView(tc)
			assertDeclared(t, tc.name, v.M.Status.Phase, decide(v))
		}
	})
	t.Run("decide enumeration", func(t *testing.T) {
		seen := map[string]bool{}
		n := 0
		enumerateViews(func(what func() string, v view) {
			n++
			p := decide(v)
			for _, to := range successors(p) {
				// One report per undeclared move, with the first view that
				// makes it, rather than thousands of the same.
				key := fmt.Sprintf("%s→%s", fromPhase(v.M.Status.Phase), to)
				if checkTransition(v.M.Status.Phase, to) != nil && !seen[key] {
					seen[key] = true
					assertDeclared(t, what(), v.M.Status.Phase, p)
				}
			}
		})
		require.Greater(t, n, 10000, "the enumeration covers too few views to mean anything")
	})
	t.Run("decideCallback rows", func(t *testing.T) {
		for _, tc := range callbackCases() {
			m := tc.m
			assertDeclared(t, tc.name, m.Status.Phase, decideCallback(&m, tc.report).plan)
		}
	})
	t.Run("decideCallback enumeration", func(t *testing.T) {
		for mname, m := range callbackMachines() {
			for rname, report := range callbackReports {
				assertDeclared(t, mname+", report "+rname, m.Status.Phase, decideCallback(&m, report).plan)
			}
		}
	})
	t.Run("provision action", func(t *testing.T) {
		for _, ph := range allPhases() {
			assertDeclared(t, "provision action from "+string(fromPhase(ph)), ph, provisionAction())
		}
	})
}

// TestStateTableHasNoDeadEntries checks the other direction: every move
// the table declares is one some plan makes, so the table does not allow
// more than the code does.
func TestStateTableHasNoDeadEntries(t *testing.T) {
	made := map[[2]model.Phase]bool{}
	record := func(from model.Phase, p plan) {
		for _, to := range successors(p) {
			made[[2]model.Phase{fromPhase(from), to}] = true
		}
	}
	enumerateViews(func(_ func() string, v view) { record(v.M.Status.Phase, decide(v)) })
	for _, tc := range decideCases() {
		v := decideView(tc)
		record(v.M.Status.Phase, decide(v))
	}
	for _, m := range callbackMachines() {
		for _, report := range callbackReports {
			record(m.Status.Phase, decideCallback(&m, report).plan)
		}
	}
	for _, ph := range allPhases() {
		record(ph, provisionAction())
	}
	for from, tos := range allowed {
		for _, to := range tos {
			assert.True(t, made[[2]model.Phase{from, to}], "%s → %s is declared but no plan makes it", from, to)
		}
	}
}

func allPhases() []model.Phase {
	out := []model.Phase{""}
	for _, ph := range api.MachinePhases {
		out = append(out, model.Phase(ph))
	}
	return out
}

// enumerateViews calls yield with a view (and its description, made only
// when asked for) for every combination of the
// inputs decide branches on: phase and the steps a run reaches in it,
// run progress, desired state, deletion, config drive, adopt, MACs, spec
// version, past installs, wipe profile and the NICs the BMC reports.
func enumerateViews(yield func(what func() string, v view)) {
	now := decideNow
	runSteps := []model.Step{model.StepNone, model.StepSettingBoot, model.StepPoweringOn, model.StepWaitingPXE,
		model.StepBootingInstaller, model.StepInstalling}
	steps := map[model.Phase][]model.Step{
		model.PhaseProvisioning: append(slices.Clone(runSteps), model.StepFinishing, model.StepImageWritten, model.StepBootingOS),
		// A wipe or clean run's callback ends it at powering_off: it never
		// reaches the install's last steps.
		model.PhaseDeprovisioning: append(slices.Clone(runSteps), model.StepPoweringOff),
	}
	runs := []struct {
		name string
		run  func() *model.Run
	}{
		{"no run", func() *model.Run { return nil }},
		{"fresh run", func() *model.Run { return &model.Run{ID: "r1", Profile: "os", ProfileVersion: 2, ParamsHash: "h2"} }},
		{"run in its deadline", func() *model.Run {
			return &model.Run{ID: "r1", Profile: "os", ProfileVersion: 2, ParamsHash: "h2", StepDeadline: now.Add(time.Minute), PowerOns: 1}
		}},
		{"run past its deadline", func() *model.Run {
			return &model.Run{ID: "r1", Profile: "os", ProfileVersion: 2, ParamsHash: "h2", StepDeadline: now.Add(-time.Minute), PowerOns: 1}
		}},
		{"run past its deadline, retries used", func() *model.Run {
			return &model.Run{ID: "r1", Profile: "os", ProfileVersion: 2, ParamsHash: "h2", StepDeadline: now.Add(-time.Minute), PowerOns: 4, Attempts: 3}
		}},
		{"signalled run", func() *model.Run {
			return &model.Run{ID: "r1", Profile: "os", ProfileVersion: 2, ParamsHash: "h2", StepDeadline: now.Add(-time.Minute), PowerOns: 1,
				Signals: map[model.Signal]time.Time{model.SignalPXERequested: now, model.SignalKernelFetched: now}}
		}},
		{"called-back run", func() *model.Run {
			return &model.Run{ID: "r1", Profile: "os", ProfileVersion: 2, ParamsHash: "h2", CallbackAt: now, TokenUsed: true, PowerOns: 1}
		}},
		{"run that does not render", func() *model.Run {
			return &model.Run{ID: "r1", Profile: "os", ProfileVersion: 2, ParamsHash: "h2", RenderError: "bad template"}
		}},
		{"run of an older target", func() *model.Run {
			return &model.Run{ID: "r1", Profile: "os", ProfileVersion: 1, ParamsHash: "h1", StepDeadline: now.Add(time.Minute)}
		}},
	}
	for _, ph := range allPhases() {
		phSteps := steps[ph]
		if phSteps == nil {
			phSteps = []model.Step{model.StepNone}
		}
		for _, step := range phSteps {
			for _, rn := range runs {
				for _, state := range []model.DesiredState{model.StateAvailable, model.StateProvisioned, model.StateOff} {
					for bits := range 1 << 8 {
						bit := func(i int) bool { return bits&(1<<i) != 0 }
						m := &model.Machine{Name: "m1", Version: 2, State: state, Adopt: bit(0), Run: rn.run(),
							Status: model.Status{Phase: ph, Step: step, ObservedVersion: 2, PhaseSince: now.Add(-time.Hour),
								Inventory: &model.Inventory{CollectedAt: now}}}
						if bit(1) {
							m.DeletionRequested = now
						}
						if bit(2) {
							m.Status.CleanPending = model.WipeConfigDrive
						}
						if bit(3) {
							m.MACs = []string{"52:54:00:00:00:01"}
						}
						if bit(4) {
							m.Version = 3
						}
						if bit(5) {
							m.Status.ProvisionedAt = now.Add(-time.Hour)
							m.Status.ProvisionedProfile, m.Status.ProvisionedProfileVersion, m.Status.ProvisionedParamsHash = "os", 1, "h1"
						}
						v := view{M: m, Target: target{Profile: "os", Version: 2, ParamsHash: "h2"}, Gate: gate{Open: true}, Now: now,
							Timeouts: StepTimeouts{WaitPXE: time.Minute, BootInstaller: time.Minute, Install: time.Minute, Retries: 3},
							Clean:    target{Profile: "os", Version: 2, Clean: model.WipeConfigDrive}, PollEvery: time.Minute}
						if bit(6) {
							v.Wipe, v.WipeVersion = "wipe", 1
						}
						if bit(7) {
							m.Status.Inventory.NICs = []model.NIC{{MAC: "52:54:00:00:00:09"}}
						}
						yield(func() string {
							return fmt.Sprintf("%s/%s, %s, desired %s, inputs %08b", fromPhase(ph), orDash(string(step)), rn.name, state, bits)
						}, v)
					}
				}
			}
		}
	}
}

func TestCheckTransition(t *testing.T) {
	for _, tc := range []struct {
		name     string
		from, to model.Phase
		ok       bool
	}{
		{name: "declared", from: model.PhaseAvailable, to: model.PhaseProvisioning, ok: true},
		{name: "a new machine counts as registering", from: "", to: model.PhaseInspecting, ok: true},
		{name: "staying in a phase", from: model.PhaseProvisioning, to: model.PhaseProvisioning, ok: true},
		{name: "undeclared", from: model.PhaseFailed, to: model.PhaseProvisioned},
		{name: "undeclared from a new machine", from: "", to: model.PhaseProvisioned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkTransition(tc.from, tc.to)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, errUndeclared)
			assert.Contains(t, err.Error(), string(fromPhase(tc.from))+" → "+string(tc.to))
		})
	}
}

func TestStateTableNamesKnownPhases(t *testing.T) {
	for from, tos := range allowed {
		require.Contains(t, api.MachinePhases, api.MachinePhase(from))
		for _, to := range tos {
			require.Contains(t, api.MachinePhases, api.MachinePhase(to), "from %s", from)
			require.NotEqual(t, from, to, "staying in a phase needs no entry")
		}
	}
}

// TestCommitRefusesUndeclaredTransition checks the runtime guard: a
// status write along an undeclared transition is refused and the stored
// machine keeps its phase.
func TestCommitRefusesUndeclaredTransition(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "agent.db"), store.BoltOptions{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	r := New(Config{Logger: slog.New(slog.DiscardHandler)}, st, nil)
	ctx := context.Background()
	_, err = st.CreateMachine(ctx, &model.Machine{Name: "m1", State: model.StateAvailable,
		BMC: model.BMC{Endpoint: "https://bmc.example", Username: "u", Password: "p"}})
	require.NoError(t, err)
	m, err := st.UpdateMachine(ctx, "m1", func(x *model.Machine) (bool, error) {
		x.Status.Phase = model.PhaseFailed
		return false, nil
	})
	require.NoError(t, err)

	_, err = r.commitErr(ctx, m, func(x *model.Machine) { setPhase(x, model.PhaseProvisioned, model.StepNone, time.Now()) })
	require.ErrorIs(t, err, errUndeclared)
	got, err := st.GetMachine(ctx, "m1")
	require.NoError(t, err)
	assert.Equal(t, model.PhaseFailed, got.Status.Phase)

	_, err = r.commitErr(ctx, m, func(x *model.Machine) { setPhase(x, model.PhaseInspecting, model.StepNone, time.Now()) })
	require.NoError(t, err)
	got, err = st.GetMachine(ctx, "m1")
	require.NoError(t, err)
	assert.Equal(t, model.PhaseInspecting, got.Status.Phase)
}
