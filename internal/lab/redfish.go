package lab

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

const (
	redfishRoot = "/redfish/v1"
	// sessionTimeout is the idle timeout the SessionService advertises.
	sessionTimeout = 30 * time.Minute
	// maxSessionsPerSystem mimics a BMC's session table: a client that
	// never logs out runs out of sessions, as it would on real hardware.
	maxSessionsPerSystem = 64
	maxBody              = 1 << 20
	msgPrefix            = "Base.1.8."
)

// Allowable values of the Boot properties.
var (
	bootTargets  = []string{"None", "Pxe", "Hdd", "Cd", "BiosSetup"}
	bootEnabled  = []string{"Disabled", "Once", "Continuous"}
	bootWritable = []string{"BootSourceOverrideTarget", "BootSourceOverrideEnabled", "BootSourceOverrideMode"}
)

type session struct {
	id       string
	token    string
	sys      *System
	lastUsed time.Time
}

// route is a parsed Redfish path.
type route struct {
	kind   string // see parseRoute
	system string // Systems/<system>/... or Managers/<system>
	member string // a session id, NIC id, ...
}

func parseRoute(path string) route {
	if path == "/redfish" {
		return route{kind: "versions"}
	}
	rest, ok := strings.CutPrefix(path, redfishRoot)
	if !ok {
		return route{}
	}
	rest = strings.Trim(rest, "/")
	if rest == "" {
		return route{kind: "root"}
	}
	p := strings.Split(rest, "/")
	switch {
	case len(p) == 1 && p[0] == "SessionService":
		return route{kind: "sessionService"}
	case len(p) == 2 && p[0] == "SessionService" && p[1] == "Sessions":
		return route{kind: "sessions"}
	case len(p) == 3 && p[0] == "SessionService" && p[1] == "Sessions":
		return route{kind: "session", member: p[2]}
	case len(p) == 1 && p[0] == "Systems":
		return route{kind: "systems"}
	case len(p) == 1 && p[0] == "Managers":
		return route{kind: "managers"}
	case len(p) == 2 && p[0] == "Managers":
		return route{kind: "manager", system: p[1]}
	case p[0] != "Systems":
		return route{}
	}
	r := route{system: p[1]}
	switch sub := p[2:]; {
	case len(sub) == 0:
		r.kind = "system"
	case len(sub) == 2 && sub[0] == "Actions" && sub[1] == "ComputerSystem.Reset":
		r.kind = "reset"
	case len(sub) == 1 && sub[0] == "EthernetInterfaces":
		r.kind = "nics"
	case len(sub) == 2 && sub[0] == "EthernetInterfaces":
		r.kind, r.member = "nic", sub[1]
	case len(sub) == 1 && sub[0] == "Storage":
		r.kind = "storages"
	case len(sub) == 2 && sub[0] == "Storage":
		r.kind, r.member = "storage", sub[1]
	case len(sub) == 4 && sub[0] == "Storage" && sub[2] == "Drives":
		r.kind, r.member = "drive", sub[1]+"/"+sub[3]
	case len(sub) == 3 && sub[0] == "Oem" && sub[1] == "Lab" && sub[2] == "LastPXE":
		r.kind = "lastPXE"
	}
	return r
}

// statusWriter remembers the status for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (l *Lab) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	rt := parseRoute(r.URL.Path)
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	var attributed *System
	defer func() {
		rec := RequestRecord{Time: start, Method: r.Method, Path: r.URL.Path, Start: start, End: time.Now(), Status: sw.status}
		if attributed != nil {
			rec.System = attributed.name
		}
		l.record(rec)
	}()
	if err != nil || len(body) > maxBody {
		writeError(sw, http.StatusBadRequest, "MalformedJSON", "The request body could not be read or is larger than 1 MiB.")
		return
	}

	attributed = l.attribute(r, rt, body)
	if attributed != nil {
		attributed.count(r, rt)
		if !attributed.injectFaults(sw, r, rt) {
			return
		}
	}

	switch rt.kind {
	case "versions":
		if allow(sw, r, http.MethodGet) {
			writeJSON(sw, http.StatusOK, map[string]any{"v1": redfishRoot + "/"})
		}
	case "root":
		if allow(sw, r, http.MethodGet) {
			writeJSON(sw, http.StatusOK, l.serviceRootDoc())
		}
	case "sessions":
		if r.Method == http.MethodPost {
			l.createSession(sw, body)
			return
		}
		if !allow(sw, r, http.MethodGet, http.MethodPost) {
			return
		}
		if p := l.authorize(sw, r, nil); p != nil {
			writeJSON(sw, http.StatusOK, l.sessionsDoc(p))
		}
	case "session":
		l.serveSession(sw, r, rt.member)
	case "sessionService":
		if allow(sw, r, http.MethodGet) && l.authorize(sw, r, nil) != nil {
			writeJSON(sw, http.StatusOK, sessionServiceDoc())
		}
	case "systems":
		if allow(sw, r, http.MethodGet) && l.authorize(sw, r, nil) != nil {
			writeJSON(sw, http.StatusOK, l.collectionDoc("Systems", "#ComputerSystemCollection.ComputerSystemCollection", "Computer System Collection"))
		}
	case "managers":
		if allow(sw, r, http.MethodGet) && l.authorize(sw, r, nil) != nil {
			writeJSON(sw, http.StatusOK, l.collectionDoc("Managers", "#ManagerCollection.ManagerCollection", "Manager Collection"))
		}
	case "":
		writeError(sw, http.StatusNotFound, "ResourceMissingAtURI", fmt.Sprintf("The resource at the URI %s was not found.", r.URL.Path), r.URL.Path)
	default:
		s := l.systems[rt.system]
		if s == nil {
			// Only a logged-in client learns which systems do not exist.
			if l.authorize(sw, r, nil) != nil {
				writeError(sw, http.StatusNotFound, "ResourceMissingAtURI", fmt.Sprintf("The resource at the URI %s was not found.", r.URL.Path), r.URL.Path)
			}
			return
		}
		if l.authorize(sw, r, s) == nil {
			return
		}
		s.serve(sw, r, rt, body)
	}
}

// attribute names the machine a request is about: the system in its path,
// else the owner of its credentials. Faults and the request log use it.
func (l *Lab) attribute(r *http.Request, rt route, body []byte) *System {
	if rt.system != "" {
		if s := l.systems[rt.system]; s != nil {
			return s
		}
	}
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		l.sessMu.Lock()
		defer l.sessMu.Unlock()
		if ss := l.sessions[tok]; ss != nil {
			return ss.sys
		}
		return nil
	}
	if u, _, ok := r.BasicAuth(); ok {
		return l.byUser[u]
	}
	if rt.kind == "sessions" && r.Method == http.MethodPost {
		var creds struct{ UserName string }
		if json.Unmarshal(body, &creds) == nil {
			return l.byUser[creds.UserName]
		}
	}
	return nil
}

// count records, on arrival, the requests tests count at the BMC.
func (s *System) count(r *http.Request, rt route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case rt.kind == "reset" && r.Method == http.MethodPost:
		s.counts.Resets++
	case rt.kind == "system" && r.Method == http.MethodPatch:
		s.counts.Patches++
	case rt.kind == "sessions" && r.Method == http.MethodPost:
		s.counts.Logins++
	}
}

// injectFaults applies hangs, latency, bad JSON and 503s; false means it
// answered already (or never will).
func (s *System) injectFaults(w http.ResponseWriter, r *http.Request, rt route) bool {
	s.mu.Lock()
	latency, hang, badJSON := s.fault.Latency, s.fault.Hang, s.fault.BadJSON
	s.mu.Unlock()
	if hang {
		select {
		case <-r.Context().Done():
		case <-s.lab.ctx.Done():
		}
		return false
	}
	if badJSON && r.Method == http.MethodGet && rt.system != "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "<html><body>Internal firmware error: {\"PowerState\": On,</body></html>\n")
		return false
	}
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return false
		}
	}
	s.mu.Lock()
	fail := s.fail503Left > 0
	if fail {
		s.fail503Left--
	}
	s.mu.Unlock()
	if fail {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "ServiceTemporarilyUnavailable",
			"The service is temporarily unavailable. Retry in 1 seconds.", "1")
		return false
	}
	return true
}

// principal returns whose credentials a request carries, or nil.
func (l *Lab) principal(r *http.Request) *System {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		l.sessMu.Lock()
		defer l.sessMu.Unlock()
		ss := l.sessions[tok]
		if ss == nil {
			return nil
		}
		now := time.Now()
		if now.Sub(ss.lastUsed) > sessionTimeout {
			l.dropSessionLocked(ss)
			return nil
		}
		ss.lastUsed = now
		return ss.sys
	}
	u, p, ok := r.BasicAuth()
	if !ok {
		return nil
	}
	s := l.byUser[u]
	if s == nil || !s.login(p) {
		return nil
	}
	return s
}

// login checks a password against the account, counting failures and
// applying a LockoutAfter fault.
func (s *System) login(password string) bool {
	ok := subtle.ConstantTimeCompare([]byte(password), []byte(s.password)) == 1
	s.mu.Lock()
	defer s.mu.Unlock()
	locked := s.fault.LockoutAfter > 0 && s.failedLogins >= s.fault.LockoutAfter
	if !ok || locked {
		s.counts.FailedLogins++
		s.failedLogins++
		if s.fault.LockoutAfter > 0 && s.failedLogins == s.fault.LockoutAfter {
			s.lab.log.Warn("lab: account locked out (fault)", "system", s.name, "failed_logins", s.failedLogins)
		}
		return false
	}
	return true
}

// authorize answers 401 and returns nil unless the request carries valid
// credentials, of target when target is set (each system is its own BMC).
func (l *Lab) authorize(w http.ResponseWriter, r *http.Request, target *System) *System {
	p := l.principal(r)
	if p != nil && (target == nil || p == target) {
		p.mu.Lock()
		refused := p.fault.RefuseLogin
		p.mu.Unlock()
		if !refused {
			return p
		}
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="Redfish"`)
	writeError(w, http.StatusUnauthorized, "ResourceAtUriUnauthorized",
		fmt.Sprintf("While accessing the resource at %s, the service received an authorization error: valid credentials for this resource are required.", r.URL.Path),
		r.URL.Path, "Unauthorized")
	return nil
}

func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) || (r.Method == http.MethodHead && slices.Contains(methods, http.MethodGet)) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, http.StatusMethodNotAllowed, "OperationNotAllowed",
		fmt.Sprintf("The HTTP method %s is not allowed on %s.", r.Method, r.URL.Path), r.Method)
	return false
}

func (l *Lab) createSession(w http.ResponseWriter, body []byte) {
	var creds struct{ UserName, Password string }
	if err := json.Unmarshal(body, &creds); err != nil || creds.UserName == "" {
		writeError(w, http.StatusBadRequest, "MalformedJSON", "The request body must be a JSON object with UserName and Password.")
		return
	}
	s := l.byUser[creds.UserName]
	refused := true
	limit := 0
	if s != nil && s.login(creds.Password) {
		s.mu.Lock()
		refused, limit = s.fault.RefuseLogin, s.fault.SessionLimit
		s.mu.Unlock()
	}
	if refused {
		writeError(w, http.StatusUnauthorized, "NoValidSession", "The user name or password is not valid; no session was created.")
		return
	}

	l.sessMu.Lock()
	now := time.Now()
	for _, ss := range s.sessions {
		if now.Sub(ss.lastUsed) > sessionTimeout {
			l.dropSessionLocked(ss)
		}
	}
	if limit > 0 && len(s.sessions) >= limit {
		l.sessMu.Unlock()
		// What iDRAC answers (RAC0218), registry and all.
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{
			"code":    msgPrefix + "GeneralError",
			"message": "A general error has occurred. See ExtendedInfo for more information.",
			"@Message.ExtendedInfo": []extendedInfo{{
				"MessageId":  "IDRAC.2.8.RAC0218",
				"Message":    "The maximum number of user sessions is reached.",
				"Severity":   "Warning",
				"Resolution": "Close one or more sessions and retry the operation.",
			}},
		}})
		return
	}
	if len(s.sessions) >= maxSessionsPerSystem {
		l.sessMu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "SessionLimitExceeded",
			"The session establishment failed because the number of simultaneous sessions exceeded the limit of the implementation.")
		return
	}
	ss := &session{id: randomHex(8), token: randomHex(32), sys: s, lastUsed: now}
	l.sessions[ss.token] = ss
	l.sessByID[ss.id] = ss
	s.sessions[ss.id] = ss
	l.sessMu.Unlock()

	w.Header().Set("X-Auth-Token", ss.token)
	w.Header().Set("Location", sessionPath(ss.id))
	writeJSON(w, http.StatusCreated, sessionDoc(ss))
}

// dropSessionLocked forgets a session; callers hold l.sessMu.
func (l *Lab) dropSessionLocked(ss *session) {
	delete(l.sessions, ss.token)
	delete(l.sessByID, ss.id)
	delete(ss.sys.sessions, ss.id)
}

func (l *Lab) serveSession(w http.ResponseWriter, r *http.Request, id string) {
	if !allow(w, r, http.MethodGet, http.MethodDelete) {
		return
	}
	p := l.authorize(w, r, nil)
	if p == nil {
		return
	}
	l.sessMu.Lock()
	ss := l.sessByID[id]
	if ss == nil || ss.sys != p {
		l.sessMu.Unlock()
		writeError(w, http.StatusNotFound, "ResourceMissingAtURI", fmt.Sprintf("The resource at the URI %s was not found.", r.URL.Path), r.URL.Path)
		return
	}
	if r.Method == http.MethodDelete {
		l.dropSessionLocked(ss)
		l.sessMu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	doc := sessionDoc(ss)
	l.sessMu.Unlock()
	writeJSON(w, http.StatusOK, doc)
}

func sessionPath(id string) string { return redfishRoot + "/SessionService/Sessions/" + id }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b)
}

// serve answers requests under Systems/<s> and Managers/<s>; the caller
// has authorised them.
func (s *System) serve(w http.ResponseWriter, r *http.Request, rt route, body []byte) {
	switch rt.kind {
	case "system":
		if !allow(w, r, http.MethodGet, http.MethodPatch) {
			return
		}
		if r.Method == http.MethodPatch {
			s.patch(w, r, body)
			return
		}
		s.mu.Lock()
		doc := s.systemDoc(s.boot, s.reportedPower(time.Now()))
		s.mu.Unlock()
		writeDoc(w, http.StatusOK, doc)
	case "reset":
		if allow(w, r, http.MethodPost) {
			s.postReset(r.Context(), w, body)
		}
	case "manager":
		if allow(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, s.managerDoc())
		}
	case "lastPXE":
		// The lab's own extension, for tests of another process (the
		// provider's acceptance tests): what the last simulated PXE boot
		// fetched, with the system's BMC credentials, as LastPXE returns it.
		if allow(w, r, http.MethodGet) {
			res, err := s.LastPXE()
			doc := LastPXEDoc{Result: res}
			if err != nil {
				doc.Error = err.Error()
			}
			writeJSON(w, http.StatusOK, doc)
		}
	case "nics":
		if allow(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, s.nicsDoc())
		}
	case "nic":
		if rt.member != "NIC1" {
			writeError(w, http.StatusNotFound, "ResourceMissingAtURI", fmt.Sprintf("The resource at the URI %s was not found.", r.URL.Path), r.URL.Path)
			return
		}
		if allow(w, r, http.MethodGet) {
			s.mu.Lock()
			power := s.reportedPower(time.Now())
			s.mu.Unlock()
			writeJSON(w, http.StatusOK, s.nicDoc(power))
		}
	case "storages":
		if allow(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, s.storagesDoc())
		}
	case "storage", "drive":
		if (rt.kind == "storage" && rt.member != "1") || (rt.kind == "drive" && rt.member != "1/0") {
			writeError(w, http.StatusNotFound, "ResourceMissingAtURI", fmt.Sprintf("The resource at the URI %s was not found.", r.URL.Path), r.URL.Path)
			return
		}
		if allow(w, r, http.MethodGet) {
			if rt.kind == "storage" {
				writeJSON(w, http.StatusOK, s.storageDoc())
			} else {
				writeJSON(w, http.StatusOK, s.driveDoc())
			}
		}
	default:
		writeError(w, http.StatusNotFound, "ResourceMissingAtURI", fmt.Sprintf("The resource at the URI %s was not found.", r.URL.Path), r.URL.Path)
	}
}

func (s *System) postReset(ctx context.Context, w http.ResponseWriter, body []byte) {
	var req struct{ ResetType *string }
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "MalformedJSON", "The request body must be a JSON object such as {\"ResetType\": \"On\"}.")
		return
	}
	if req.ResetType == nil {
		writeError(w, http.StatusBadRequest, "ActionParameterMissing",
			"The action ComputerSystem.Reset requires the parameter ResetType to be present in the request body.", "ComputerSystem.Reset", "ResetType")
		return
	}
	if !slices.Contains(ResetTypes, *req.ResetType) {
		writeError(w, http.StatusBadRequest, "ActionParameterNotSupported",
			fmt.Sprintf("The parameter ResetType value %q for the action ComputerSystem.Reset is not supported (allowed: %s).", *req.ResetType, strings.Join(ResetTypes, ", ")),
			*req.ResetType, "ComputerSystem.Reset")
		return
	}
	if err := s.reset(*req.ResetType); err != nil {
		s.lab.log.Error("lab: power action failed", "system", s.name, "reset_type", *req.ResetType, "err", err)
		writeError(w, http.StatusInternalServerError, "InternalError",
			fmt.Sprintf("The request failed due to an internal service error: %v.", err))
		return
	}
	s.mu.Lock()
	slow := s.fault.SlowReset
	s.mu.Unlock()
	if slow > 0 {
		t := time.NewTimer(slow)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return // the client gave up; the reset stands
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// patch applies a PATCH of the ComputerSystem: only the Boot override is
// writable; anything else is rejected whole, with one message per property.
func (s *System) patch(w http.ResponseWriter, r *http.Request, body []byte) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		writeError(w, http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON and could not be parsed by the receiving service.")
		return
	}
	var problems []extendedInfo
	var boot map[string]json.RawMessage
	for k, v := range top {
		switch {
		case strings.Contains(k, "@"): // annotations such as @odata.etag
		case k == "Boot":
			if err := json.Unmarshal(v, &boot); err != nil || boot == nil {
				problems = append(problems, message("PropertyValueTypeError",
					"The value for the property Boot is of a different type than the property can accept.", "Boot"))
			}
		default:
			problems = append(problems, unknownOrReadOnly(k))
		}
	}
	changes := map[string]string{}
	for k, v := range boot {
		if strings.Contains(k, "@") {
			continue
		}
		if !slices.Contains(bootWritable, k) {
			problems = append(problems, unknownOrReadOnly("Boot/"+k))
			continue
		}
		var val string
		if err := json.Unmarshal(v, &val); err != nil {
			problems = append(problems, message("PropertyValueTypeError",
				fmt.Sprintf("The value %s for the property %s is of a different type than the property can accept.", string(v), k), string(v), k))
			continue
		}
		// The mode the firmware cannot boot is refused like any value
		// outside the list, as UEFI-only servers refuse Legacy (and the
		// machine keeps its override): the lab's one behaviour for it.
		allowed := map[string][]string{"BootSourceOverrideTarget": bootTargets, "BootSourceOverrideEnabled": bootEnabled, "BootSourceOverrideMode": bootModesOf(s.firmware)}[k]
		if !slices.Contains(allowed, val) {
			problems = append(problems, message("PropertyValueNotInList",
				fmt.Sprintf("The value %q for the property %s is not in the list of acceptable values (%s).", val, k, strings.Join(allowed, ", ")), val, k))
			continue
		}
		changes[k] = val
	}
	if len(problems) > 0 {
		writeErrorInfo(w, http.StatusBadRequest, problems)
		return
	}

	s.mu.Lock()
	now := time.Now()
	power := s.reportedPower(now)
	if ifMatch := r.Header.Get("If-Match"); ifMatch != "" && !etagMatches(ifMatch, etagOf(s.systemDoc(s.boot, power))) {
		s.mu.Unlock()
		writeError(w, http.StatusPreconditionFailed, "PreconditionFailed",
			"The ETag supplied did not match the ETag required to change this resource.")
		return
	}
	next := s.boot
	if v, ok := changes["BootSourceOverrideTarget"]; ok {
		next.Target = v
	}
	if v, ok := changes["BootSourceOverrideEnabled"]; ok {
		next.Enabled = v
	}
	if v, ok := changes["BootSourceOverrideMode"]; ok {
		next.Mode = v
	}
	if v, ok := changes["BootSourceOverrideMode"]; ok {
		s.counts.PatchedModes = append(s.counts.PatchedModes, v)
	}
	revert := s.fault.RevertBootOverride
	if !revert {
		s.boot = next
		if s.fault.RevertModeToLegacy && len(boot) > 0 {
			s.boot.Mode = "Legacy"
		}
	}
	// A reverting BMC answers as if it had taken the change.
	doc := s.systemDoc(next, power)
	s.mu.Unlock()
	s.lab.log.Info("lab: boot override", "system", s.name, "target", next.Target, "enabled", next.Enabled, "mode", next.Mode, "reverted_by_fault", revert)
	writeDoc(w, http.StatusOK, doc)
}

func unknownOrReadOnly(prop string) extendedInfo {
	known := []string{"Id", "Name", "@odata.id", "Manufacturer", "Model", "SerialNumber", "UUID", "BiosVersion", "PowerState",
		"ProcessorSummary", "MemorySummary", "Status", "SystemType", "Actions", "Links", "EthernetInterfaces", "Storage", "Boot/BootSourceOverrideTarget@Redfish.AllowableValues"}
	if slices.Contains(known, prop) {
		return message("PropertyNotWritable", fmt.Sprintf("The property %s is a read only property and cannot be assigned a value.", prop), prop)
	}
	return message("PropertyUnknown", fmt.Sprintf("The property %s is not in the list of valid properties for the resource.", prop), prop)
}

// etagOf is a strong ETag of a document's content.
func etagOf(doc map[string]any) string {
	b, _ := json.Marshal(doc)
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}

// etagMatches evaluates an If-Match header, tolerating the weak prefix and
// the stripped quotes some clients send.
func etagMatches(header, etag string) bool {
	want := strings.Trim(etag, `"`)
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" {
			return true
		}
		t = strings.TrimPrefix(t, "W/")
		if strings.Trim(t, `"`) == want {
			return true
		}
	}
	return false
}

func writeDoc(w http.ResponseWriter, status int, doc map[string]any) {
	w.Header().Set("ETag", etagOf(doc))
	writeJSON(w, status, doc)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("OData-Version", "4.0")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// extendedInfo is a Redfish Message object.
type extendedInfo map[string]any

func message(id, text string, args ...string) extendedInfo {
	if args == nil {
		args = []string{}
	}
	return extendedInfo{
		"@odata.type":     "#Message.v1_1_1.Message",
		"MessageId":       msgPrefix + id,
		"Message":         text,
		"MessageArgs":     args,
		"MessageSeverity": "Critical",
		"Severity":        "Critical",
		"Resolution":      resolutions[id],
	}
}

var resolutions = map[string]string{
	"MalformedJSON":                 "Ensure that the request body is valid JSON and resubmit the request.",
	"ResourceMissingAtURI":          "Place a valid resource at the URI or correct the URI and resubmit the request.",
	"ResourceAtUriUnauthorized":     "Ensure that the appropriate access is provided for the service in order for it to access the URI.",
	"NoValidSession":                "Establish a session before attempting any operations.",
	"SessionLimitExceeded":          "Reduce the number of other sessions before trying to establish the session or increase the limit of simultaneous sessions, if supported.",
	"ServiceTemporarilyUnavailable": "Wait for the indicated retry duration and retry the operation.",
	"OperationNotAllowed":           "None.",
	"ActionParameterMissing":        "Supply the action with the required parameter in the request body when the request is resubmitted.",
	"ActionParameterNotSupported":   "Remove the parameter supplied and resubmit the request if the operation failed.",
	"InternalError":                 "Resubmit the request. If the problem persists, consider resetting the service.",
	"PropertyUnknown":               "Remove the unknown property from the request body and resubmit the request if the operation failed.",
	"PropertyNotWritable":           "Remove the property from the request body and resubmit the request if the operation failed.",
	"PropertyValueNotInList":        "Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed.",
	"PropertyValueTypeError":        "Correct the value for the property in the request body and resubmit the request if the operation failed.",
	"PreconditionFailed":            "Try the operation again using the appropriate ETag.",
}

func writeError(w http.ResponseWriter, status int, id, text string, args ...string) {
	writeErrorInfo(w, status, []extendedInfo{message(id, text, args...)})
}

func writeErrorInfo(w http.ResponseWriter, status int, infos []extendedInfo) {
	code, msg := msgPrefix+"GeneralError", "A general error has occurred. See ExtendedInfo for more information."
	if len(infos) == 1 {
		id, idOK := infos[0]["MessageId"].(string)
		text, textOK := infos[0]["Message"].(string)
		if idOK && textOK {
			code, msg = id, text
		}
	}
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code":                  code,
		"message":               msg,
		"@Message.ExtendedInfo": infos,
	}})
}
