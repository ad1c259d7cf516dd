package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

func TestAuthMatrix(t *testing.T) {
	e := newEnv(t)
	e.createMachine(machineReq("m1"))
	body := machineReq("m1")
	body.BMC.Password = ""
	cases := []struct {
		name, token, method, path string
		body                      any
		want                      int
	}{
		{"no token read", "", "GET", api.PathMachines, nil, 401},
		{"wrong token read", "wrong-token-0123456789abcdef", "GET", api.PathMachines, nil, 401},
		{"wrong token write", "wrong-token-0123456789abcdef", "POST", api.PathMachines, machineReq("m2"), 401},
		{"read-only read", roToken, "GET", api.PathMachines, nil, 200},
		{"read-only read one", roToken, "GET", "/v1/machines/m1", nil, 200},
		{"read-only create", roToken, "POST", api.PathMachines, machineReq("m3"), 403},
		{"read-only update", roToken, "PUT", "/v1/machines/m1", body, 403},
		{"read-only delete", roToken, "DELETE", "/v1/machines/m1", nil, 403},
		{"read-write read", rwToken, "GET", api.PathMachines, nil, 200},
		{"read-write update", rwToken, "PUT", "/v1/machines/m1", body, 200},
		{"no token info", "", "GET", api.PathInfo, nil, 401},
		{"no token openapi", "", "GET", PathOpenAPI, nil, 401},
		{"no token events", "", "GET", api.PathEvents, nil, 401},
		{"healthz needs no token", "", "GET", api.PathHealthz, nil, 200},
		{"readyz needs no token", "", "GET", api.PathReadyz, nil, 200},
		{"metrics needs no token", "", "GET", api.PathMetrics, nil, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.reqCtx(context.Background(), c.token, c.method, c.path, c.body)
			if r.status != c.want {
				t.Fatalf("status %d, want %d: %s", r.status, c.want, r.body)
			}
			switch c.want {
			case 401:
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("401 without a Bearer WWW-Authenticate header")
				}
				if r.err().Code != api.CodeUnauthorized {
					t.Errorf("code %q", r.err().Code)
				}
			case 403:
				if r.err().Code != api.CodeForbidden {
					t.Errorf("code %q", r.err().Code)
				}
			}
		})
	}
	// Nothing the refused writers sent reached the store.
	for _, n := range []string{"m2", "m3"} {
		e.must(404, e.req("GET", "/v1/machines/"+n, nil))
	}
}

func TestMachineValidation(t *testing.T) {
	e := newEnv(t)
	e.createProfile("debian")
	e.createMachine(func() api.MachineRequest { r := machineReq("taken"); r.MACs = []string{"52:54:00:00:00:99"}; return r }())
	cases := []struct {
		name   string
		mod    func(r *api.MachineRequest)
		status int
		field  string
	}{
		{"bad name", func(r *api.MachineRequest) { r.Name = "Bad_Name!" }, 422, "name"},
		{"missing name", func(r *api.MachineRequest) { r.Name = "" }, 422, "name"},
		{"missing endpoint", func(r *api.MachineRequest) { r.BMC.Endpoint = "" }, 422, "bmc.endpoint"},
		{"endpoint not a URL", func(r *api.MachineRequest) { r.BMC.Endpoint = "10.0.0.5" }, 422, "bmc.endpoint"},
		{"endpoint ftp", func(r *api.MachineRequest) { r.BMC.Endpoint = "ftp://10.0.0.5" }, 422, "bmc.endpoint"},
		{"endpoint with credentials", func(r *api.MachineRequest) { r.BMC.Endpoint = "https://root:" + bmcPassword + "@10.0.0.5" }, 422, "bmc.endpoint"},
		{"ftp endpoint with credentials", func(r *api.MachineRequest) { r.BMC.Endpoint = "ftp://root:" + bmcPassword + "@10.0.0.5" }, 422, "bmc.endpoint"},
		{"unparsable endpoint with credentials", func(r *api.MachineRequest) { r.BMC.Endpoint = "https://root:" + bmcPassword + "@[::1" }, 422, "bmc.endpoint"},
		{"endpoint with a path the BMC client refuses", func(r *api.MachineRequest) { r.BMC.Endpoint = "https://bmc/wrong/path" }, 422, "bmc.endpoint"},
		{"endpoint port out of range", func(r *api.MachineRequest) { r.BMC.Endpoint = "https://bmc:70000" }, 422, "bmc.endpoint"},
		{"missing username", func(r *api.MachineRequest) { r.BMC.Username = "" }, 422, "bmc.username"},
		{"missing password", func(r *api.MachineRequest) { r.BMC.Password = "" }, 422, "bmc.password"},
		{"bad ca", func(r *api.MachineRequest) { r.BMC.CACertPEM = "not a pem" }, 422, "bmc.ca_cert_pem"},
		{"bad mac", func(r *api.MachineRequest) { r.MACs = []string{"52:54:00:00:00:01", "zz"} }, 422, "macs[1]"},
		{"duplicate mac", func(r *api.MachineRequest) { r.MACs = []string{"52:54:00:00:00:01", "52-54-00-00-00-01"} }, 422, "macs[1]"},
		{"mac of another machine", func(r *api.MachineRequest) { r.MACs = []string{"52:54:00:00:00:99"} }, 409, "macs[0]"},
		{"bad state", func(r *api.MachineRequest) { r.State = "running" }, 422, "state"},
		{"missing profile", func(r *api.MachineRequest) { r.BootProfile = "nope" }, 422, "boot_profile"},
		{"provisioned without profile waits for a cluster", func(r *api.MachineRequest) { r.State = "" }, 201, ""},
		{"empty param key", func(r *api.MachineRequest) { r.Params = map[string]string{"": "x"} }, 422, "params"},
		{"taken name", func(r *api.MachineRequest) { r.Name = "taken" }, 409, "name"},
		{"ok provisioned", func(r *api.MachineRequest) {
			r.Name = "m-prov"
			r.State = ""
			r.BootProfile = "debian"
			r.MACs = []string{"52:54:00:AA:BB:CC"}
		}, 201, ""},
		{"ok available", func(r *api.MachineRequest) { r.Name = "m-avail" }, 201, ""},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := machineReq(fmt.Sprintf("m%d", i))
			c.mod(&req)
			r := e.req("POST", api.PathMachines, req)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if c.status >= 400 {
				d := r.err()
				if d.Field != c.field {
					t.Errorf("field %q, want %q (%s)", d.Field, c.field, d.Message)
				}
				if c.status == 422 && d.Code != api.CodeValidation {
					t.Errorf("code %q", d.Code)
				}
			}
		})
	}
	var m api.Machine
	e.must(200, e.req("GET", "/v1/machines/m-prov", nil)).decode(t, &m)
	if m.State != "provisioned" || len(m.MACs) != 1 || m.MACs[0] != "52:54:00:aa:bb:cc" || m.ID != "m-prov" || m.Phase != "registering" {
		t.Errorf("stored machine %+v", m)
	}
	if r := e.req("POST", api.PathMachines, machineReq("Bad_Name!")); !strings.Contains(r.err().Message, model.NameRule) {
		t.Errorf("name error does not explain the rule: %s", r.err().Message)
	}
}

func TestDecodeErrors(t *testing.T) {
	e := newEnv(t)
	big := `{"name":"m1","params":{"x":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}}`
	cases := []struct {
		name, body, ctype string
		status            int
		field             string
	}{
		{"unknown top-level field", `{"name":"m1","colour":"red"}`, "application/json", 400, "colour"},
		{"unknown nested field", `{"name":"m1","bmc":{"endpoint":"https://x","passwd":"p"}}`, "application/json", 400, "bmc.passwd"},
		{"wrong type", `{"name":"m1","macs":"52:54:00:00:00:01"}`, "application/json", 400, "macs"},
		{"nested wrong type", `{"name":"m1","bmc":{"insecure":"yes"}}`, "application/json", 400, "bmc.insecure"},
		{"not an object", `["m1"]`, "application/json", 400, ""},
		{"malformed", `{"name":`, "application/json", 400, ""},
		{"syntax error", `{"name" "m1"}`, "application/json", 400, ""},
		{"empty", ``, "application/json", 400, ""},
		{"trailing data", `{"name":"m1"} {"name":"m2"}`, "application/json", 400, ""},
		{"wrong content type", `name=m1`, "application/x-www-form-urlencoded", 400, ""},
		{"oversize", big, "application/json", 413, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.req("POST", api.PathMachines, c.body, "Content-Type", c.ctype)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			d := r.err()
			if d.Field != c.field {
				t.Errorf("field %q, want %q (%s)", d.Field, c.field, d.Message)
			}
			want := api.CodeBadRequest
			if c.status == 413 {
				want = api.CodeTooLarge
			}
			if d.Code != want {
				t.Errorf("code %q, want %q", d.Code, want)
			}
		})
	}
	r := e.must(400, e.req("POST", api.PathClusters, `{"name":"c","roles":[],"members":[{"machine":"a","role":"r"},{"machine":"b","colour":"red"}]}`))
	if r.err().Field != "members[1].colour" {
		t.Errorf("nested unknown field in a list: %+v", r.err())
	}
	var l api.MachineList
	e.must(200, e.req("GET", api.PathMachines, nil)).decode(t, &l)
	if len(l.Items) != 0 {
		t.Errorf("a refused request created machines: %+v", l.Items)
	}
}

func TestStaleVersionAndPasswordKeep(t *testing.T) {
	e := newEnv(t)
	m := e.createMachine(machineReq("m1"))
	if m.Version != 1 {
		t.Fatalf("version %d", m.Version)
	}
	upd := machineReq("m1")
	upd.BMC.Password = "" // keep
	upd.Params = map[string]string{"disk": "/dev/sda"}
	upd.Version = 1
	var got api.Machine
	e.must(200, e.req("PUT", "/v1/machines/m1", upd)).decode(t, &got)
	if got.Version != 2 || got.Params["disk"] != "/dev/sda" {
		t.Fatalf("after update: %+v", got)
	}
	stored, err := e.store.GetMachine(context.Background(), "m1")
	if err != nil || stored.BMC.Password != bmcPassword {
		t.Fatalf("empty password on update did not keep the stored one (err %v)", err)
	}
	r := e.must(409, e.req("PUT", "/v1/machines/m1", upd)) // version 1 is stale now
	if d := r.err(); d.Code != api.CodeConflict || !strings.Contains(d.Message, "re-read") {
		t.Errorf("stale version answer: %+v", d)
	}
	// The same spec again does not bump the version.
	upd.Version = 2
	e.must(200, e.req("PUT", "/v1/machines/m1", upd)).decode(t, &got)
	if got.Version != 2 {
		t.Errorf("identical PUT bumped the version to %d", got.Version)
	}
	upd.Name = "other"
	if r := e.must(422, e.req("PUT", "/v1/machines/m1", upd)); r.err().Field != "name" {
		t.Errorf("rename: %+v", r.err())
	}
	e.must(404, e.req("PUT", "/v1/machines/nope", machineReq("nope")))

	// Profiles and clusters are versioned the same way.
	p := e.createProfile("p1")
	preq := api.BootProfileRequest{Name: "p1", Kernel: "http://k2", Version: p.Version}
	e.must(200, e.req("PUT", "/v1/boot_profiles/p1", preq))
	e.must(409, e.req("PUT", "/v1/boot_profiles/p1", preq))
	creq := api.ClusterRequest{Name: "c1", Members: []api.ClusterMember{}, Roles: []api.ClusterRole{{Name: "r", BootProfile: "p1"}}}
	e.must(201, e.req("POST", api.PathClusters, creq))
	creq.Version = 1
	e.must(200, e.req("PUT", "/v1/clusters/c1", creq))
	e.must(409, e.req("PUT", "/v1/clusters/c1", creq))
}

func TestLease(t *testing.T) {
	e := newEnv(t)
	e.must(201, e.req("POST", api.PathMachines, machineReq("m1"), api.HeaderLeaseHolder, "run-a"))
	upd := machineReq("m1")
	upd.BMC.Password = ""
	r := e.must(409, e.req("PUT", "/v1/machines/m1", upd, api.HeaderLeaseHolder, "run-b"))
	if msg := r.err().Message; !strings.Contains(msg, `"run-a"`) || !strings.Contains(msg, "2026-01-02T03:06:05Z") {
		t.Errorf("lease conflict should name the holder and expiry: %s", msg)
	}
	e.must(409, e.req("DELETE", "/v1/machines/m1", nil, api.HeaderLeaseHolder, "run-b"))
	// A second run creating the same machine at the same time hears who holds it.
	if msg := e.must(409, e.req("POST", api.PathMachines, machineReq("m1"), api.HeaderLeaseHolder, "run-b")).err(); msg.Field != api.HeaderLeaseHolder || !strings.Contains(msg.Message, `"run-a"`) {
		t.Errorf("concurrent create should name the lease holder: %+v", msg)
	}
	// The holder renews its lease; a writer without a lease is not checked.
	e.clock.Advance(time.Minute)
	e.must(200, e.req("PUT", "/v1/machines/m1", upd, api.HeaderLeaseHolder, "run-a"))
	e.clock.Advance(90 * time.Second) // 2.5 min after the create, 1.5 after the renewal
	e.must(409, e.req("PUT", "/v1/machines/m1", upd, api.HeaderLeaseHolder, "run-b"))
	// A holder that disappears loses the lease when it expires.
	e.clock.Advance(31 * time.Second)
	e.must(200, e.req("PUT", "/v1/machines/m1", upd, api.HeaderLeaseHolder, "run-b"))
	e.must(409, e.req("PUT", "/v1/machines/m1", upd, api.HeaderLeaseHolder, "run-a"))
	stored, _ := e.store.GetMachine(context.Background(), "m1")
	if stored.Lease == nil || stored.Lease.Holder != "run-b" {
		t.Errorf("lease %+v", stored.Lease)
	}
	e.must(400, e.req("PUT", "/v1/machines/m1", upd, api.HeaderLeaseHolder, strings.Repeat("h", 201)))
}

func TestLongPoll(t *testing.T) {
	e := newEnv(t)
	m := e.createMachine(machineReq("m1"))
	ctx := context.Background()

	t.Run("returns at once when already newer", func(t *testing.T) {
		start := time.Now()
		e.must(200, e.req("GET", fmt.Sprintf("/v1/machines/m1?wait=30s&after_revision=%d", m.Revision-1), nil))
		if time.Since(start) > 5*time.Second {
			t.Errorf("took %s", time.Since(start))
		}
	})
	t.Run("wakes on update", func(t *testing.T) {
		type result struct {
			r   resp
			dur time.Duration
		}
		done := make(chan result, 1)
		start := time.Now()
		go func() {
			r := e.req("GET", fmt.Sprintf("/v1/machines/m1?wait=30s&after_revision=%d", m.Revision), nil)
			done <- result{r, time.Since(start)}
		}()
		// The update must land after the poller has subscribed; each try
		// that lands before is answered as a newer revision, equally valid.
		waitFor(t, func() bool { return e.subscribers() > 0 })
		if _, err := e.store.UpdateMachine(ctx, "m1", func(m *model.Machine) (bool, error) {
			m.Status.Phase = model.PhaseInspecting
			return false, nil
		}); err != nil {
			t.Fatal(err)
		}
		res := <-done
		var got api.Machine
		e.must(200, res.r).decode(t, &got)
		if got.Revision <= m.Revision || got.Phase != "inspecting" {
			t.Errorf("woke with %+v", got)
		}
		if res.dur > 20*time.Second {
			t.Errorf("did not wake on the update: %s", res.dur)
		}
		m = got
	})
	t.Run("times out with the current state", func(t *testing.T) {
		start := time.Now()
		var got api.Machine
		e.must(200, e.req("GET", fmt.Sprintf("/v1/machines/m1?wait=300ms&after_revision=%d", m.Revision), nil)).decode(t, &got)
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Errorf("returned after %s, before the wait elapsed", d)
		}
		if got.Revision != m.Revision {
			t.Errorf("revision %d, want %d", got.Revision, m.Revision)
		}
	})
	t.Run("returns on client disconnect", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			r, _ := http.NewRequestWithContext(cctx, "GET", e.http.URL+fmt.Sprintf("/v1/machines/m1?wait=60s&after_revision=%d", m.Revision), nil)
			r.Header.Set("Authorization", "Bearer "+rwToken)
			if res, err := e.http.Client().Do(r); err == nil {
				res.Body.Close()
			}
		}()
		waitFor(t, func() bool { return e.subscribers() > 0 })
		cancel()
		<-done
		// The handler's subscription ends once it sees the disconnect.
		waitFor(t, func() bool { return e.subscribers() == 0 })
	})
	t.Run("404 when deleted while waiting", func(t *testing.T) {
		done := make(chan resp, 1)
		go func() {
			done <- e.req("GET", fmt.Sprintf("/v1/machines/m1?wait=30s&after_revision=%d", m.Revision+100), nil)
		}()
		waitFor(t, func() bool { return e.subscribers() > 0 })
		e.must(204, e.req("DELETE", "/v1/machines/m1?force=true", nil))
		e.must(404, <-done)
	})
	t.Run("bad parameters", func(t *testing.T) {
		if r := e.must(400, e.req("GET", "/v1/machines/m1?wait=soon", nil)); r.err().Field != "wait" {
			t.Errorf("%+v", r.err())
		}
		if r := e.must(400, e.req("GET", "/v1/machines/m1?wait=1s&after_revision=-1", nil)); r.err().Field != "after_revision" {
			t.Errorf("%+v", r.err())
		}
	})
}

// subscribers counts the long-polls that are waiting on the store.
func (e *env) subscribers() int { return int(e.srv.waiting.Load()) }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestClusterMembership(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.createProfile("cp")
	e.createProfile("worker")
	for _, n := range []string{"a", "b", "c"} {
		e.createMachine(machineReq(n))
	}
	roles := []api.ClusterRole{{Name: "control", BootProfile: "cp"}, {Name: "worker", BootProfile: "worker"}}
	req := api.ClusterRequest{Name: "k8s", Roles: roles, Members: []api.ClusterMember{{Machine: "a", Role: "control"}, {Machine: "b", Role: "worker"}}}

	bad := []struct {
		name  string
		mod   func(r *api.ClusterRequest)
		field string
	}{
		{"unknown machine", func(r *api.ClusterRequest) {
			r.Members = append(r.Members, api.ClusterMember{Machine: "zz", Role: "worker"})
		}, "members[2].machine"},
		{"duplicate member", func(r *api.ClusterRequest) {
			r.Members = append(r.Members, api.ClusterMember{Machine: "a", Role: "worker"})
		}, "members[2].machine"},
		{"unknown role", func(r *api.ClusterRequest) { r.Members = []api.ClusterMember{{Machine: "a", Role: "db"}} }, "members[0].role"},
		{"duplicate role", func(r *api.ClusterRequest) {
			r.Roles = append(r.Roles, api.ClusterRole{Name: "worker", BootProfile: "cp"})
		}, "roles[2].name"},
		{"role profile missing", func(r *api.ClusterRequest) {
			r.Roles = []api.ClusterRole{{Name: "control", BootProfile: "nope"}, {Name: "worker", BootProfile: "worker"}}
		}, "roles[0].boot_profile"},
		{"negative max_unavailable", func(r *api.ClusterRequest) { r.Rollout = &api.Rollout{MaxUnavailable: -1} }, "rollout.max_unavailable"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			r := req
			r.Members = append([]api.ClusterMember{}, req.Members...)
			r.Roles = append([]api.ClusterRole{}, req.Roles...)
			c.mod(&r)
			if got := e.must(422, e.req("POST", api.PathClusters, r)); got.err().Field != c.field {
				t.Errorf("field %q, want %q: %s", got.err().Field, c.field, got.err().Message)
			}
		})
	}

	var cl api.Cluster
	e.must(201, e.req("POST", api.PathClusters, req)).decode(t, &cl)
	if cl.Phase != api.ClusterConverging || cl.Rollout.MaxUnavailable != 1 || len(cl.Members) != 2 {
		t.Fatalf("created %+v", cl)
	}
	member := func(name string) (string, string) {
		m, err := e.store.GetMachine(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return m.Cluster, m.Role
	}
	if c, r := member("a"); c != "k8s" || r != "control" {
		t.Errorf("a: %q %q", c, r)
	}
	if m, _ := e.store.GetMachine(ctx, "a"); m.Version != 1 {
		t.Errorf("membership is a status write, but a's version is %d", m.Version)
	}
	// A member's own machine cannot be deleted, nor claimed by another cluster.
	e.must(409, e.req("DELETE", "/v1/machines/a", nil))
	e.must(409, e.req("DELETE", "/v1/machines/a?force=true", nil))
	other := api.ClusterRequest{Name: "other", Roles: roles, Members: []api.ClusterMember{{Machine: "a", Role: "worker"}}}
	if r := e.must(422, e.req("POST", api.PathClusters, other)); !strings.Contains(r.err().Message, "k8s") {
		t.Errorf("claim by another cluster: %s", r.err().Message)
	}

	// The computed phase follows the members.
	for _, n := range []string{"a", "b"} {
		if _, err := e.store.UpdateMachine(ctx, n, func(m *model.Machine) (bool, error) {
			m.Status.Phase = model.PhaseProvisioned
			m.Status.Addresses = []string{"10.0.0." + n}
			return false, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Until the reconciler confirms, provisioned members may still be
	// about to re-provision for the new spec.
	e.must(200, e.req("GET", "/v1/clusters/k8s", nil)).decode(t, &cl)
	if cl.Phase != api.ClusterConverging || !strings.Contains(cl.Message, "waiting for the reconciler") {
		t.Errorf("unconfirmed cluster %+v", cl)
	}
	reconcilerSays(t, e, "k8s", api.ClusterReady)
	e.must(200, e.req("GET", "/v1/clusters/k8s", nil)).decode(t, &cl)
	if cl.Phase != api.ClusterReady || cl.Endpoints["control"][0] != "10.0.0.a" || cl.Endpoints["worker"][0] != "10.0.0.b" {
		t.Errorf("ready cluster %+v", cl)
	}
	if _, err := e.store.UpdateMachine(ctx, "b", func(m *model.Machine) (bool, error) {
		m.Status.Phase, m.Status.LastError = model.PhaseFailed, "installer exited 1"
		return false, nil
	}); err != nil {
		t.Fatal(err)
	}
	e.must(200, e.req("GET", "/v1/clusters/k8s", nil)).decode(t, &cl)
	if cl.Phase != api.ClusterPaused || !strings.Contains(cl.Message, "installer exited 1") {
		t.Errorf("paused cluster %+v", cl)
	}

	// Update: b leaves, c joins. The write resets the reconciler's "ready".
	req.Members = []api.ClusterMember{{Machine: "a", Role: "control"}, {Machine: "c", Role: "worker"}}
	req.Version = cl.Version
	e.must(200, e.req("PUT", "/v1/clusters/k8s", req)).decode(t, &cl)
	if stored, _ := e.store.GetCluster(ctx, "k8s"); stored.Status.Phase == string(api.ClusterReady) {
		t.Errorf("a spec write kept the reconciler's old status %+v", stored.Status)
	}
	if c, _ := member("b"); c != "" {
		t.Errorf("b still in cluster %q", c)
	}
	if c, r := member("c"); c != "k8s" || r != "worker" {
		t.Errorf("c: %q %q", c, r)
	}
	var list api.MachineList
	e.must(200, e.req("GET", "/v1/machines?cluster=k8s&role=worker", nil)).decode(t, &list)
	if len(list.Items) != 1 || list.Items[0].Name != "c" {
		t.Errorf("filtered list %+v", list.Items)
	}

	// Delete releases everyone.
	e.must(204, e.req("DELETE", "/v1/clusters/k8s", nil))
	for _, n := range []string{"a", "b", "c"} {
		if c, r := member(n); c != "" || r != "" {
			t.Errorf("%s still in %q/%q", n, c, r)
		}
	}
	e.must(404, e.req("GET", "/v1/clusters/k8s", nil))
	e.must(202, e.req("DELETE", "/v1/machines/a", nil))
}

func TestClusterLongPollWakesOnMember(t *testing.T) {
	e := newEnv(t)
	e.createProfile("p")
	e.createMachine(machineReq("a"))
	var cl api.Cluster
	e.must(201, e.req("POST", api.PathClusters, api.ClusterRequest{Name: "c", Roles: []api.ClusterRole{{Name: "r", BootProfile: "p"}}, Members: []api.ClusterMember{{Machine: "a", Role: "r"}}})).decode(t, &cl)
	done := make(chan resp, 1)
	go func() {
		done <- e.req("GET", fmt.Sprintf("/v1/clusters/c?wait=30s&after_revision=%d", cl.Revision), nil)
	}()
	waitFor(t, func() bool { return e.subscribers() > 0 })
	if _, err := e.store.UpdateMachine(context.Background(), "a", func(m *model.Machine) (bool, error) {
		m.Status.Phase = model.PhaseFailed
		return false, nil
	}); err != nil {
		t.Fatal(err)
	}
	e.must(200, <-done).decode(t, &cl)
	if cl.Phase != api.ClusterPaused || cl.Revision != 1 {
		t.Errorf("woke with phase %q revision %d", cl.Phase, cl.Revision)
	}
}

// reconcilerSays writes the cluster status the way the reconciler does.
func reconcilerSays(t *testing.T, e *env, cluster string, phase api.ClusterPhase) {
	t.Helper()
	if _, err := e.store.UpdateCluster(context.Background(), cluster, func(c *model.Cluster) (bool, error) {
		c.Status = model.ClusterStatus{Phase: string(phase)}
		return false, nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestProfiles(t *testing.T) {
	e := newEnv(t)
	sum0 := "sha256:" + strings.Repeat("0", 64)
	bad := []struct {
		name  string
		req   api.BootProfileRequest
		field string
	}{
		{"no kernel or script", api.BootProfileRequest{Name: "p"}, "kernel"},
		{"bad name", api.BootProfileRequest{Name: "P!", Kernel: "k"}, "name"},
		{"template path", api.BootProfileRequest{Name: "p", Kernel: "k", Templates: map[string]string{"../etc/passwd": "x"}}, "templates.../etc/passwd"},
		{"template slash", api.BootProfileRequest{Name: "p", Kernel: "k", Templates: map[string]string{"a/b": "x"}}, "templates.a/b"},
		{"missing wipe profile", api.BootProfileRequest{Name: "p", Kernel: "k", WipeProfile: "wipe"}, "wipe_profile"},
		{"empty initrd", api.BootProfileRequest{Name: "p", Kernel: "k", Initrds: []string{""}}, "initrds[0]"},
		{"script without #!ipxe", api.BootProfileRequest{Name: "p", IPXEScript: "kernel http://k\nboot"}, "ipxe_script"},
		{"unknown image format", api.BootProfileRequest{Name: "p", Image: &api.Image{URL: "d.vmdk", Checksum: sum0, Format: "vmdk"}}, "image.format"},
		{"image without checksum", api.BootProfileRequest{Name: "p", Image: &api.Image{URL: "d.qcow2", Format: "qcow2"}}, "image.checksum"},
		{"unknown wipe", api.BootProfileRequest{Name: "p", Image: &api.Image{URL: "d.qcow2", Checksum: sum0, Format: "qcow2", Wipe: "none"}}, "image.wipe"},
		{"image with a wipe profile", api.BootProfileRequest{Name: "p", WipeProfile: "w", Image: &api.Image{URL: "d.raw", Checksum: sum0, Format: "raw"}}, "wipe_profile"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			if r := e.must(422, e.req("POST", api.PathProfiles, c.req)); r.err().Field != c.field {
				t.Errorf("field %q, want %q", r.err().Field, c.field)
			}
		})
	}
	e.must(201, e.req("POST", api.PathProfiles, api.BootProfileRequest{Name: "wipe", IPXEScript: "#!ipxe\nexit"}))
	var p api.BootProfile
	e.must(201, e.req("POST", api.PathProfiles, api.BootProfileRequest{Name: "debian", Kernel: "http://k", WipeProfile: "wipe",
		Templates: map[string]string{"preseed.cfg": "d-i ..."}})).decode(t, &p)
	if p.ID != "debian" || p.Version != 1 || p.Templates["preseed.cfg"] != "d-i ..." {
		t.Errorf("created %+v", p)
	}
	e.must(409, e.req("POST", api.PathProfiles, api.BootProfileRequest{Name: "debian", Kernel: "http://k"}))

	// A qcow2 image is accepted; an unset wipe reads back as config-drive.
	var img api.BootProfile
	e.must(201, e.req("POST", api.PathProfiles, api.BootProfileRequest{Name: "img",
		Image: &api.Image{URL: "images/debian.qcow2", Checksum: sum0, Format: "qcow2"}})).decode(t, &img)
	if img.Image == nil || *img.Image != (api.Image{URL: "images/debian.qcow2", Checksum: sum0, Format: "qcow2", Wipe: "config-drive"}) {
		t.Errorf("image profile %+v", img.Image)
	}
	e.must(204, e.req("DELETE", "/v1/boot_profiles/img", nil))

	// In use by a machine, a profile's wipe_profile, a cluster role: 409 each.
	r := e.must(409, e.req("DELETE", "/v1/boot_profiles/wipe", nil))
	if !strings.Contains(r.err().Message, `boot profile "debian"`) {
		t.Errorf("in-use message: %s", r.err().Message)
	}
	mr := machineReq("m1")
	mr.BootProfile, mr.State = "debian", ""
	e.createMachine(mr)
	r = e.must(409, e.req("DELETE", "/v1/boot_profiles/debian", nil))
	if !strings.Contains(r.err().Message, `machine "m1"`) {
		t.Errorf("in-use message: %s", r.err().Message)
	}
	e.must(204, e.req("DELETE", "/v1/machines/m1?force=true", nil))
	e.createMachine(machineReq("m2"))
	e.must(201, e.req("POST", api.PathClusters, api.ClusterRequest{Name: "c", Roles: []api.ClusterRole{{Name: "r", BootProfile: "debian"}}, Members: []api.ClusterMember{{Machine: "m2", Role: "r"}}}))
	r = e.must(409, e.req("DELETE", "/v1/boot_profiles/debian", nil))
	if !strings.Contains(r.err().Message, `cluster "c" role "r"`) {
		t.Errorf("in-use message: %s", r.err().Message)
	}
	e.must(204, e.req("DELETE", "/v1/clusters/c", nil))
	e.must(204, e.req("DELETE", "/v1/boot_profiles/debian", nil))
	e.must(204, e.req("DELETE", "/v1/boot_profiles/wipe", nil))
	e.must(404, e.req("DELETE", "/v1/boot_profiles/wipe", nil))
	var l api.BootProfileList
	e.must(200, e.req("GET", api.PathProfiles, nil)).decode(t, &l)
	if len(l.Items) != 0 {
		t.Errorf("left %+v", l.Items)
	}
}

func TestDeleteMachine(t *testing.T) {
	e := newEnv(t)
	e.createMachine(machineReq("m1"))
	var m api.Machine
	e.must(202, e.req("DELETE", "/v1/machines/m1", nil)).decode(t, &m)
	stored, _ := e.store.GetMachine(context.Background(), "m1")
	if stored.DeletionRequested.IsZero() || stored.Version != 2 {
		t.Errorf("deletion not requested: %+v", stored)
	}
	e.must(202, e.req("DELETE", "/v1/machines/m1", nil)) // idempotent
	again, _ := e.store.GetMachine(context.Background(), "m1")
	if !again.DeletionRequested.Equal(stored.DeletionRequested) {
		t.Errorf("a second DELETE moved the deletion request")
	}
	// Its clean failed: a DELETE asks again (the reconciler retries the
	// clean of a deletion requested after the failure).
	if _, err := e.store.UpdateMachine(context.Background(), "m1", func(m *model.Machine) (bool, error) {
		m.Status.Phase, m.Status.CleanPending = model.PhaseFailed, model.WipeConfigDrive
		m.Status.PhaseSince = m.DeletionRequested.Add(time.Second)
		return false, nil
	}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	e.must(202, e.req("DELETE", "/v1/machines/m1", nil))
	again, _ = e.store.GetMachine(context.Background(), "m1")
	if !again.DeletionRequested.After(again.Status.PhaseSince) {
		t.Errorf("deletion of a machine whose clean failed not requested again: %v, failed at %v", again.DeletionRequested, again.Status.PhaseSince)
	}
	upd := machineReq("m1")
	e.must(409, e.req("PUT", "/v1/machines/m1", upd))
	e.must(400, e.req("DELETE", "/v1/machines/m1?force=maybe", nil))
	e.must(204, e.req("DELETE", "/v1/machines/m1?force=true", nil))
	e.must(404, e.req("GET", "/v1/machines/m1", nil))
	e.must(404, e.req("DELETE", "/v1/machines/m1", nil))
}

type recordingActions struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (a *recordingActions) MachineAction(_ context.Context, name, action string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, name+":"+action)
	return a.err
}

func TestActions(t *testing.T) {
	t.Run("without a reconciler", func(t *testing.T) {
		e := newEnv(t)
		e.createMachine(machineReq("m1"))
		r := e.must(503, e.req("POST", "/v1/machines/m1/actions/power_on", nil))
		if r.err().Code != api.CodeUnavailable || !strings.Contains(r.err().Message, "reconciler") {
			t.Errorf("%+v", r.err())
		}
	})
	acts := &recordingActions{}
	e := newEnv(t, func(c *ServerConfig) { c.Actions = acts })
	e.createMachine(machineReq("m1"))
	var ar api.ActionResponse
	e.must(202, e.req("POST", "/v1/machines/m1/actions/reset", nil)).decode(t, &ar)
	if ar.Action != "reset" || ar.Machine.Name != "m1" {
		t.Errorf("%+v", ar)
	}
	r := e.must(400, e.req("POST", "/v1/machines/m1/actions/explode", nil))
	if r.err().Field != "action" || !strings.Contains(r.err().Message, "explode") {
		t.Errorf("%+v", r.err())
	}
	e.must(404, e.req("POST", "/v1/machines/nope/actions/reset", nil))
	e.must(201, e.req("POST", api.PathMachines, machineReq("m2"), api.HeaderLeaseHolder, "run-a"))
	e.must(409, e.req("POST", "/v1/machines/m2/actions/power_off", nil, api.HeaderLeaseHolder, "run-b"))
	acts.err = fmt.Errorf("machine m1 is being deleted: %w", api.ErrActionRejected)
	if r := e.must(409, e.req("POST", "/v1/machines/m1/actions/provision", nil)); !strings.Contains(r.err().Message, "being deleted") {
		t.Errorf("%+v", r.err())
	}
	acts.err = errors.New("dial tcp 10.0.0.5:443: connection refused")
	if r := e.must(502, e.req("POST", "/v1/machines/m1/actions/provision", nil)); r.err().Code != CodeActionFailed || !strings.Contains(r.err().Message, "connection refused") {
		t.Errorf("a failed action should say why: %+v", r.err())
	}
	if !strings.Contains(e.logs.String(), "connection refused") {
		t.Errorf("the failed action is not logged")
	}
	if got := strings.Join(acts.calls, ","); got != "m1:reset,m1:provision,m1:provision" {
		t.Errorf("calls %s", got)
	}
}

func TestEvents(t *testing.T) {
	e := newEnv(t)
	e.createMachine(machineReq("m1")) // records a spec_changed event
	ctx := context.Background()
	for i := range 3 {
		if _, err := e.store.AppendEvent(ctx, model.Event{Machine: "m1", Type: model.EventPowerAction, Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.store.AppendEvent(ctx, model.Event{Type: string(model.SignalUnknownMAC), Message: "52:54:00:00:00:77"}); err != nil {
		t.Fatal(err)
	}
	var page api.EventList
	e.must(200, e.req("GET", "/v1/machines/m1/events?limit=2", nil)).decode(t, &page)
	if len(page.Events) != 2 || page.Events[0].Type != model.EventSpecChanged || page.Next != page.Events[1].Seq {
		t.Fatalf("page 1 %+v", page)
	}
	e.must(200, e.req("GET", fmt.Sprintf("/v1/machines/m1/events?after=%d", page.Next), nil)).decode(t, &page)
	if len(page.Events) != 2 || page.Events[1].Message != "2" {
		t.Fatalf("page 2 %+v", page)
	}
	last := page.Next
	e.must(200, e.req("GET", fmt.Sprintf("/v1/machines/m1/events?after=%d", last), nil)).decode(t, &page)
	if len(page.Events) != 0 || page.Next != last {
		t.Errorf("empty page %+v", page)
	}
	e.must(200, e.req("GET", api.PathEvents, nil)).decode(t, &page)
	if len(page.Events) != 1 || page.Events[0].Type != string(model.SignalUnknownMAC) {
		t.Errorf("agent events %+v", page)
	}
	e.must(404, e.req("GET", "/v1/machines/nope/events", nil))
	e.must(400, e.req("GET", "/v1/events?limit=0", nil))
	e.must(400, e.req("GET", "/v1/events?after=x", nil))

	// A waiting reader wakes on the next event.
	done := make(chan resp, 1)
	go func() { done <- e.req("GET", fmt.Sprintf("/v1/machines/m1/events?wait=30s&after=%d", last), nil) }()
	waitFor(t, func() bool { return e.subscribers() > 0 })
	if _, err := e.store.AppendEvent(ctx, model.Event{Machine: "m1", Type: model.EventPhaseChanged, Message: "woke"}); err != nil {
		t.Fatal(err)
	}
	e.must(200, <-done).decode(t, &page)
	if len(page.Events) != 1 || page.Events[0].Message != "woke" {
		t.Errorf("woke with %+v", page)
	}
}

func TestInfoHealthMetrics(t *testing.T) {
	ready := errors.New("store not open yet")
	var mu sync.Mutex
	e := newEnv(t, func(c *ServerConfig) {
		c.Ready = func() error { mu.Lock(); defer mu.Unlock(); return ready }
	})
	var info api.Info
	e.must(200, e.req("GET", api.PathInfo, nil)).decode(t, &info)
	if info.Version != "test" || info.APIVersion != "v1" || info.BootURL != "http://10.0.2.2:8081" || len(info.Capabilities) != 1 {
		t.Errorf("%+v", info)
	}
	e.must(200, e.req("GET", api.PathHealthz, nil))
	if r := e.must(503, e.req("GET", api.PathReadyz, nil)); !strings.Contains(string(r.body), "store not open yet") {
		t.Errorf("readyz body %s", r.body)
	}
	mu.Lock()
	ready = nil
	mu.Unlock()
	e.must(200, e.req("GET", api.PathReadyz, nil))
	e.reqCtx(context.Background(), "", "GET", api.PathMachines, nil)
	e.must(404, e.req("GET", "/v1/nothing-here", nil))
	r405 := e.must(405, e.req("PATCH", "/v1/machines/m1", nil))
	if allow := r405.header.Get("Allow"); allow != "GET, PUT, DELETE" || r405.err().Code != CodeMethodNotAllowed {
		t.Errorf("405: Allow %q, %+v", allow, r405.err())
	}
	r := e.must(200, e.req("GET", api.PathMetrics, nil))
	for _, want := range []string{
		`baremetal_api_requests_total{code="401",method="GET",route="/v1/machines"} 1`,
		`baremetal_api_requests_total{code="200",method="GET",route="/v1/info"} 1`,
		`baremetal_api_request_duration_seconds_bucket{method="GET",route="/v1/info",le="60"} 1`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(string(r.body), "nothing-here") {
		t.Errorf("raw paths leak into metric labels")
	}
}

func TestNewServerNeedsTokens(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenBolt(filepath.Join(dir, "agent.db"), store.BoltOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := NewServer(ServerConfig{Store: st}); err == nil {
		t.Fatal("a server without tokens was built")
	}
}

func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "# ci\n\n  "+rwToken+"  \nreadonly:"+roToken+"\n", 0o600)
	ts, err := LoadTokenFile(good)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		tok    string
		ok, ro bool
	}{
		{rwToken, true, false},
		{roToken, true, true},
		{"readonly:" + roToken, false, false},
		{rwToken + "x", false, false},
		{"", false, false},
	}
	for _, c := range cases {
		if ok, ro := ts.check(c.tok); ok != c.ok || ro != c.ro {
			t.Errorf("check(%q) = %v,%v want %v,%v", c.tok, ok, ro, c.ok, c.ro)
		}
	}
	bad := []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"world readable", rwToken + "\n", 0o644, "chmod 600"},
		{"group readable", rwToken + "\n", 0o640, "chmod 600"},
		{"empty", "# nothing\n\n", 0o600, "no tokens"},
		{"short", "abc\n", 0o600, "line 1"},
		{"empty read-only", rwToken + "\nreadonly:\n", 0o600, "line 2"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadTokenFile(write(c.name, c.content, c.mode))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want it to mention %q", err, c.want)
			}
			if strings.Contains(err.Error(), rwToken) {
				t.Errorf("error reveals the token: %v", err)
			}
		})
	}
	if _, err := LoadTokenFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestStopWaitingEndsLongPolls(t *testing.T) {
	e := newEnv(t)
	m := e.createMachine(machineReq("m1"))
	done := make(chan resp, 1)
	start := time.Now()
	go func() {
		done <- e.req("GET", fmt.Sprintf("/v1/machines/m1?wait=60s&after_revision=%d", m.Revision), nil)
	}()
	waitFor(t, func() bool { return e.subscribers() > 0 })
	e.srv.StopWaiting()
	var got api.Machine
	e.must(200, <-done).decode(t, &got)
	if got.Revision != m.Revision || time.Since(start) > 30*time.Second {
		t.Errorf("after StopWaiting: revision %d, %s", got.Revision, time.Since(start))
	}
}

func TestSetTokensRotates(t *testing.T) {
	e := newEnv(t)
	const next = "next-token-0123456789abcdef"
	ts, err := NewTokenSet([]string{next}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.SetTokens(&TokenSet{}); err == nil {
		t.Error("an empty token set was accepted")
	}
	e.must(200, e.req("GET", api.PathMachines, nil))
	if err := e.srv.SetTokens(ts); err != nil {
		t.Fatal(err)
	}
	e.must(401, e.req("GET", api.PathMachines, nil))
	e.must(200, e.reqCtx(context.Background(), next, "GET", api.PathMachines, nil))
}

// TestPasswordNeverReturned walks every read and write of a machine and its
// cluster; newEnv's cleanup also checks every body and log line of every test.
func TestPasswordNeverReturned(t *testing.T) {
	acts := &recordingActions{}
	e := newEnv(t, func(c *ServerConfig) { c.Actions = acts })
	e.createProfile("p")
	e.createMachine(machineReq("m1"))
	upd := machineReq("m1")
	upd.BMC.Password = bmcPassword + "-new"
	bodies := []resp{
		e.must(200, e.req("GET", "/v1/machines/m1", nil)),
		e.must(200, e.req("GET", api.PathMachines, nil)),
		e.must(200, e.req("PUT", "/v1/machines/m1", upd)),
		e.must(202, e.req("POST", "/v1/machines/m1/actions/power_on", nil)),
		e.must(201, e.req("POST", api.PathClusters, api.ClusterRequest{Name: "c", Roles: []api.ClusterRole{{Name: "r", BootProfile: "p"}}, Members: []api.ClusterMember{{Machine: "m1", Role: "r"}}})),
		e.must(200, e.req("GET", api.PathClusters, nil)),
		e.must(200, e.req("GET", "/v1/machines/m1/events", nil)),
		e.must(200, e.req("GET", api.PathEvents, nil)),
	}
	for _, r := range bodies {
		if strings.Contains(string(r.body), bmcPassword) || strings.Contains(string(r.body), `"password"`) {
			t.Errorf("a response carries the password: %s", r.body)
		}
	}
	stored, err := e.store.GetMachine(context.Background(), "m1")
	if err != nil || stored.BMC.Password != bmcPassword+"-new" {
		t.Errorf("the new password was not stored (err %v)", err)
	}
}

func TestInternalErrorIsGeneric(t *testing.T) {
	e := newEnv(t)
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	r := e.must(500, e.req("GET", api.PathMachines, nil))
	if d := r.err(); d.Code != api.CodeInternal || d.Message != "internal error; the agent log has the details" {
		t.Errorf("500 body %+v", d)
	}
	if !strings.Contains(e.logs.String(), "listing machines") {
		t.Errorf("the cause is not logged: %s", e.logs.String())
	}
}

// TestConcurrentWritersOneWins: writers that read the same version race;
// exactly one write lands, every other gets 409 and nothing is lost.
func TestConcurrentWritersOneWins(t *testing.T) {
	e := newEnv(t)
	e.createMachine(machineReq("m1"))
	const writers = 8
	codes := make(chan int, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := machineReq("m1")
			req.BMC.Password = ""
			req.Version = 1
			req.Params = map[string]string{"writer": fmt.Sprint(i)}
			codes <- e.req("PUT", "/v1/machines/m1", req).status
		}()
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[200] != 1 || count[409] != writers-1 {
		t.Fatalf("status counts %v, want one 200 and %d 409", count, writers-1)
	}
	var m api.Machine
	e.must(200, e.req("GET", "/v1/machines/m1", nil)).decode(t, &m)
	if m.Version != 2 || m.Params["writer"] == "" {
		t.Errorf("after the race: %+v", m)
	}
}

func TestMachineBootMode(t *testing.T) {
	e := newEnv(t)
	req := machineReq("m1")
	req.BootMode = "bios"
	r := e.must(422, e.req("POST", api.PathMachines, req))
	if d := r.err(); d.Field != "boot_mode" || !strings.Contains(d.Message, "uefi, legacy") {
		t.Fatalf("error %+v, want one on boot_mode naming the modes", d)
	}
	req.BootMode = "uefi"
	if m := e.createMachine(req); m.BootMode != "uefi" {
		t.Fatalf("created with boot_mode %q", m.BootMode)
	}
	// Once the BMC has said what it allows, a mode outside that is refused
	// at the request, naming what it allows.
	if _, err := e.store.UpdateMachine(context.Background(), "m1", func(m *model.Machine) (bool, error) {
		m.Status.Inventory = &model.Inventory{BootMode: "legacy", BootModes: []string{"legacy"}}
		return false, nil
	}); err != nil {
		t.Fatal(err)
	}
	r = e.must(422, e.req("PUT", "/v1/machines/m1", req))
	if d := r.err(); d.Field != "boot_mode" || !strings.Contains(d.Message, "which allows legacy") {
		t.Fatalf("error %+v, want one on boot_mode naming the allowed modes", d)
	}
	req.BootMode = "legacy"
	var m api.Machine
	e.must(200, e.req("PUT", "/v1/machines/m1", req)).decode(t, &m)
	if m.BootMode != "legacy" {
		t.Fatalf("boot_mode %q after the update", m.BootMode)
	}
}

// TestUpdateAsksAgain: an update of a failed machine, or of one whose BMC
// refused the agent, bumps the spec version even when nothing changed (the
// reconciler's signal to retry or check the BMC), except for a failed
// cluster member, which its cluster retries; an update also accepts the
// current hardware fingerprint.
func TestUpdateAsksAgain(t *testing.T) {
	cases := []struct {
		name      string
		status    model.Status
		cluster   string
		wantRetry bool
	}{
		{name: "settled", status: model.Status{Phase: model.PhaseProvisioned, BMCStatus: model.BMCStatusOK}},
		{name: "failed", status: model.Status{Phase: model.PhaseFailed}, wantRetry: true},
		{name: "failed cluster member", status: model.Status{Phase: model.PhaseFailed}, cluster: "c"},
		{name: "BMC refuses", status: model.Status{Phase: model.PhaseProvisioned, BMCStatus: model.BMCStatusAuthFailed}, wantRetry: true},
		{name: "BMC unreachable", status: model.Status{Phase: model.PhaseAvailable, BMCStatus: model.BMCStatusUnreachable}, wantRetry: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			created := e.createMachine(machineReq("m1"))
			inv := &model.Inventory{MemoryGiB: 0.5}
			inv.Fingerprint = inv.HardwareFingerprint()
			_, err := e.store.UpdateMachine(context.Background(), "m1", func(m *model.Machine) (bool, error) {
				m.Status = tc.status
				m.Status.Inventory, m.Status.AcceptedFingerprint = inv, "older"
				m.Cluster = tc.cluster
				return false, nil
			})
			require.NoError(t, err)
			var m api.Machine
			e.must(200, e.req("PUT", "/v1/machines/m1", machineReq("m1"))).decode(t, &m)
			assert.Equal(t, tc.wantRetry, m.Version > created.Version, "spec version %d after %d", m.Version, created.Version)
			assert.Equal(t, inv.Fingerprint, m.HardwareFingerprint, "the update accepts the current hardware")
		})
	}
}

// TestClusterUpdateRetriesFailedMember: writing a cluster asks for its
// desired state again, so a failed member's spec version moves (the
// reconciler retries it) and the others' stay.
func TestClusterUpdateRetriesFailedMember(t *testing.T) {
	e := newEnv(t)
	e.must(201, e.req("POST", api.PathProfiles, api.BootProfileRequest{Name: "os", Kernel: "http://k"}))
	ok, bad := e.createMachine(machineReq("ok")), e.createMachine(machineReq("bad"))
	creq := api.ClusterRequest{Name: "c", Roles: []api.ClusterRole{{Name: "r", BootProfile: "os"}},
		Members: []api.ClusterMember{{Machine: "ok", Role: "r"}, {Machine: "bad", Role: "r"}}}
	e.must(201, e.req("POST", api.PathClusters, creq))
	_, err := e.store.UpdateMachine(context.Background(), "bad", func(m *model.Machine) (bool, error) {
		m.Status.Phase = model.PhaseFailed
		return false, nil
	})
	require.NoError(t, err)
	e.must(200, e.req("PUT", "/v1/clusters/c", creq))
	var got api.Machine
	e.must(200, e.req("GET", "/v1/machines/bad", nil)).decode(t, &got)
	assert.Greater(t, got.Version, bad.Version, "the failed member is asked again")
	e.must(200, e.req("GET", "/v1/machines/ok", nil)).decode(t, &got)
	assert.Equal(t, ok.Version, got.Version, "a healthy member's spec is left alone")
}
