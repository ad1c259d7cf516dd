package provision_test

import (
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	. "github.com/openbaremetal/terraform-provider-baremetal/internal/provision"
)

// TestBMCFaults injects each kind of BMC misbehaviour into an inventoried
// machine as it is asked to provision. With recovery the fault is healed
// once the reconciler has reported it (last_error set, retrying), and the
// machine must end provisioned with last_error cleared; without, it must
// fail with a last_error that says what went wrong.
func TestBMCFaults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fault   lab.Fault
		recover bool
		want    []string // in last_error
	}{
		{"boot override reverts, then sticks", lab.Fault{RevertBootOverride: true}, true, []string{"setting the boot override to network"}},
		{"boot override always reverts", lab.Fault{RevertBootOverride: true}, false,
			[]string{"accepted the override but reverted BootSourceOverrideTarget", "while setting the boot override to network (PXE)", "retried 3 times"}},
		{"power actions ignored, then obeyed", lab.Fault{IgnorePower: true}, true, []string{"powering on"}},
		{"power actions always ignored", lab.Fault{IgnorePower: true}, false,
			[]string{"still reports PowerState", "while powering on", "retried 3 times"}},
		{"BMC too slow, then fast", lab.Fault{Latency: 1500 * time.Millisecond}, true, []string{"no answer within 500ms"}},
		{"power state lies for a while", lab.Fault{LiePowerStateFor: 300 * time.Millisecond}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{machines: 1, cfg: func(c *Config) {
				c.Timeouts.SetBoot = 500 * time.Millisecond
				c.RetryBase, c.RetryMax = 300*time.Millisecond, 600*time.Millisecond
			}})
			n := e.lab.Names()[0]
			e.start()
			e.awaitPhase(n, model.PhaseAvailable, 10*time.Second)
			e.lab.SetFault(n, tc.fault)
			e.update(n, func(m *model.Machine) { m.State = model.StateProvisioned })
			if tc.want == nil {
				m := e.awaitPhase(n, model.PhaseProvisioned, 20*time.Second)
				if c := e.lab.System(n).PowerOnCount(); c != 1 || m.Run.PowerOns != 1 {
					t.Fatalf("powered on %d times (run says %d), want 1", c, m.Run.PowerOns)
				}
				return
			}
			if tc.recover {
				e.await("the fault reported while retrying", 20*time.Second, func() (bool, string) {
					m := e.machine(n)
					return m.Status.Phase == model.PhaseProvisioning && strings.Contains(m.Status.LastError, "retry"), describe(m)
				})
				le := e.machine(n).Status.LastError
				for _, w := range tc.want {
					if !strings.Contains(le, w) {
						t.Errorf("last_error while retrying %q does not say %q", le, w)
					}
				}
				e.lab.SetFault(n, lab.Fault{})
				m := e.awaitPhase(n, model.PhaseProvisioned, 20*time.Second)
				if m.Status.LastError != "" {
					t.Fatalf("last_error %q after recovery", m.Status.LastError)
				}
				return
			}
			m := e.awaitPhase(n, model.PhaseFailed, 30*time.Second)
			for _, w := range append(tc.want, "BMC "+e.labURL) {
				if !strings.Contains(m.Status.LastError, w) {
					t.Errorf("last_error %q does not say %q", m.Status.LastError, w)
				}
			}
		})
	}
}

// TestAtMostOnePowerCyclePerBootAttempt injects, for good, each fault the
// lab has into a machine asked to provision, and counts at the BMC the
// power-ons and restarts it carried out: never more than one per boot
// attempt of the run, whether the machine ends provisioned or failed.
func TestAtMostOnePowerCyclePerBootAttempt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault lab.Fault
	}{
		{"latency past the request timeout", lab.Fault{Latency: 2500 * time.Millisecond}},
		{"503 for ever", lab.Fault{Fail503Next: 1 << 30}},
		{"refused login", lab.Fault{RefuseLogin: true}},
		{"ignored power actions", lab.Fault{IgnorePower: true}},
		{"reverting boot override", lab.Fault{RevertBootOverride: true}},
		{"power state lies", lab.Fault{LiePowerStateFor: time.Hour}},
		{"slow reset", lab.Fault{SlowReset: 3 * time.Second}},
		{"mode reverts to Legacy", lab.Fault{RevertModeToLegacy: true}},
		{"session limit", lab.Fault{SessionLimit: 1}},
		{"hang", lab.Fault{Hang: true}},
		{"bad JSON", lab.Fault{BadJSON: true}},
		{"lockout after 2 failures", lab.Fault{LockoutAfter: 2}},
		{"duplicate drive links", lab.Fault{DuplicateDriveLinks: 32}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOpts{machines: 1, cfg: func(c *Config) { c.Timeouts.WaitPXE = 3 * time.Second }})
			n := e.lab.Names()[0]
			e.start()
			e.awaitPhase(n, model.PhaseAvailable, 10*time.Second)
			e.lab.SetFault(n, tc.fault)
			e.update(n, func(m *model.Machine) { m.State = model.StateProvisioned })
			var m *model.Machine
			e.await("provisioned or failed", time.Minute, func() (bool, string) {
				m = e.machine(n)
				return m.Status.Phase == model.PhaseProvisioned || m.Status.Phase == model.PhaseFailed, describe(m)
			})
			attempts := 0
			if m.Run != nil {
				attempts = m.Run.Attempts + 1
			}
			ons := e.lab.System(n).PowerOnCount()
			t.Logf("%s: %d power-ons for %d boot attempts", m.Status.Phase, ons, attempts)
			if ons > attempts {
				t.Fatalf("%d power-ons for %d boot attempts (%s)", ons, attempts, describe(m))
			}
		})
	}
}
