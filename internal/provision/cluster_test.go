package provision_test

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// outIntervals returns, per machine, the event Seq ranges during which it
// was out: from a run_started event to the next provisioned transition
// (or open-ended). Only runs started after seq `after` count.
func outIntervals(e *env, names []string, after uint64) map[string][][2]uint64 {
	out := map[string][][2]uint64{}
	for _, n := range names {
		var start uint64
		for _, ev := range e.events(n) {
			if ev.Seq <= after {
				continue
			}
			switch {
			case ev.Type == model.EventRunStarted && start == 0:
				start = ev.Seq
			case ev.Type == model.EventPhaseChanged && ev.Phase == model.PhaseProvisioned && start != 0:
				out[n] = append(out[n], [2]uint64{start, ev.Seq})
				start = 0
			}
		}
		if start != 0 {
			out[n] = append(out[n], [2]uint64{start, ^uint64(0)})
		}
	}
	return out
}

// maxOut is the most intervals open at once.
func maxOut(iv map[string][][2]uint64) int {
	type edge struct {
		seq   uint64
		delta int
	}
	var edges []edge
	for _, list := range iv {
		for _, r := range list {
			edges = append(edges, edge{r[0], +1}, edge{r[1], -1})
		}
	}
	// At equal seqs close before open; seqs are unique per event anyway.
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].seq != edges[j].seq {
			return edges[i].seq < edges[j].seq
		}
		return edges[i].delta < edges[j].delta
	})
	cur, most := 0, 0
	for _, ed := range edges {
		cur += ed.delta
		most = max(most, cur)
	}
	return most
}

func TestClusterRoleOrderAndRollout(t *testing.T) {
	e := newEnv(t, envOpts{machines: 4})
	ctx := context.Background()
	e.profile(&model.BootProfile{Name: "cp-os", Kernel: "vmlinuz", Cmdline: "baremetal.templates=user-data",
		Templates: map[string]string{"user-data": "role: control-plane\nname: {{ .Machine.Name }}\n"}})
	e.profile(&model.BootProfile{Name: "worker-os", Kernel: "vmlinuz", Cmdline: "baremetal.templates=user-data",
		Templates: map[string]string{"user-data": "role: worker\njoin: {{ .Cluster.ControlPlane }}:6443\ntoken-file: {{ .Params.join }}\n"}})
	names := e.lab.Names()
	cp, workers := names[0], names[1:]
	members := []model.ClusterMember{{Machine: cp, Role: "control-plane"}}
	for _, w := range workers {
		members = append(members, model.ClusterMember{Machine: w, Role: "worker"})
	}
	_, err := e.st.CreateCluster(ctx, &model.Cluster{Name: "k8s", Members: members,
		Roles:   []model.ClusterRole{{Name: "control-plane", BootProfile: "cp-os"}, {Name: "worker", BootProfile: "worker-os"}},
		Params:  map[string]string{"join": "/etc/join"},
		Rollout: model.Rollout{MaxUnavailable: 1}})
	must(t, err)
	for _, mem := range members {
		// The API's cluster handlers set membership as a status write.
		_, err := e.st.UpdateMachine(ctx, mem.Machine, func(m *model.Machine) (bool, error) {
			m.Cluster, m.Role = "k8s", mem.Role
			return false, nil
		})
		must(t, err)
		e.update(mem.Machine, func(m *model.Machine) { m.State = model.StateProvisioned })
	}
	began := time.Now()
	e.start()
	e.awaitAll(model.PhaseProvisioned, 40*time.Second)
	t.Logf("cluster provisioned after %s", time.Since(began).Round(time.Millisecond))
	for _, n := range names {
		e.awaitTrail(n, "provisioned")
	}

	// Workers started only after the control plane was provisioned.
	var cpDone uint64
	for _, ev := range e.events(cp) {
		if ev.Type == model.EventPhaseChanged && ev.Phase == model.PhaseProvisioned {
			cpDone = ev.Seq
		}
	}
	cpAddr := e.machine(cp).Status.Addresses[0]
	for _, w := range workers {
		for _, ev := range e.events(w) {
			if ev.Type == model.EventRunStarted && ev.Seq < cpDone {
				t.Fatalf("worker %s started its run (event %d) before the control plane was provisioned (event %d)", w, ev.Seq, cpDone)
			}
		}
		m := e.machine(w)
		if m.Run.Profile != "worker-os" || m.Status.ProvisionedProfile != "worker-os" {
			t.Fatalf("%s installed %s, want its role's profile", w, m.Status.ProvisionedProfile)
		}
		res, _ := e.lab.System(w).LastPXE()
		if res == nil || len(res.Templates) != 1 || !strings.Contains(res.Templates[0].Body, "join: "+cpAddr+":6443\n") ||
			!strings.Contains(res.Templates[0].Body, "token-file: /etc/join") {
			t.Fatalf("%s rendered %+v, want the control plane's address %s and the cluster params", w, res, cpAddr)
		}
	}
	e.await("cluster ready", 10*time.Second, func() (bool, string) {
		c, err := e.st.GetCluster(ctx, "k8s")
		must(t, err)
		return c.Status.Phase == string(api.ClusterReady), c.Status.Phase + ": " + c.Status.Message
	})

	// A workers' profile change rolls through them one at a time; the
	// control plane is untouched.
	var mark uint64
	for _, n := range names {
		for _, ev := range e.events(n) {
			mark = max(mark, ev.Seq)
		}
	}
	cpRun := e.machine(cp).Run.ID
	_, err = e.st.UpdateProfile(ctx, "worker-os", func(p *model.BootProfile) error {
		p.Templates["user-data"] += "generation: 2\n"
		return nil
	})
	must(t, err)
	e.await("workers re-provisioned", 60*time.Second, func() (bool, string) {
		var not []string
		for _, w := range workers {
			m := e.machine(w)
			if m.Status.Phase != model.PhaseProvisioned || m.Status.ProvisionedProfileVersion != 2 {
				not = append(not, describe(m))
			}
		}
		return len(not) == 0, strings.Join(not, "; ")
	})
	t.Logf("rollout done after %s", time.Since(began).Round(time.Millisecond))
	for _, w := range workers {
		e.awaitTrail(w, "provisioned")
	}
	iv := outIntervals(e, workers, mark)
	for _, w := range workers {
		if len(iv[w]) != 1 {
			t.Fatalf("%s: out intervals %v, want exactly one re-provision", w, iv[w])
		}
	}
	if most := maxOut(iv); most != 1 {
		t.Fatalf("%d workers out at once during the rollout (intervals %v), max_unavailable is 1", most, iv)
	}
	if e.machine(cp).Run.ID != cpRun {
		t.Fatal("the control plane was re-provisioned by a workers' profile change")
	}

	// A member that fails pauses the rollout and the cluster says so.
	mark = 0
	for _, n := range names {
		for _, ev := range e.events(n) {
			mark = max(mark, ev.Seq)
		}
	}
	for _, w := range workers {
		e.lab.SetFault(w, lab.Fault{RefuseLogin: true})
	}
	_, err = e.st.UpdateProfile(ctx, "worker-os", func(p *model.BootProfile) error {
		p.Templates["user-data"] += "generation: 3\n"
		return nil
	})
	must(t, err)
	var failed string
	e.await("a worker failed", 30*time.Second, func() (bool, string) {
		for _, w := range workers {
			if m := e.machine(w); m.Status.Phase == model.PhaseFailed {
				failed = w
				return true, ""
			}
		}
		return false, ""
	})
	t.Logf("worker failed after %s", time.Since(began).Round(time.Millisecond))
	e.await("cluster paused", 10*time.Second, func() (bool, string) {
		c, err := e.st.GetCluster(ctx, "k8s")
		must(t, err)
		return c.Status.Phase == string(api.ClusterPaused) && strings.Contains(c.Status.Message, failed), c.Status.Phase + ": " + c.Status.Message
	})
	// Give the reconciler every chance to start another worker (it must not).
	time.Sleep(300 * time.Millisecond)
	iv = outIntervals(e, workers, mark)
	if len(iv) != 1 || len(iv[failed]) != 1 {
		t.Fatalf("runs started after the failure: %v (only %s should have started)", iv, failed)
	}
	for _, w := range workers {
		if w != failed && e.machine(w).Status.Phase != model.PhaseProvisioned {
			t.Fatalf("%s left provisioned during a paused rollout: %s", w, describe(e.machine(w)))
		}
	}
}
