package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// fakeBoot is a boot server following the agent's conventions: it serves
// /boot/<mac> (chaining to a second script, as the agent's TFTP stage
// does), per-machine assets, templates and the callback, and records what
// the simulated machine asked for.
type fakeBoot struct {
	srv      *httptest.Server
	machines map[string]string // mac -> machine name; others get `exit`
	token    string            // the token the server accepts
	handOut  string            // the token scripts carry (default: token)
	// holdScript, when set, blocks script requests until the client leaves.
	holdScript chan struct{}

	mu        sync.Mutex
	scripts   []string
	assets    []string // paths, with the Range header seen
	templates []string // "<machine>/<template>?token=<token>"
	callbacks []fakeCallback
}

type fakeCallback struct {
	machine, token string
	report         model.CallbackReport
}

func newFakeBoot(t *testing.T, machines map[string]string) *fakeBoot {
	f := &fakeBoot{machines: machines, token: "run-token-123"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot/{mac}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.scripts = append(f.scripts, r.URL.Path)
		f.mu.Unlock()
		if f.holdScript != nil {
			select {
			case f.holdScript <- struct{}{}:
			case <-r.Context().Done():
				return
			}
			<-r.Context().Done()
			return
		}
		name, ok := f.machines[r.PathValue("mac")]
		if !ok {
			fmt.Fprint(w, "#!ipxe\necho unknown machine: local boot\nexit\n")
			return
		}
		// Stage one chains, relative to itself, like a ${net0/mac} script.
		fmt.Fprintf(w, "#!ipxe\ndhcp\nchain stage2/%s || goto failed\n:failed\nexit\n", name)
	})
	mux.HandleFunc("GET /boot/stage2/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		base := f.srv.URL
		tok := f.handOut
		if tok == "" {
			tok = f.token
		}
		fmt.Fprintf(w, "#!ipxe\nset base %s/machines/%s/assets\nkernel ${base}/vmlinuz console=ttyS0 baremetal.url=%s baremetal.machine=%s baremetal.token=%s baremetal.templates=user-data,meta-data\ninitrd --name initrd ${base}/initrd.img\nboot\n",
			base, name, base, name, tok)
	})
	mux.HandleFunc("GET /machines/{name}/assets/{file}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.assets = append(f.assets, r.URL.Path+" "+r.Header.Get("Range"))
		f.mu.Unlock()
		http.ServeContent(w, r, r.PathValue("file"), time.Time{}, bytes.NewReader(bytes.Repeat([]byte{0x4d}, 5000)))
	})
	mux.HandleFunc("GET /machines/{name}/templates/{tmpl}", func(w http.ResponseWriter, r *http.Request) {
		tok := r.URL.Query().Get("token")
		f.mu.Lock()
		f.templates = append(f.templates, r.PathValue("name")+"/"+r.PathValue("tmpl")+"?token="+tok)
		f.mu.Unlock()
		if tok != f.token {
			http.Error(w, "token rejected", http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, "#cloud-config\nhostname: %s\n# %s\n", r.PathValue("name"), r.PathValue("tmpl"))
	})
	mux.HandleFunc("POST /machines/{name}/callback", func(w http.ResponseWriter, r *http.Request) {
		var rep model.CallbackReport
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tok := r.URL.Query().Get("token")
		f.mu.Lock()
		f.callbacks = append(f.callbacks, fakeCallback{machine: r.PathValue("name"), token: tok, report: rep})
		f.mu.Unlock()
		if tok != f.token {
			http.Error(w, "token rejected", http.StatusForbidden)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeBoot) snapshot() (scripts, assets, templates []string, callbacks []fakeCallback) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.scripts...), append([]string(nil), f.assets...),
		append([]string(nil), f.templates...), append([]fakeCallback(nil), f.callbacks...)
}

func TestSimulatePXEBootPlaysTheInstaller(t *testing.T) {
	f := newFakeBoot(t, map[string]string{"52:54:00:00:01:07": "m1"})
	res, err := SimulatePXEBoot(context.Background(), f.srv.Client(), f.srv.URL+"/", "52-54-00-00-01-07")
	if err != nil {
		t.Fatal(err)
	}
	if res.MAC != "52:54:00:00:01:07" || res.ScriptURL != f.srv.URL+"/boot/52:54:00:00:01:07" || !strings.HasPrefix(res.Script, "#!ipxe") {
		t.Fatalf("script: %+v", res)
	}
	if want := []string{f.srv.URL + "/boot/stage2/m1"}; !reflect.DeepEqual(res.Chained, want) {
		t.Fatalf("chained %v, want %v", res.Chained, want)
	}
	if res.Kernel == nil || res.Kernel.URL != f.srv.URL+"/machines/m1/assets/vmlinuz" || res.Kernel.Status != 206 || res.Kernel.Bytes != 1024 {
		t.Fatalf("kernel %+v", res.Kernel)
	}
	if len(res.Initrds) != 1 || res.Initrds[0].URL != f.srv.URL+"/machines/m1/assets/initrd.img" {
		t.Fatalf("initrds %+v", res.Initrds)
	}
	if res.Machine != "m1" || res.Token != f.token || res.BaseURL != f.srv.URL || !strings.Contains(res.Cmdline, "console=ttyS0") {
		t.Fatalf("cmdline parse: %+v", res)
	}
	if len(res.Templates) != 2 || res.Templates[0].Name != "user-data" || res.Templates[0].Status != 200 || !strings.Contains(res.Templates[0].Body, "hostname: m1") {
		t.Fatalf("templates %+v", res.Templates)
	}
	if res.Address != "10.77.1.7" || res.CallbackStatus != 204 {
		t.Fatalf("address %s callback %d", res.Address, res.CallbackStatus)
	}

	_, assets, templates, callbacks := f.snapshot()
	for _, a := range assets {
		if !strings.HasSuffix(a, " bytes=0-1023") {
			t.Errorf("asset fetched without a Range: %q", a)
		}
	}
	if want := []string{"m1/user-data?token=" + f.token, "m1/meta-data?token=" + f.token}; !reflect.DeepEqual(templates, want) {
		t.Fatalf("templates %v, want %v", templates, want)
	}
	if len(callbacks) != 1 {
		t.Fatalf("callbacks %+v", callbacks)
	}
	cb := callbacks[0]
	if cb.machine != "m1" || cb.token != f.token || cb.report.Status != "ok" || cb.report.Hostname != "m1" || !reflect.DeepEqual(cb.report.Addresses, []string{"10.77.1.7"}) {
		t.Fatalf("callback %+v", cb)
	}
}

func TestSimulatePXEBootExitMeansLocalBoot(t *testing.T) {
	f := newFakeBoot(t, nil)
	res, err := SimulatePXEBoot(context.Background(), f.srv.Client(), f.srv.URL, "52:54:00:00:00:09")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Exit || res.Kernel != nil {
		t.Fatalf("result %+v", res)
	}
	_, assets, templates, callbacks := f.snapshot()
	if len(assets)+len(templates)+len(callbacks) != 0 {
		t.Fatalf("a local boot fetched %v %v %v", assets, templates, callbacks)
	}
}

func TestSimulatePXEBootWrongTokenFailsWithoutLeakingIt(t *testing.T) {
	f := newFakeBoot(t, map[string]string{"52:54:00:00:00:01": "m1"})
	f.handOut = "stale-secret" // e.g. a script cached from an earlier run
	res, err := SimulatePXEBoot(context.Background(), f.srv.Client(), f.srv.URL, "52:54:00:00:00:01")
	if err == nil {
		t.Fatal("a refused template did not fail the boot")
	}
	if strings.Contains(err.Error(), "stale-secret") {
		t.Fatalf("error leaks the token: %v", err)
	}
	if len(res.Templates) != 2 || res.Templates[0].Status != 403 {
		t.Fatalf("templates %+v", res.Templates)
	}
	_, _, _, callbacks := f.snapshot()
	if len(callbacks) != 1 || callbacks[0].report.Status != "failed" || callbacks[0].report.LogTail == "" || res.CallbackStatus != 403 {
		t.Fatalf("the installer should report its failure: %+v, status %d", callbacks, res.CallbackStatus)
	}
}

func TestSimulatePXEBootErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/boot/52:54:00:00:00:01":
			http.NotFound(w, r)
		case "/boot/52:54:00:00:00:02":
			fmt.Fprint(w, "<html>not a script</html>")
		case "/boot/52:54:00:00:00:03":
			fmt.Fprint(w, "#!ipxe\nkernel /missing-kernel baremetal.token=x\nboot\n")
		case "/boot/52:54:00:00:00:04":
			fmt.Fprint(w, "#!ipxe\nkernel /k quiet\nboot\n")
		case "/boot/52:54:00:00:00:05":
			fmt.Fprint(w, "#!ipxe\nchain /boot/52:54:00:00:00:05\n") // a loop
		case "/k":
			fmt.Fprint(w, "kernel")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	for mac, want := range map[string]string{
		"52:54:00:00:00:01": "HTTP 404",
		"52:54:00:00:00:02": "not an iPXE script",
		"52:54:00:00:00:03": "kernel: GET",
		"52:54:00:00:00:04": "lacks baremetal.url",
		"52:54:00:00:00:05": "chained scripts",
		"not-a-mac":         "not a 48-bit MAC",
	} {
		_, err := SimulatePXEBoot(context.Background(), srv.Client(), srv.URL, mac)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to mention %q", mac, err, want)
		}
	}
}

// TestLabMachinePXEBootsWhenPoweredOn is the memory backend end to end:
// Reset On with a PXE override makes the machine boot from the agent and
// call back; the Once override is then spent, so the next restart boots
// from disk and the agent hears nothing more.
func TestLabMachinePXEBootsWhenPoweredOn(t *testing.T) {
	f := newFakeBoot(t, map[string]string{macFor(2): "m2"})
	l, srv := newTestLab(t, Config{Machines: 2, BootURL: f.srv.URL, HTTPClient: f.srv.Client()})
	c := credsOf(l, "lab-2")
	s := l.System("lab-2")

	mustStatus(t, call(t, srv, c, "PATCH", "/redfish/v1/Systems/lab-2", map[string]any{"Boot": map[string]string{
		"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}), 200)
	mustStatus(t, reset(t, srv, c, "lab-2", "On"), 204)
	eventually(t, 5*time.Second, "the callback", func() bool {
		_, _, _, cbs := f.snapshot()
		return len(cbs) == 1
	})
	_, _, _, cbs := f.snapshot()
	if cbs[0].token != f.token || cbs[0].machine != "m2" || cbs[0].report.Addresses[0] != "10.77.0.2" {
		t.Fatalf("callback %+v", cbs[0])
	}
	if got := s.BootOverride(); got.Target != "None" || got.Enabled != "Disabled" {
		t.Fatalf("override after the PXE boot: %+v", got)
	}
	eventually(t, 5*time.Second, "the PXE result", func() bool { return s.PXEBoots() == 1 })
	if res, err := s.LastPXE(); err != nil || res.CallbackStatus != 204 {
		t.Fatalf("last PXE %+v, %v", res, err)
	}
	// The same over the lab's Redfish extension, with the system's own
	// credentials only.
	var doc LastPXEDoc
	r := call(t, srv, c, "GET", "/redfish/v1/Systems/lab-2/Oem/Lab/LastPXE", nil)
	mustStatus(t, r, 200)
	if err := json.Unmarshal(r.raw, &doc); err != nil || doc.Result == nil || doc.Result.Token != f.token ||
		len(doc.Result.Templates) != 2 || doc.Result.Templates[0].Name != "user-data" {
		t.Fatalf("LastPXE document %s (%v)", r.raw, err)
	}
	mustStatus(t, call(t, srv, credsOf(l, "lab-1"), "GET", "/redfish/v1/Systems/lab-2/Oem/Lab/LastPXE", nil), 401)
	if s.PowerState() != "On" {
		t.Fatal("machine off after installing")
	}

	// Restart with the override spent: disk boot, nothing fetched.
	mustStatus(t, reset(t, srv, c, "lab-2", "ForceRestart"), 204)
	// The other machine has no override: powering it on boots nothing.
	mustStatus(t, reset(t, srv, credsOf(l, "lab-1"), "lab-1", "On"), 204)
	if err := l.Close(); err != nil { // waits for any simulated client
		t.Fatal(err)
	}
	scripts, _, _, cbs := f.snapshot()
	if len(scripts) != 1 || len(cbs) != 1 {
		t.Fatalf("after a disk boot: scripts %v, callbacks %d", scripts, len(cbs))
	}
}

func TestPowerOffInterruptsTheSimulatedBoot(t *testing.T) {
	f := newFakeBoot(t, map[string]string{macFor(1): "m1"})
	f.holdScript = make(chan struct{})
	l, srv := newTestLab(t, Config{Machines: 1, BootURL: f.srv.URL, HTTPClient: f.srv.Client()})
	c := credsOf(l, "lab-1")
	mustStatus(t, call(t, srv, c, "PATCH", "/redfish/v1/Systems/lab-1", map[string]any{"Boot": map[string]string{
		"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Continuous"}}), 200)
	mustStatus(t, reset(t, srv, c, "lab-1", "On"), 204)
	select {
	case <-f.holdScript: // the machine is asking for its script
	case <-time.After(5 * time.Second):
		t.Fatal("the machine never asked for its script")
	}
	mustStatus(t, reset(t, srv, c, "lab-1", "ForceOff"), 204)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := l.System("lab-1").PXEBoots(); n != 0 {
		t.Fatalf("an interrupted boot counted as finished (%d)", n)
	}
	if _, _, _, cbs := f.snapshot(); len(cbs) != 0 {
		t.Fatalf("callbacks %+v", cbs)
	}
}

func TestPlanIPXEScript(t *testing.T) {
	base, _ := url.Parse("http://agent:8081/boot/52:54:00:00:00:01")
	vars := map[string]string{"mac": "52:54:00:00:00:01", "net0/mac": "52:54:00:00:00:01"}
	tests := []struct {
		name    string
		script  string
		want    BootPlan
		wantErr string
	}{
		{name: "kernel initrd boot", script: "#!ipxe\nkernel http://a/vmlinuz ro quiet\ninitrd http://a/initrd\nboot\n",
			want: BootPlan{Kernel: "http://a/vmlinuz", KernelArgs: []string{"ro", "quiet"}, Initrds: []string{"http://a/initrd"}}},
		{name: "relative URLs and options", script: "#!ipxe\r\nkernel --name k assets/vmlinuz a=1\r\ninitrd -n i /assets/initrd\r\nimgexec\r\n",
			want: BootPlan{Kernel: "http://agent:8081/boot/assets/vmlinuz", KernelArgs: []string{"a=1"}, Initrds: []string{"http://agent:8081/assets/initrd"}}},
		{name: "settings and hexhyp", script: "#!ipxe\nset b http://x\nkernel ${b}/k mac=${net0/mac:hexhyp} unset=${nope}\nboot\n",
			want: BootPlan{Kernel: "http://x/k", KernelArgs: []string{"mac=52-54-00-00-00-01", "unset="}}},
		{name: "chain", script: "#!ipxe\nchain http://agent/boot/${mac} || goto fail\n:fail\nexit",
			want: BootPlan{Chain: "http://agent/boot/52:54:00:00:00:01"}},
		{name: "goto skips", script: "#!ipxe\ngoto disk\nkernel http://a/k\nboot\n:disk\nsanboot --no-describe --drive 0x80\n",
			want: BootPlan{Exit: true}},
		{name: "exit", script: "\n\n#!ipxe\n# local boot\nexit\n", want: BootPlan{Exit: true}},
		{name: "and-and", script: "#!ipxe\nkernel http://a/k && initrd http://a/i && boot\n",
			want: BootPlan{Kernel: "http://a/k", KernelArgs: []string{}, Initrds: []string{"http://a/i"}}},
		{name: "no header", script: "kernel http://a/k\nboot\n", wantErr: "not an iPXE script"},
		{name: "empty", script: "", wantErr: "not an iPXE script"},
		{name: "boot without kernel", script: "#!ipxe\nboot\n", wantErr: "without a kernel"},
		{name: "ends without boot", script: "#!ipxe\nkernel http://a/k\n", wantErr: "ended without booting"},
		{name: "goto loop", script: "#!ipxe\n:a\ngoto a\n", wantErr: "goto loop"},
		{name: "unknown label", script: "#!ipxe\ngoto nowhere\n", wantErr: "no such label"},
		{name: "tftp kernel", script: "#!ipxe\nkernel tftp://10.0.2.2/k\nboot\n", wantErr: "not an http(s) URL"},
		{name: "shell", script: "#!ipxe\nshell\n", wantErr: `runs "shell"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PlanIPXEScript(tt.script, base, vars)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("plan %#v\nwant %#v", got, tt.want)
			}
		})
	}
	if vars["b"] != "" {
		t.Fatal("PlanIPXEScript wrote into the caller's settings")
	}
}

func TestParseKernelArgs(t *testing.T) {
	got := ParseKernelArgs(strings.Fields(`console=ttyS0 baremetal.url=http://10.0.2.2:8081 baremetal.machine=m1 baremetal.token="t0k" baremetal.templates=user-data,,meta-data quiet`))
	want := KernelArgs{URL: "http://10.0.2.2:8081", Machine: "m1", Token: "t0k", Templates: []string{"user-data", "meta-data"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%+v, want %+v", got, want)
	}
}

// FuzzPlanIPXEScript feeds the simulated client's script parser and planner
// arbitrary scripts: they must never panic, and a successful plan does
// exactly one thing with absolute http(s) URLs.
func FuzzPlanIPXEScript(f *testing.F) {
	for _, seed := range []string{
		"#!ipxe\nkernel http://a/vmlinuz baremetal.url=http://a baremetal.machine=m baremetal.token=t\ninitrd http://a/initrd\nboot\n",
		"#!ipxe\nchain http://agent/boot/${net0/mac:hexhyp} || goto failed\n:failed\nexit\n",
		"#!ipxe\nset base /assets\nkernel --name k ${base}/k && initrd ${base}/i && boot\n",
		"#!ipxe\n:loop\ngoto loop\n",
		"#!gpxe\nsanboot --drive 0x80\n",
		"#!ipxe\nkernel ${",
		"\r\n#!ipxe\r\n: \r\n",
	} {
		f.Add(seed)
	}
	base, _ := url.Parse("http://agent:8081/boot/52:54:00:00:00:01")
	f.Fuzz(func(t *testing.T, script string) {
		cmds, err := ParseIPXEScript(script)
		if err == nil {
			last := 0
			for _, c := range cmds {
				if c.Line < last || (c.Name == "") == (c.Label == "") || strings.ContainsAny(c.Name, " \t\n") {
					t.Fatalf("bad command %+v", c)
				}
				last = c.Line
			}
		}
		plan, err := PlanIPXEScript(script, base, map[string]string{"mac": "52:54:00:00:00:01"})
		if err != nil {
			return
		}
		actions := 0
		for _, set := range []bool{plan.Chain != "", plan.Exit, plan.Kernel != ""} {
			if set {
				actions++
			}
		}
		if actions != 1 {
			t.Fatalf("plan does %d things: %+v", actions, plan)
		}
		for _, u := range append([]string{plan.Chain, plan.Kernel}, plan.Initrds...) {
			if u == "" {
				continue
			}
			p, err := url.Parse(u)
			if err != nil || (p.Scheme != "http" && p.Scheme != "https") {
				t.Fatalf("plan URL %q is not absolute http(s)", u)
			}
		}
	})
}
