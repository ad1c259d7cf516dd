package reliability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

// soak reports whether the long versions run (make soak).
func soak() bool { return os.Getenv("BAREMETAL_SOAK") != "" }

// phaseRank orders the phase/step trail of a machine asked to provision.
var phaseRank = map[string]int{
	"registering": 0, "inspecting": 1, "available": 2,
	"provisioning/setting_boot": 3, "provisioning/powering_on": 4, "provisioning/waiting_pxe": 5,
	"provisioning/booting_installer": 6, "provisioning/installing": 7, "provisioning/finishing": 8,
	"provisioned": 9,
}

// TestCrashSafetyRealAgent provisions memory-lab machines while the real
// agent process is SIGKILLed at random moments and restarted on the same
// data dir. make test runs 12 machines and 5 kills; make soak
// (BAREMETAL_SOAK=1) runs 50 machines and 8 kills.
func TestCrashSafetyRealAgent(t *testing.T) {
	n, kills := 12, 5
	if soak() {
		n, kills = 50, 8
	}
	s := newSite(t, siteOpts{machines: n, agentArgs: []string{
		// A small provisioning limit keeps machines mid-run long enough for
		// a kill to land in the middle of steps; short step timeouts let a
		// machine whose PXE request hit a dead agent be cycled again soon.
		"--provisioning-limit", "1", "--wait-pxe-timeout", "4s", "--install-timeout", "20s",
		"--step-retries", "5", "--bmc-request-timeout", "5s",
	},
		// Slow BMCs make a batch take longer than the kill window even on a
		// quiet machine, where the memory lab alone provisions a batch in
		// tens of milliseconds and every kill could land after it.
		labArgs: []string{"--latency", "30ms"},
	})
	ctx := context.Background()
	s.profile("crash")
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	t.Logf("kill schedule seed %d", seed)
	// Machines arrive in one batch per kill, so every kill finds runs in
	// flight (with the slow BMCs a batch takes about a second).
	midRun := 0
	next := 0
	for k := range kills {
		for end := (k + 1) * n / kills; next < end; next++ {
			if _, err := s.client.CreateMachine(ctx, s.machineRequest(next, "crash", "provisioned")); err != nil {
				t.Fatalf("registering %s: %v", s.inventory[next].Name, err)
			}
		}
		// Once a machine of the batch is mid-run, a random moment within the
		// time a batch takes to provision, so the kill lands at a random step.
		awaitT(t, "a machine of the batch provisioning", 10*time.Second, func() (bool, string) {
			ms, err := s.client.ListMachines(ctx, client.MachineFilter{Phase: api.PhaseProvisioning})
			return err == nil && len(ms) > 0, fmt.Sprint(err)
		})
		delay := time.Duration(rng.IntN(300)) * time.Millisecond
		time.Sleep(delay) // the random moment itself is what is under test
		counts := map[string]int{}
		if ms, err := s.client.ListMachines(ctx, client.MachineFilter{}); err == nil {
			for _, m := range ms {
				counts[string(m.Phase)+"/"+string(m.Step)]++
				if m.Phase == api.PhaseProvisioning {
					midRun++
				}
			}
		}
		s.kill()
		t.Logf("kill %d after %s: %v", k+1, delay, counts)
		// The store must open cleanly every time: start waits for /readyz,
		// which needs the store, the listeners and the reconciler.
		s.start()
	}
	if midRun == 0 {
		t.Fatal("no kill landed while a machine was provisioning: the test proved nothing (try again; the schedule is random)")
	}

	awaitT(t, "every machine provisioned", time.Duration(n)*6*time.Second+60*time.Second, func() (bool, string) {
		ms, err := s.client.ListMachines(ctx, client.MachineFilter{})
		if err != nil {
			return false, err.Error()
		}
		done := 0
		var notDone []string
		for _, m := range ms {
			if m.Phase == api.PhaseProvisioned {
				done++
			} else {
				notDone = append(notDone, fmt.Sprintf("%s:%s/%s %s", m.Name, m.Phase, m.Step, m.LastError))
			}
		}
		return done == n && len(ms) == n, fmt.Sprintf("%d/%d provisioned; %v", done, len(ms), notDone)
	})

	retried := 0
	for _, lm := range s.inventory {
		if runs := checkMachineHistory(t, lm.Name, s.events(ctx, lm.Name)); runs > 1 {
			retried++
		}
	}
	t.Logf("%d machines, %d kills (%d machine-observations mid-run); %d machines needed more than one run",
		n, kills, midRun, retried)

	// The last kill's restart must also stop cleanly: the store closes.
	s.stop()
	if !strings.Contains(s.agentLog.String(), "store closed") {
		t.Error("the agent's final SIGTERM did not close the store")
	}
}

// checkMachineHistory asserts one machine's events: strictly increasing
// sequence numbers, a legal phase trail ending provisioned, no new run
// after an accepted callback, and no power-on after the final run's
// installer called back. A status change and the events that explain it
// are written in one transaction, so a kill loses neither alone. It
// returns the number of runs.
func checkMachineHistory(t *testing.T, name string, evs []api.Event) (runs int) {
	t.Helper()
	var last uint64
	for _, e := range evs {
		if e.Seq <= last {
			t.Errorf("%s: event seq %d after %d", name, e.Seq, last)
		}
		last = e.Seq
	}
	lastRun := -1
	callbackSeen := false
	for i, e := range evs {
		switch e.Type {
		case api.EventRunStarted:
			runs++
			lastRun = i
			if callbackSeen {
				t.Errorf("%s: a new run (%s) started after an accepted callback", name, e.Message)
			}
		case api.EventCallbackReceived:
			callbackSeen = true
		}
	}
	if lastRun < 0 {
		t.Errorf("%s: no run_started event", name)
		return runs
	}
	done := -1
	for i := lastRun; i < len(evs); i++ {
		if evs[i].Type == api.EventCallbackReceived {
			done = i
			break
		}
	}
	if done < 0 {
		t.Errorf("%s: the final run has no callback_received event", name)
		return runs
	}
	callbackAt := evs[done].Time
	for _, e := range evs[done:] {
		if e.Type != api.EventPowerAction || (e.Data["action"] != "On" && e.Data["action"] != "ForceRestart") {
			continue
		}
		// A power-on is recorded when the BMC confirms it; one issued
		// before the callback is the run's own boot, not a second one.
		issued, err := time.Parse(time.RFC3339Nano, e.Data["issued_at"])
		if err != nil || !issued.Before(callbackAt) {
			t.Errorf("%s: power %s issued at %q (seq %d), after its installer called back at %s", name, e.Data["action"], e.Data["issued_at"], e.Seq, callbackAt)
		}
	}
	var trail []string
	prev := -1
	for _, e := range evs {
		if e.Type != api.EventPhaseChanged {
			continue
		}
		s := string(e.Phase)
		if e.Step != "" {
			s += "/" + string(e.Step)
		}
		trail = append(trail, s)
		r, ok := phaseRank[s]
		// A retry goes back to a power step; nothing else moves backwards.
		retry := s == "provisioning/setting_boot" || s == "provisioning/powering_on"
		if !ok || (r <= prev && !retry) {
			t.Errorf("%s: illegal phase order: %v", name, trail)
			break
		}
		prev = r
	}
	if len(trail) == 0 || trail[len(trail)-1] != string(api.PhaseProvisioned) {
		t.Errorf("%s: trail %v does not end provisioned", name, trail)
	}
	return runs
}
