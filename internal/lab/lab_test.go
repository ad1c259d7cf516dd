package lab

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// testLogger keeps test output quiet unless -v.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// newTestLab serves a memory lab of n machines over httptest.
func newTestLab(t testing.TB, cfg Config) (*Lab, *httptest.Server) {
	t.Helper()
	if cfg.Machines == 0 {
		cfg.Machines = 3
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.PasswordSeed == "" {
		cfg.PasswordSeed = "test-seed"
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(l.Handler())
	t.Cleanup(func() {
		srv.Close()
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l, srv
}

// creds is how a test authenticates: basic auth or a session token.
type creds struct {
	user, pass, token string
}

func credsOf(l *Lab, name string) creds {
	s := l.System(name)
	return creds{user: s.username, pass: s.password}
}

type response struct {
	status int
	header http.Header
	doc    map[string]any
	raw    []byte
}

func call(t testing.TB, srv *httptest.Server, c creds, method, path string, body any, hdr ...string) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case c.token != "":
		req.Header.Set("X-Auth-Token", c.token)
	case c.user != "":
		req.SetBasicAuth(c.user, c.pass)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.doc); err != nil {
			t.Fatalf("%s %s: body is not JSON: %v\n%s", method, path, err, raw)
		}
	}
	return r
}

func mustStatus(t testing.TB, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body: %s", r.status, want, r.raw)
	}
}

// get walks a decoded document: get(doc, "Boot", "BootSourceOverrideTarget").
func get(doc any, path ...string) any {
	for _, p := range path {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil
		}
		doc = m[p]
	}
	return doc
}

// as is v as a T; the test fails when it is something else.
func as[T any](t testing.TB, v any) T {
	t.Helper()
	x, ok := v.(T)
	if !ok {
		t.Fatalf("%#v is a %T, not a %T", v, v, x)
	}
	return x
}

func strs(t testing.TB, v any) []string {
	t.Helper()
	var out []string
	for _, x := range as[[]any](t, v) {
		out = append(out, as[string](t, x))
	}
	return out
}

// redfishMessageIDs lists the MessageIds of an error body.
func redfishMessageIDs(t testing.TB, r response) []string {
	t.Helper()
	infos, ok := get(r.doc, "error", "@Message.ExtendedInfo").([]any)
	if !ok || len(infos) == 0 {
		t.Fatalf("status %d without a Redfish error body: %s", r.status, r.raw)
	}
	var ids []string
	for _, i := range infos {
		ids = append(ids, as[string](t, get(i, "MessageId")))
	}
	return ids
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestServiceRootIsAnonymousAndLinksTheServices(t *testing.T) {
	_, srv := newTestLab(t, Config{})
	r := call(t, srv, creds{}, "GET", "/redfish/v1/", nil)
	mustStatus(t, r, 200)
	if got := r.header.Get("OData-Version"); got != "4.0" {
		t.Errorf("OData-Version %q", got)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	for path, want := range map[string]string{
		"@odata.id":                 "/redfish/v1/",
		"@odata.type":               "#ServiceRoot.v1_15_0.ServiceRoot",
		"Id":                        "RootService",
		"Systems/@odata.id":         "/redfish/v1/Systems",
		"Managers/@odata.id":        "/redfish/v1/Managers",
		"SessionService/@odata.id":  "/redfish/v1/SessionService",
		"Links/Sessions/@odata.id":  "/redfish/v1/SessionService/Sessions",
		"RedfishVersion":            "1.15.0",
		"@odata.context":            "/redfish/v1/$metadata#ServiceRoot.ServiceRoot",
		"ProtocolFeaturesSupported": "",
	} {
		got := get(r.doc, strings.Split(path, "/")...)
		if want == "" {
			if got == nil {
				t.Errorf("%s missing", path)
			}
			continue
		}
		if got != want {
			t.Errorf("%s = %v, want %q", path, got, want)
		}
	}
	// Without the trailing slash too, as clients differ.
	mustStatus(t, call(t, srv, creds{}, "GET", "/redfish/v1", nil), 200)
}

func TestSystemsCollectionListsEveryMachine(t *testing.T) {
	l, srv := newTestLab(t, Config{Machines: 5})
	r := call(t, srv, credsOf(l, "lab-3"), "GET", "/redfish/v1/Systems", nil)
	mustStatus(t, r, 200)
	if n := get(r.doc, "Members@odata.count"); n != float64(5) {
		t.Fatalf("Members@odata.count = %v", n)
	}
	var ids []string
	for _, m := range as[[]any](t, r.doc["Members"]) {
		ids = append(ids, as[string](t, get(m, "@odata.id")))
	}
	want := []string{"/redfish/v1/Systems/lab-1", "/redfish/v1/Systems/lab-2", "/redfish/v1/Systems/lab-3", "/redfish/v1/Systems/lab-4", "/redfish/v1/Systems/lab-5"}
	if !slices.Equal(ids, want) {
		t.Fatalf("members %v, want %v", ids, want)
	}
	mustStatus(t, call(t, srv, creds{}, "GET", "/redfish/v1/Systems", nil), 401)

	m := call(t, srv, credsOf(l, "lab-3"), "GET", "/redfish/v1/Managers", nil)
	mustStatus(t, m, 200)
	if n := get(m.doc, "Members@odata.count"); n != float64(5) {
		t.Fatalf("Managers count = %v", n)
	}
}

func TestComputerSystemDocument(t *testing.T) {
	l, srv := newTestLab(t, Config{Machines: 2})
	r := call(t, srv, credsOf(l, "lab-2"), "GET", "/redfish/v1/Systems/lab-2", nil)
	mustStatus(t, r, 200)
	if r.header.Get("ETag") == "" {
		t.Error("no ETag header")
	}
	for path, want := range map[string]any{
		"@odata.id":                            "/redfish/v1/Systems/lab-2",
		"@odata.type":                          "#ComputerSystem.v1_20_0.ComputerSystem",
		"Id":                                   "lab-2",
		"Manufacturer":                         "OpenBareMetal Lab",
		"PowerState":                           "Off",
		"SerialNumber":                         "OBML000002",
		"Boot/BootSourceOverrideTarget":        "None",
		"Boot/BootSourceOverrideEnabled":       "Disabled",
		"Boot/BootSourceOverrideMode":          "UEFI",
		"ProcessorSummary/Count":               float64(2),
		"MemorySummary/TotalSystemMemoryGiB":   float64(64),
		"EthernetInterfaces/@odata.id":         "/redfish/v1/Systems/lab-2/EthernetInterfaces",
		"Storage/@odata.id":                    "/redfish/v1/Systems/lab-2/Storage",
		"Actions/#ComputerSystem.Reset/target": "/redfish/v1/Systems/lab-2/Actions/ComputerSystem.Reset",
	} {
		if got := get(r.doc, strings.Split(path, "/")...); got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	for _, k := range []string{"Model", "UUID", "BiosVersion", "@odata.context", "Name"} {
		if s, _ := r.doc[k].(string); s == "" {
			t.Errorf("%s missing", k)
		}
	}
	allowed := strs(t, get(r.doc, "Actions", "#ComputerSystem.Reset", "ResetType@Redfish.AllowableValues"))
	for _, rt := range []string{"On", "ForceOff", "GracefulShutdown", "ForceRestart", "PowerCycle"} {
		if !slices.Contains(allowed, rt) {
			t.Errorf("ResetType %s not allowed: %v", rt, allowed)
		}
	}
	targets := strs(t, get(r.doc, "Boot", "BootSourceOverrideTarget@Redfish.AllowableValues"))
	if !slices.Contains(targets, "Pxe") || !slices.Contains(targets, "Hdd") {
		t.Errorf("boot targets %v", targets)
	}

	nics := call(t, srv, credsOf(l, "lab-2"), "GET", "/redfish/v1/Systems/lab-2/EthernetInterfaces", nil)
	mustStatus(t, nics, 200)
	nicPath := as[string](t, get(as[[]any](t, nics.doc["Members"])[0], "@odata.id"))
	nic := call(t, srv, credsOf(l, "lab-2"), "GET", nicPath, nil)
	mustStatus(t, nic, 200)
	if nic.doc["MACAddress"] != strings.ToUpper(l.System("lab-2").MAC()) {
		t.Errorf("MACAddress %v, want %s", nic.doc["MACAddress"], l.System("lab-2").MAC())
	}
	if nic.doc["LinkStatus"] != "LinkDown" || nic.doc["SpeedMbps"] == nil || nic.doc["PermanentMACAddress"] == nil {
		t.Errorf("NIC %s", nic.raw)
	}

	st := call(t, srv, credsOf(l, "lab-2"), "GET", "/redfish/v1/Systems/lab-2/Storage/1", nil)
	mustStatus(t, st, 200)
	drivePath := as[string](t, get(as[[]any](t, st.doc["Drives"])[0], "@odata.id"))
	drive := call(t, srv, credsOf(l, "lab-2"), "GET", drivePath, nil)
	mustStatus(t, drive, 200)
	if as[float64](t, drive.doc["CapacityBytes"]) <= 0 {
		t.Errorf("drive %s", drive.raw)
	}

	mgr := call(t, srv, credsOf(l, "lab-2"), "GET", as[string](t, get(as[[]any](t, get(r.doc, "Links", "ManagedBy"))[0], "@odata.id")), nil)
	mustStatus(t, mgr, 200)
	if mgr.doc["ManagerType"] != "BMC" {
		t.Errorf("manager %s", mgr.raw)
	}
	for _, p := range []string{"/redfish/v1/Systems/lab-9", "/redfish/v1/Systems/lab-2/EthernetInterfaces/NIC7", "/redfish/v1/Nope"} {
		got := call(t, srv, credsOf(l, "lab-2"), "GET", p, nil)
		mustStatus(t, got, 404)
		redfishMessageIDs(t, got)
	}
}

func TestAuthentication(t *testing.T) {
	l, srv := newTestLab(t, Config{Machines: 2})
	own, other := credsOf(l, "lab-1"), credsOf(l, "lab-2")
	tests := []struct {
		name string
		c    creds
		path string
		want int
	}{
		{"basic auth, own system", own, "/redfish/v1/Systems/lab-1", 200},
		{"basic auth, own manager", own, "/redfish/v1/Managers/lab-1", 200},
		{"wrong password", creds{user: own.user, pass: "wrong"}, "/redfish/v1/Systems/lab-1", 401},
		{"unknown user", creds{user: "root", pass: own.pass}, "/redfish/v1/Systems/lab-1", 401},
		{"no credentials", creds{}, "/redfish/v1/Systems/lab-1", 401},
		{"another machine's credentials", other, "/redfish/v1/Systems/lab-1", 401},
		{"another machine's credentials on its NICs", other, "/redfish/v1/Systems/lab-1/EthernetInterfaces", 401},
		{"another machine's credentials on its manager", other, "/redfish/v1/Managers/lab-1", 401},
		{"bogus token", creds{token: "deadbeef"}, "/redfish/v1/Systems/lab-1", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, srv, tt.c, "GET", tt.path, nil)
			mustStatus(t, r, tt.want)
			if tt.want == 401 {
				redfishMessageIDs(t, r)
				if bytes.Contains(r.raw, []byte(own.pass)) {
					t.Error("error body echoes the password")
				}
			}
		})
	}
	// Another machine's credentials cannot power it on either.
	mustStatus(t, call(t, srv, other, "POST", "/redfish/v1/Systems/lab-1/Actions/ComputerSystem.Reset", map[string]string{"ResetType": "On"}), 401)
	if got := l.System("lab-1").PowerState(); got != "Off" {
		t.Fatalf("lab-1 powered %s by lab-2's credentials", got)
	}
}

func TestSessionLifecycle(t *testing.T) {
	l, srv := newTestLab(t, Config{Machines: 2})
	c := credsOf(l, "lab-1")

	bad := call(t, srv, creds{}, "POST", "/redfish/v1/SessionService/Sessions", map[string]string{"UserName": c.user, "Password": "nope"})
	mustStatus(t, bad, 401)
	redfishMessageIDs(t, bad)

	r := call(t, srv, creds{}, "POST", "/redfish/v1/SessionService/Sessions", map[string]string{"UserName": c.user, "Password": c.pass})
	mustStatus(t, r, 201)
	token, loc := r.header.Get("X-Auth-Token"), r.header.Get("Location")
	if token == "" || !strings.HasPrefix(loc, "/redfish/v1/SessionService/Sessions/") {
		t.Fatalf("token %q location %q", token, loc)
	}
	if r.doc["UserName"] != c.user || r.doc["@odata.id"] != loc || bytes.Contains(r.raw, []byte(c.pass)) {
		t.Fatalf("session document %s", r.raw)
	}
	tok := creds{token: token}

	mustStatus(t, call(t, srv, tok, "GET", "/redfish/v1/Systems/lab-1", nil), 200)
	mustStatus(t, call(t, srv, tok, "GET", "/redfish/v1/Systems/lab-2", nil), 401)
	mustStatus(t, call(t, srv, tok, "GET", "/redfish/v1/SessionService", nil), 200)
	list := call(t, srv, tok, "GET", "/redfish/v1/SessionService/Sessions", nil)
	mustStatus(t, list, 200)
	if get(list.doc, "Members@odata.count") != float64(1) {
		t.Fatalf("sessions %s", list.raw)
	}
	mustStatus(t, call(t, srv, tok, "GET", loc, nil), 200)
	// lab-2 cannot see or end lab-1's session.
	mustStatus(t, call(t, srv, credsOf(l, "lab-2"), "DELETE", loc, nil), 404)

	mustStatus(t, call(t, srv, tok, "DELETE", loc, nil), 204)
	mustStatus(t, call(t, srv, tok, "GET", "/redfish/v1/Systems/lab-1", nil), 401)
	// Basic auth still works after logout.
	mustStatus(t, call(t, srv, c, "GET", "/redfish/v1/Systems/lab-1", nil), 200)
}

func TestSessionTableIsBounded(t *testing.T) {
	l, srv := newTestLab(t, Config{Machines: 1})
	c := credsOf(l, "lab-1")
	for i := 0; i < maxSessionsPerSystem; i++ {
		mustStatus(t, call(t, srv, creds{}, "POST", "/redfish/v1/SessionService/Sessions", map[string]string{"UserName": c.user, "Password": c.pass}), 201)
	}
	r := call(t, srv, creds{}, "POST", "/redfish/v1/SessionService/Sessions", map[string]string{"UserName": c.user, "Password": c.pass})
	mustStatus(t, r, 503)
	if ids := redfishMessageIDs(t, r); ids[0] != "Base.1.8.SessionLimitExceeded" {
		t.Fatalf("message %v", ids)
	}
}

func reset(t testing.TB, srv *httptest.Server, c creds, system, resetType string) response {
	t.Helper()
	return call(t, srv, c, "POST", "/redfish/v1/Systems/"+system+"/Actions/ComputerSystem.Reset", map[string]string{"ResetType": resetType})
}

func TestResetChangesPowerState(t *testing.T) {
	l, srv := newTestLab(t, Config{Machines: 1})
	c := credsOf(l, "lab-1")
	s := l.System("lab-1")
	steps := []struct {
		resetType string
		want      string
		powerOns  int
	}{
		{"On", "On", 1},
		{"On", "On", 1}, // already on: nothing happens
		{"ForceRestart", "On", 2},
		{"PowerCycle", "On", 3},
		{"ForceOff", "Off", 3},
		{"ForceOff", "Off", 3},
		{"ForceRestart", "On", 4}, // restarting an off machine boots it
		{"GracefulShutdown", "Off", 4},
		{"ForceOn", "On", 5},
	}
	for _, st := range steps {
		mustStatus(t, reset(t, srv, c, "lab-1", st.resetType), 204)
		eventually(t, 2*time.Second, st.resetType+" -> "+st.want, func() bool { return s.PowerState() == st.want })
		if got := call(t, srv, c, "GET", "/redfish/v1/Systems/lab-1", nil).doc["PowerState"]; got != st.want {
			t.Fatalf("after %s: Redfish PowerState %v, want %s", st.resetType, got, st.want)
		}
		if got := s.PowerOnCount(); got != st.powerOns {
			t.Fatalf("after %s: PowerOnCount %d, want %d", st.resetType, got, st.powerOns)
		}
	}

	bad := reset(t, srv, c, "lab-1", "Explode")
	mustStatus(t, bad, 400)
	if ids := redfishMessageIDs(t, bad); ids[0] != "Base.1.8.ActionParameterNotSupported" {
		t.Errorf("message %v", ids)
	}
	missing := call(t, srv, c, "POST", "/redfish/v1/Systems/lab-1/Actions/ComputerSystem.Reset", map[string]string{})
	mustStatus(t, missing, 400)
	mustStatus(t, call(t, srv, c, "GET", "/redfish/v1/Systems/lab-1/Actions/ComputerSystem.Reset", nil), 405)
}

func TestGracefulShutdownIsCancelledByALaterAction(t *testing.T) {
	l, srv := newTestLab(t, Config{Machines: 1})
	l.gracefulDelay = 500 * time.Millisecond // long enough for a loaded CI machine
	c := credsOf(l, "lab-1")
	mustStatus(t, reset(t, srv, c, "lab-1", "On"), 204)
	mustStatus(t, reset(t, srv, c, "lab-1", "GracefulShutdown"), 204)
	if got := l.System("lab-1").PowerState(); got != "On" {
		t.Fatalf("graceful shutdown was instant: %s", got)
	}
	mustStatus(t, reset(t, srv, c, "lab-1", "ForceRestart"), 204)
	time.Sleep(2 * l.gracefulDelay) // the cancelled shutdown's moment passes
	if got := l.System("lab-1").PowerState(); got != "On" {
		t.Fatalf("a cancelled graceful shutdown still powered off: %s", got)
	}
}

func TestPatchBootOverride(t *testing.T) {
	l, srv := newTestLab(t, Config{Machines: 1})
	c := credsOf(l, "lab-1")
	path := "/redfish/v1/Systems/lab-1"
	etag := call(t, srv, c, "GET", path, nil).header.Get("ETag")
	pxeOnce := map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "UEFI"}}

	stale := call(t, srv, c, "PATCH", path, pxeOnce, "If-Match", `"0000000000000000"`)
	mustStatus(t, stale, 412)
	if ids := redfishMessageIDs(t, stale); ids[0] != "Base.1.8.PreconditionFailed" {
		t.Errorf("message %v", ids)
	}
	if got := l.System("lab-1").BootOverride(); got.Target != "None" {
		t.Fatalf("a 412 PATCH changed the override: %+v", got)
	}

	ok := call(t, srv, c, "PATCH", path, pxeOnce, "If-Match", etag)
	mustStatus(t, ok, 200)
	if got := l.System("lab-1").BootOverride(); got != (BootOverride{Target: "Pxe", Enabled: "Once", Mode: "UEFI"}) {
		t.Fatalf("override %+v", got)
	}
	newTag := call(t, srv, c, "GET", path, nil).header.Get("ETag")
	if newTag == etag || ok.header.Get("ETag") != newTag {
		t.Fatalf("ETag did not follow the change: before %s, PATCH %s, after %s", etag, ok.header.Get("ETag"), newTag)
	}
	// The old ETag is now stale.
	mustStatus(t, call(t, srv, c, "PATCH", path, pxeOnce, "If-Match", etag), 412)
	// Without If-Match the PATCH is unconditional.
	mustStatus(t, call(t, srv, c, "PATCH", path, map[string]any{"Boot": map[string]string{"BootSourceOverrideTarget": "Hdd"}}), 200)
	if got := l.System("lab-1").BootOverride(); got.Target != "Hdd" || got.Enabled != "Once" {
		t.Fatalf("override %+v", got)
	}

	tests := []struct {
		name string
		body any
		want string
	}{
		{"unknown property", map[string]any{"Frobnicate": true}, "Base.1.8.PropertyUnknown"},
		{"read-only property", map[string]any{"PowerState": "On"}, "Base.1.8.PropertyNotWritable"},
		{"unknown Boot property", map[string]any{"Boot": map[string]any{"BootNext": "0001"}}, "Base.1.8.PropertyUnknown"},
		{"value not allowed", map[string]any{"Boot": map[string]any{"BootSourceOverrideTarget": "Floppy"}}, "Base.1.8.PropertyValueNotInList"},
		{"wrong type", map[string]any{"Boot": map[string]any{"BootSourceOverrideEnabled": 1}}, "Base.1.8.PropertyValueTypeError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, srv, c, "PATCH", path, tt.body)
			mustStatus(t, r, 400)
			if ids := redfishMessageIDs(t, r); !slices.Contains(ids, tt.want) {
				t.Fatalf("messages %v, want %s", ids, tt.want)
			}
			if got := l.System("lab-1").BootOverride(); got.Target != "Hdd" {
				t.Fatalf("a rejected PATCH changed the override: %+v", got)
			}
		})
	}
	// Annotations a client copies from the GET are not properties.
	mustStatus(t, call(t, srv, c, "PATCH", path, map[string]any{"Boot": map[string]any{
		"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideTarget@Redfish.AllowableValues": []string{"Pxe"}}}), 200)
}

func TestOnceOverrideIsConsumedByPowerOn(t *testing.T) {
	l, srv := newTestLab(t, Config{Machines: 1}) // no BootURL: the machine boots nothing
	c := credsOf(l, "lab-1")
	mustStatus(t, call(t, srv, c, "PATCH", "/redfish/v1/Systems/lab-1", map[string]any{"Boot": map[string]string{
		"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Continuous"}}), 200)
	mustStatus(t, reset(t, srv, c, "lab-1", "On"), 204)
	if got := l.System("lab-1").BootOverride(); got.Target != "Pxe" || got.Enabled != "Continuous" {
		t.Fatalf("Continuous override changed by a boot: %+v", got)
	}
	mustStatus(t, call(t, srv, c, "PATCH", "/redfish/v1/Systems/lab-1", map[string]any{"Boot": map[string]string{
		"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}), 200)
	mustStatus(t, reset(t, srv, c, "lab-1", "ForceRestart"), 204)
	if got := l.System("lab-1").BootOverride(); got.Target != "None" || got.Enabled != "Disabled" {
		t.Fatalf("Once override survived the boot: %+v", got)
	}
}

func TestFaults(t *testing.T) {
	t.Run("latency", func(t *testing.T) {
		l, srv := newTestLab(t, Config{Machines: 2})
		l.SetFault("lab-1", Fault{Latency: 300 * time.Millisecond})
		start := time.Now()
		mustStatus(t, call(t, srv, credsOf(l, "lab-1"), "GET", "/redfish/v1/Systems/lab-1", nil), 200)
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Fatalf("answered in %v despite 300ms latency", d)
		}
		mustStatus(t, call(t, srv, credsOf(l, "lab-2"), "GET", "/redfish/v1/Systems/lab-2", nil), 200)
		for _, r := range l.Requests() {
			if d := r.End.Sub(r.Start); r.System == "lab-2" && d >= 300*time.Millisecond {
				t.Fatalf("the healthy machine's request took %v", d)
			}
		}
	})
	t.Run("503 for the next N requests", func(t *testing.T) {
		l, srv := newTestLab(t, Config{Machines: 2})
		l.SetFault("lab-1", Fault{Fail503Next: 2})
		c := credsOf(l, "lab-1")
		for i := 0; i < 2; i++ {
			r := call(t, srv, c, "GET", "/redfish/v1/Systems/lab-1", nil)
			mustStatus(t, r, 503)
			if r.header.Get("Retry-After") != "1" {
				t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
			}
			redfishMessageIDs(t, r)
		}
		mustStatus(t, call(t, srv, c, "GET", "/redfish/v1/Systems/lab-1", nil), 200)
		if f := l.System("lab-1").Faults(); f.Fail503Next != 0 {
			t.Fatalf("remaining 503s %d", f.Fail503Next)
		}
		mustStatus(t, call(t, srv, credsOf(l, "lab-2"), "GET", "/redfish/v1/Systems/lab-2", nil), 200)
	})
	t.Run("refused login", func(t *testing.T) {
		l, srv := newTestLab(t, Config{Machines: 1})
		c := credsOf(l, "lab-1")
		r := call(t, srv, creds{}, "POST", "/redfish/v1/SessionService/Sessions", map[string]string{"UserName": c.user, "Password": c.pass})
		mustStatus(t, r, 201)
		tok := creds{token: r.header.Get("X-Auth-Token")}
		l.SetFault("lab-1", Fault{RefuseLogin: true})
		mustStatus(t, call(t, srv, c, "GET", "/redfish/v1/Systems/lab-1", nil), 401)
		mustStatus(t, call(t, srv, tok, "GET", "/redfish/v1/Systems/lab-1", nil), 401)
		mustStatus(t, call(t, srv, creds{}, "POST", "/redfish/v1/SessionService/Sessions", map[string]string{"UserName": c.user, "Password": c.pass}), 401)
		l.SetFault("lab-1", Fault{})
		mustStatus(t, call(t, srv, c, "GET", "/redfish/v1/Systems/lab-1", nil), 200)
	})
	t.Run("ignored power actions", func(t *testing.T) {
		l, srv := newTestLab(t, Config{Machines: 1})
		l.SetFault("lab-1", Fault{IgnorePower: true})
		mustStatus(t, reset(t, srv, credsOf(l, "lab-1"), "lab-1", "On"), 204)
		if got := l.System("lab-1").PowerState(); got != "Off" {
			t.Fatalf("power %s despite IgnorePower", got)
		}
		if n := l.System("lab-1").PowerOnCount(); n != 0 {
			t.Fatalf("PowerOnCount %d", n)
		}
	})
	t.Run("reverting boot override", func(t *testing.T) {
		l, srv := newTestLab(t, Config{Machines: 1})
		l.SetFault("lab-1", Fault{RevertBootOverride: true})
		c := credsOf(l, "lab-1")
		r := call(t, srv, c, "PATCH", "/redfish/v1/Systems/lab-1", map[string]any{"Boot": map[string]string{
			"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}})
		mustStatus(t, r, 200)
		if get(r.doc, "Boot", "BootSourceOverrideTarget") != "Pxe" {
			t.Fatalf("the PATCH answer should claim success: %s", r.raw)
		}
		after := call(t, srv, c, "GET", "/redfish/v1/Systems/lab-1", nil)
		if got := get(after.doc, "Boot", "BootSourceOverrideTarget"); got != "None" {
			t.Fatalf("override %v after a reverting PATCH, want None", got)
		}
	})
	t.Run("stale power state", func(t *testing.T) {
		l, srv := newTestLab(t, Config{Machines: 1})
		l.SetFault("lab-1", Fault{LiePowerStateFor: time.Second})
		c := credsOf(l, "lab-1")
		mustStatus(t, reset(t, srv, c, "lab-1", "On"), 204)
		if got := call(t, srv, c, "GET", "/redfish/v1/Systems/lab-1", nil).doc["PowerState"]; got != "Off" {
			t.Fatalf("PowerState %v right after power on, want the stale Off", got)
		}
		if got := l.System("lab-1").PowerState(); got != "On" {
			t.Fatalf("true power %s", got)
		}
		eventually(t, 5*time.Second, "the BMC to report On", func() bool {
			return call(t, srv, c, "GET", "/redfish/v1/Systems/lab-1", nil).doc["PowerState"] == "On"
		})
	})
}

func TestRequestLogShowsOverlap(t *testing.T) {
	l, srv := newTestLab(t, Config{Machines: 1})
	l.SetFault("lab-1", Fault{Latency: 300 * time.Millisecond})
	c := credsOf(l, "lab-1")
	done := make(chan struct{})
	for i := 0; i < 2; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			call(t, srv, c, "GET", "/redfish/v1/Systems/lab-1", nil)
		}()
	}
	<-done
	<-done
	var recs []RequestRecord
	for _, r := range l.Requests() {
		if r.System == "lab-1" {
			recs = append(recs, r)
		}
	}
	if len(recs) != 2 {
		t.Fatalf("%d records: %+v", len(recs), recs)
	}
	for _, r := range recs {
		if r.Method != "GET" || r.Path != "/redfish/v1/Systems/lab-1" || r.Status != 200 || r.End.Sub(r.Start) < 300*time.Millisecond || !r.Time.Equal(r.Start) {
			t.Fatalf("record %+v", r)
		}
	}
	// The lab itself must not serialise: concurrent calls overlap in the log,
	// so a client test can tell whether the client serialised them.
	a, b := recs[0], recs[1]
	if !a.Start.Before(b.End) || !b.Start.Before(a.End) {
		t.Fatalf("concurrent requests did not overlap: %+v", recs)
	}
}

func TestInventory(t *testing.T) {
	l, _ := newTestLab(t, Config{Machines: 3, NamePrefix: "node-"})
	inv := l.Inventory("http://127.0.0.1:9000/")
	if len(inv) != 3 {
		t.Fatalf("%d entries", len(inv))
	}
	seenPW := map[string]bool{}
	for i, e := range inv {
		want := InventoryEntry{Name: "node-" + string(rune('1'+i)), Endpoint: "http://127.0.0.1:9000/redfish/v1/Systems/node-" + string(rune('1'+i))}
		if e.Name != want.Name || e.Endpoint != want.Endpoint || e.Username == "" || e.Password == "" || e.MAC != macFor(i+1) {
			t.Fatalf("entry %d: %+v", i, e)
		}
		if seenPW[e.Password] {
			t.Fatal("two machines share a password")
		}
		seenPW[e.Password] = true
	}
	// Random passwords without a seed.
	l2, err := New(Config{Machines: 2, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	l3, err := New(Config{Machines: 2, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Close()
	if l2.Inventory("")[0].Password == l3.Inventory("")[0].Password {
		t.Fatal("unseeded passwords repeat across labs")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Machines: 0},
		{Machines: 1, Backend: "vmware"},
		{Machines: 1, Backend: BackendQEMU}, // no state dir
		{Machines: 1, Backend: BackendQEMU, StateDir: t.TempDir(), QEMUBinary: "/nonexistent/qemu"},
		{Machines: 1, BootURL: "10.0.0.1:8080"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestScaleThousandsOfSystems(t *testing.T) {
	start := time.Now()
	l, srv := newTestLab(t, Config{Machines: 2000})
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("creating 2000 systems took %v", d)
	}
	r := call(t, srv, credsOf(l, "lab-1999"), "GET", "/redfish/v1/Systems", nil)
	mustStatus(t, r, 200)
	if n := get(r.doc, "Members@odata.count"); n != float64(2000) {
		t.Fatalf("count %v", n)
	}
	mustStatus(t, reset(t, srv, credsOf(l, "lab-2000"), "lab-2000", "On"), 204)
	if l.System("lab-2000").PowerState() != "On" || l.System("lab-1").PowerState() != "Off" {
		t.Fatal("power state crossed systems")
	}
}

func TestIdleSessionsExpire(t *testing.T) {
	l, srv := newTestLab(t, Config{Machines: 1})
	c := credsOf(l, "lab-1")
	r := call(t, srv, creds{}, "POST", "/redfish/v1/SessionService/Sessions", map[string]string{"UserName": c.user, "Password": c.pass})
	mustStatus(t, r, 201)
	tok := creds{token: r.header.Get("X-Auth-Token")}
	mustStatus(t, call(t, srv, tok, "GET", "/redfish/v1/Systems/lab-1", nil), 200)
	l.sessMu.Lock()
	for _, ss := range l.sessions {
		ss.lastUsed = time.Now().Add(-sessionTimeout - time.Second)
	}
	l.sessMu.Unlock()
	mustStatus(t, call(t, srv, tok, "GET", "/redfish/v1/Systems/lab-1", nil), 401)
	l.sessMu.Lock()
	left := len(l.sessions) + len(l.sessByID) + len(l.System("lab-1").sessions)
	l.sessMu.Unlock()
	if left != 0 {
		t.Fatalf("expired session still held (%d entries)", left)
	}
}

func TestFirmwareMixed(t *testing.T) {
	l, srv := newTestLab(t, Config{Machines: 3, Firmware: FirmwareMixed})
	for _, tt := range []struct {
		name, firmware, mode string
	}{
		{"lab-1", FirmwareBIOS, "Legacy"},
		{"lab-2", FirmwareUEFI, "UEFI"},
		{"lab-3", FirmwareBIOS, "Legacy"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := l.System(tt.name).Firmware(); got != tt.firmware {
				t.Errorf("firmware %q, want %q", got, tt.firmware)
			}
			r := call(t, srv, credsOf(l, tt.name), "GET", "/redfish/v1/Systems/"+tt.name, nil)
			mustStatus(t, r, 200)
			if got := get(r.doc, "Boot", "BootSourceOverrideMode"); got != tt.mode {
				t.Errorf("BootSourceOverrideMode %v, want %s", got, tt.mode)
			}
			allowed, _ := get(r.doc, "Boot", "BootSourceOverrideMode@Redfish.AllowableValues").([]any)
			if len(allowed) != 1 || allowed[0] != tt.mode {
				t.Errorf("BootSourceOverrideMode@Redfish.AllowableValues %v, want [%s] only", allowed, tt.mode)
			}
		})
	}
	var firmwares []string
	for _, e := range l.Inventory("http://lab") {
		firmwares = append(firmwares, e.Firmware)
	}
	if !slices.Equal(firmwares, []string{"bios", "uefi", "bios"}) {
		t.Errorf("inventory firmwares %v", firmwares)
	}
}

// A UEFI-only machine refuses a Legacy override as a value outside its list
// (400 PropertyValueNotInList), keeping the override it had, as UEFI-only
// servers do; the lab documents this as its one behaviour.
func TestLegacyOverrideRefusedOnUEFIOnly(t *testing.T) {
	l, srv := newTestLab(t, Config{Machines: 1, Firmware: FirmwareUEFI})
	c := credsOf(l, "lab-1")
	r := call(t, srv, c, "PATCH", "/redfish/v1/Systems/lab-1", map[string]any{"Boot": map[string]string{
		"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "Legacy"}})
	mustStatus(t, r, 400)
	if ids := redfishMessageIDs(t, r); len(ids) != 1 || ids[0] != "Base.1.8.PropertyValueNotInList" {
		t.Errorf("messages %v, want one PropertyValueNotInList", ids)
	}
	if got := l.System("lab-1").BootOverride(); got != (BootOverride{Target: "None", Enabled: "Disabled", Mode: "UEFI"}) {
		t.Errorf("the refused PATCH changed the override: %+v", got)
	}
	mustStatus(t, call(t, srv, c, "PATCH", "/redfish/v1/Systems/lab-1", map[string]any{"Boot": map[string]string{
		"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "UEFI"}}), 200)
}

func TestFirmwareConfigRefused(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown firmware", Config{Machines: 1, Firmware: "coreboot"}, `unknown firmware "coreboot"`},
		{"taps on memory", Config{Machines: 1, Firmware: FirmwareUEFI, Taps: []string{"tap0"}}, "needs the qemu backend"},
		{"taps per machine", Config{Machines: 2, Backend: BackendQEMU, StateDir: t.TempDir(), Firmware: FirmwareUEFI, Taps: []string{"tap0"}}, "1 tap interfaces for 2 machines"},
		{"taps with BIOS", Config{Machines: 2, Backend: BackendQEMU, StateDir: t.TempDir(), Firmware: FirmwareMixed, Taps: []string{"t0", "t1"}}, "machine 1 boots BIOS"},
		{"missing OVMF", Config{Machines: 1, Backend: BackendQEMU, StateDir: t.TempDir(), Firmware: FirmwareUEFI, OVMFCode: "/nonexistent/OVMF_CODE.fd"}, "install Debian's ovmf package"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.Backend == BackendQEMU {
				requireQEMU(t)
			}
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
