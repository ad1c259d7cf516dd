package provision_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	. "github.com/openbaremetal/terraform-provider-baremetal/internal/provision"
)

// stepRankOf orders a provisioning machine's phases as its events record
// them; a crash may lose the event of the last write (as a kill would) but
// never reorders them.
var stepRankOf = map[string]int{
	"inspecting": 1, "available": 2, "provisioning/setting_boot": 3, "provisioning/powering_on": 4,
	"provisioning/waiting_pxe": 5, "provisioning/booting_installer": 6, "provisioning/installing": 7,
	"provisioning/finishing": 8, "provisioned": 9,
}

// TestCrashAndRestart kills the agent (in-process: Run's context ends in
// the middle of steps, nothing is cleaned up, the bolt file is closed only
// so a new agent can open it) three times while 20 machines provision, and
// restarts it on the same file each time.
func TestCrashAndRestart(t *testing.T) {
	const n = 20
	e := newEnv(t, envOpts{machines: n, cfg: func(c *Config) { c.Workers = 4 }})
	for _, name := range e.lab.Names() {
		e.update(name, func(m *model.Machine) { m.State = model.StateProvisioned })
	}
	ctx := context.Background()
	progress := func() int {
		total := 0
		for _, name := range e.lab.Names() {
			evs, err := e.st.ListEvents(ctx, name, 0, 1000)
			must(t, err)
			total += len(phaseTrail(evs))
		}
		return total
	}
	full := n * len(stepRankOf)
	midRun := 0
	e.start()
	for i, frac := range []float64{0.15, 0.4, 0.7} {
		want := int(frac * float64(full))
		e.await(fmt.Sprintf("progress %d/%d before crash %d", want, full, i+1), 60*time.Second, func() (bool, string) {
			p := progress()
			return p >= want, fmt.Sprint(p)
		})
		ms, err := e.st.ListMachines(ctx)
		must(t, err)
		counts := map[string]int{}
		for _, m := range ms {
			counts[PhaseString(m)]++
			if m.Status.Phase == model.PhaseProvisioning {
				midRun++
			}
		}
		t.Logf("crash %d: %v", i+1, counts)
		e.crash()
		e.open()
		e.start()
	}
	if midRun == 0 {
		t.Fatal("no crash hit a machine in the middle of its run: the test proved nothing")
	}
	e.awaitAll(model.PhaseProvisioned, 60*time.Second)

	resets := map[string][]time.Time{}
	for _, r := range e.lab.Requests() {
		if r.Method == "POST" && strings.HasSuffix(r.Path, "/Actions/ComputerSystem.Reset") && r.Status < 300 {
			resets[r.System] = append(resets[r.System], r.Start)
		}
	}
	for _, name := range e.lab.Names() {
		m := e.machine(name)
		if m.Run == nil || m.Run.CallbackAt.IsZero() || !m.Run.TokenUsed {
			t.Fatalf("%s: run %+v", name, m.Run)
		}
		// No power action after the callback: the installed machine was
		// never cycled again, whatever the crashes interrupted.
		for _, at := range resets[name] {
			if at.After(m.Run.CallbackAt) {
				t.Errorf("%s: power action at %s, after its callback at %s", name, at, m.Run.CallbackAt)
			}
		}
		if c := e.lab.System(name).PowerOnCount(); c != 1 {
			t.Errorf("%s: powered on %d times", name, c)
		}
		trail := e.awaitTrail(name, "provisioned")
		last := 0
		for _, s := range trail {
			r, ok := stepRankOf[s]
			if !ok || r <= last {
				t.Errorf("%s: events out of order: %v", name, trail)
				break
			}
			last = r
		}
		if last != stepRankOf["provisioned"] {
			t.Errorf("%s: trail %v", name, trail)
		}
	}
}
