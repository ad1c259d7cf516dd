package bmc

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// capturesDir holds the vendor captures (see ../shared/redfish-mockups in
// the repository's parent); BMC_MOCKUPS_DIR overrides it.
func capturesDir(t testing.TB) string {
	dir := os.Getenv("BMC_MOCKUPS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "redfish-mockups")
	}
	if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
		// CI always has shared/ beside the clone: a missing capture there is
		// a broken setup, not a reason to skip the vendor checks.
		if os.Getenv("CI") != "" {
			t.Fatalf("vendor captures not found at %s (set BMC_MOCKUPS_DIR): %v", dir, err)
		}
		t.Skipf("vendor captures not found at %s (set BMC_MOCKUPS_DIR): %v", dir, err)
	}
	return dir
}

// syntheticRoot stands in for a capture whose ServiceRoot is not an object
// (Supermicro X10 answers a bare null).
const syntheticRoot = `{"@odata.id":"/redfish/v1","@odata.type":"#ServiceRoot.v1_0_0.ServiceRoot","Id":"RootService",
"Name":"Root Service","RedfishVersion":"1.0.1","Systems":{"@odata.id":"/redfish/v1/Systems"},
"Managers":{"@odata.id":"/redfish/v1/Managers"},"SessionService":{"@odata.id":"/redfish/v1/SessionService"},
"Links":{"Sessions":{"@odata.id":"/redfish/v1/SessionService/Sessions"}}}`

type patchRecord struct {
	Body    map[string]any
	IfMatch string
	HasIf   bool
}

// mockBMC serves a vendor capture read-only (GET /redfish/v1/... maps to
// <capture>/redfish/v1/.../index.json) and emulates the writes a BMC client
// makes: sessions, ComputerSystem.Reset and the Boot PATCH, which update the
// power state and boot override it serves.
type mockBMC struct {
	t          testing.TB
	dir        string
	user, pass string
	sysPath    string   // the capture's system, without trailing slash
	systems    []byte   // the Systems collection served
	allowed    []string // served ResetType@Redfish.AllowableValues

	mu           sync.Mutex
	power        string
	boot         map[string]any
	etag         string // "" when the capture publishes none
	resets       []string
	rejected     []string // reset types outside the allowable list
	patches      []patchRecord
	sessions     map[string]string // token -> session path
	sessionPosts int
	deletes      []string
	auths        []string // Authorization scheme or "token" per authenticated request

	revert      bool            // accept Boot PATCHes, change nothing
	ignoreReset map[string]bool // accept these reset types, change nothing
	noSessions  bool            // SessionService POST answers 405
	echo        bool            // error bodies quote the request body (leak test)
	hook        func(w http.ResponseWriter, r *http.Request) bool
}

func newMockBMC(t testing.TB, capture, user, pass string) *mockBMC { //nolint:unparam // the credentials each test logs in with are spelled out at its call
	dir := filepath.Join(capturesDir(t), capture)
	m := &mockBMC{t: t, dir: dir, user: user, pass: pass, sessions: map[string]string{}, ignoreReset: map[string]bool{}}
	var coll struct {
		Members []struct {
			ID string `json:"@odata.id"`
		}
	}
	m.systems = m.systemsCollection()
	if err := json.Unmarshal(m.systems, &coll); err != nil {
		t.Fatalf("%s: Systems collection: %v", capture, err)
	}
	if len(coll.Members) != 1 {
		t.Fatalf("%s: want one system, capture has %d", capture, len(coll.Members))
	}
	m.sysPath = strings.TrimSuffix(coll.Members[0].ID, "/")
	var sys struct {
		PowerState string
		ETag       string `json:"@odata.etag"`
		Boot       map[string]any
		Actions    struct {
			Reset struct {
				Allowed []string `json:"ResetType@Redfish.AllowableValues"`
			} `json:"#ComputerSystem.Reset"`
		}
	}
	m.readJSON(m.sysPath, &sys)
	m.power, m.etag, m.boot, m.allowed = sys.PowerState, sys.ETag, sys.Boot, sys.Actions.Reset.Allowed
	return m
}

// systemsCollection is the capture's Systems collection, or one listing its
// system directories when the capture has none (Quanta D42A-2U).
func (m *mockBMC) systemsCollection() []byte {
	if b, err := os.ReadFile(m.file("/redfish/v1/Systems")); err == nil {
		return b
	}
	entries, err := os.ReadDir(filepath.Join(m.dir, "redfish", "v1", "Systems"))
	if err != nil {
		m.t.Fatal(err)
	}
	var members []map[string]string
	for _, e := range entries {
		if e.IsDir() {
			members = append(members, map[string]string{"@odata.id": "/redfish/v1/Systems/" + e.Name()})
		}
	}
	b, _ := json.Marshal(map[string]any{"@odata.id": "/redfish/v1/Systems", "@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
		"Name": "Computer System Collection", "Members@odata.count": len(members), "Members": members})
	return b
}

func (m *mockBMC) file(p string) string {
	return filepath.Join(m.dir, filepath.FromSlash(strings.TrimPrefix(p, "/")), "index.json")
}

func (m *mockBMC) readJSON(p string, v any) {
	b, err := os.ReadFile(m.file(p))
	if err != nil {
		m.t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		m.t.Fatalf("%s: %v", p, err)
	}
}

func redfishErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": "Base.1.8.GeneralError", "message": msg,
		"@Message.ExtendedInfo": []map[string]any{{"MessageId": "Base.1.8.GeneralError", "Message": msg}},
	}})
}

func token() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (m *mockBMC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m.hook != nil && m.hook(w, r) {
		return
	}
	body, _ := io.ReadAll(r.Body)
	p := strings.TrimSuffix(r.URL.Path, "/")
	sessions := m.sessionsPath()

	switch {
	case p == "/redfish/v1" && r.Method == http.MethodGet:
		b, err := os.ReadFile(m.file(p))
		if err != nil {
			m.t.Error(err)
		}
		if strings.TrimSpace(string(b)) == "null" {
			b = []byte(syntheticRoot)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
		return
	case p == sessions && r.Method == http.MethodPost:
		m.mu.Lock()
		defer m.mu.Unlock()
		m.sessionPosts++
		if m.noSessions {
			redfishErr(w, http.StatusMethodNotAllowed, "sessions are disabled")
			return
		}
		var creds struct{ UserName, Password string }
		_ = json.Unmarshal(body, &creds)
		if creds.UserName != m.user || creds.Password != m.pass {
			msg := "invalid credentials"
			if m.echo {
				msg += " in " + string(body)
			}
			redfishErr(w, http.StatusUnauthorized, msg)
			return
		}
		tok := token()
		loc := sessions + "/" + tok[:8]
		m.sessions[tok] = loc
		w.Header().Set("X-Auth-Token", tok)
		w.Header().Set("Location", loc)
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"@odata.id":"` + loc + `"}`))
		return
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.authorized(r) {
		msg := "authentication required"
		if m.echo {
			msg += "; got " + r.Header.Get("Authorization")
		}
		redfishErr(w, http.StatusUnauthorized, msg)
		return
	}
	switch {
	case strings.HasPrefix(p, sessions+"/") && r.Method == http.MethodDelete:
		for tok, loc := range m.sessions {
			if loc == p {
				delete(m.sessions, tok)
			}
		}
		m.deletes = append(m.deletes, p)
		w.WriteHeader(http.StatusNoContent)
	case p == m.sysPath+"/Actions/ComputerSystem.Reset" && r.Method == http.MethodPost:
		var req struct{ ResetType string }
		_ = json.Unmarshal(body, &req)
		if len(m.allowed) > 0 && !slices.Contains(m.allowed, req.ResetType) {
			m.rejected = append(m.rejected, req.ResetType)
			redfishErr(w, http.StatusBadRequest, "ResetType "+req.ResetType+" is not supported")
			return
		}
		m.resets = append(m.resets, req.ResetType)
		if !m.ignoreReset[req.ResetType] {
			switch req.ResetType {
			case "ForceOff", "GracefulShutdown":
				m.power = "Off"
			case "PushPowerButton":
				m.power = map[string]string{"On": "Off", "Off": "On"}[m.power]
			default:
				m.power = "On"
			}
		}
		w.WriteHeader(http.StatusNoContent)
	case p == m.sysPath && r.Method == http.MethodPatch:
		var req map[string]any
		_ = json.Unmarshal(body, &req)
		_, has := r.Header["If-Match"]
		m.patches = append(m.patches, patchRecord{Body: req, IfMatch: r.Header.Get("If-Match"), HasIf: has})
		if has && m.etag != "" && r.Header.Get("If-Match") != m.etag {
			redfishErr(w, http.StatusPreconditionFailed, "stale ETag")
			return
		}
		if boot, ok := req["Boot"].(map[string]any); ok && !m.revert {
			for k, v := range boot {
				m.boot[k] = v
			}
		}
		if m.etag != "" {
			m.etag = fmt.Sprintf(`W/"%08X"`, len(m.patches)*7919)
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method != http.MethodGet:
		redfishErr(w, http.StatusMethodNotAllowed, r.Method+" not allowed here")
	case p == "/redfish/v1/Systems":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(m.systems)
	case p == m.sysPath:
		var doc map[string]any
		m.readJSON(p, &doc)
		doc["PowerState"] = m.power
		doc["Boot"] = m.boot
		if m.allowed != nil {
			acts, _ := doc["Actions"].(map[string]any)
			reset, ok := acts["#ComputerSystem.Reset"].(map[string]any)
			if ok {
				reset["ResetType@Redfish.AllowableValues"] = m.allowed
			} else {
				m.t.Errorf("capture %s has no reset action to list allowed values in", p)
			}
		}
		if m.etag != "" {
			doc["@odata.etag"] = m.etag
			w.Header().Set("ETag", m.etag)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
	default:
		b, err := os.ReadFile(m.file(p))
		if err != nil {
			redfishErr(w, http.StatusNotFound, "no resource at "+r.URL.Path)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}
}

// sessionsPath is where the capture's service root says sessions are made
// (dellfish links /redfish/v1/Sessions), the standard path otherwise.
func (m *mockBMC) sessionsPath() string {
	var root rootLinks
	if b, err := os.ReadFile(m.file("/redfish/v1")); err == nil {
		_ = json.Unmarshal(b, &root)
	}
	if p := strings.TrimSuffix(root.Links.Sessions.ID, "/"); p != "" {
		return p
	}
	return "/redfish/v1/SessionService/Sessions"
}

// authorized accepts a live session token or the right basic credentials;
// callers hold m.mu.
func (m *mockBMC) authorized(r *http.Request) bool {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		_, ok := m.sessions[tok]
		if ok {
			m.auths = append(m.auths, "token")
		}
		return ok
	}
	if u, p, ok := r.BasicAuth(); ok {
		m.auths = append(m.auths, "Basic")
		return u == m.user && p == m.pass
	}
	return false
}

func (m *mockBMC) snapshot() (resets []string, patches []patchRecord, power string) { //nolint:unparam // the whole mock state; dropping power would touch 9 call sites in a package under concurrent change
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.resets), slices.Clone(m.patches), m.power
}

func basic(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}
