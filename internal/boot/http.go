package boot

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// maxCallbackBody bounds an installer's report; a log tail beyond this is
// an installer bug or an attack, not information.
const maxCallbackBody = 64 << 10

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern, route string, h http.HandlerFunc) {
		mux.Handle(pattern, s.counted(route, h))
	}
	handle("GET /boot.ipxe", "boot.ipxe", s.handleBootIPXE)
	handle("GET /boot/{mac}", "boot", s.handleMachineScript)
	handle("GET /assets/{path...}", "assets", s.handleAssets)
	handle("GET /machines/{name}/assets/{path...}", "machine_assets", s.handleAssets)
	handle("GET /machines/{name}/templates/{tmpl}", "templates", s.handleTemplate)
	handle("POST /machines/{name}/callback", "callback", s.handleCallback)
	handle("GET /machines/{name}/deploy-image/{file}", "deploy_image", s.handleDeployImage)
	handle("POST /machines/{name}/deploy/disks", "deploy_disks", s.handleDeployDisks)
	handle("POST /machines/{name}/deploy/progress", "deploy_progress", s.handleDeployProgress)
	handle("GET /machines/{name}/deploy/meta-data", "deploy_meta_data", s.handleMetaData)
	handle("GET /machines/{name}/deploy/image", "deploy_raw_image", s.handleDeployRaw)
	return mux
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// ReadFrom keeps http.ServeContent's sendfile path when wrapped.
func (r *statusRecorder) ReadFrom(src io.Reader) (int64, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(r.ResponseWriter, src)
}

func (s *Server) counted(route string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		h(rec, r)
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		s.metrics.httpRequests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
	})
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func writeScript(w http.ResponseWriter, script string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, script) // a client gone mid-response has nothing to be told
}

// exitScript hands the machine back to its firmware, which boots the next
// device (the local disk).
const exitScript = "#!ipxe\nexit\n"

// handleBootIPXE is the one script every iPXE is sent to first (by
// ProxyDHCP, site DHCP or the TFTP boot.ipxe); it hops to the per-machine
// script keyed by the booting NIC's MAC.
func (s *Server) handleBootIPXE(w http.ResponseWriter, r *http.Request) {
	writeScript(w, "#!ipxe\nchain "+s.bootURL+"/boot/${netX/mac}?arch=${buildarch}&platform=${platform} || exit\n")
}

func (s *Server) handleMachineScript(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	remote := remoteIP(r)
	mac, err := model.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		http.Error(w, "not a MAC address", http.StatusBadRequest)
		return
	}
	m, err := s.st.MachineByMAC(ctx, mac)
	if errors.Is(err, store.ErrNotFound) {
		s.serveUnknown(w, r, mac, remote)
		return
	}
	if err != nil {
		s.log.Error("boot script: store lookup failed", "mac", mac, "error", err.Error())
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	data := map[string]string{"mac": mac, "remote": remote}
	if a := r.URL.Query().Get("arch"); a != "" {
		data["arch"] = sanitizeLabel(a)
	}
	if p := r.URL.Query().Get("platform"); p != "" {
		data["platform"] = sanitizeLabel(p)
	}
	s.lc.Signal(ctx, m.Name, model.SignalPXERequested, data)
	if !m.Run.Serving() {
		s.log.Info("boot script: not provisioning, booting local disk", "machine", m.Name, "mac", mac)
		writeScript(w, exitScript)
		return
	}
	in, err := s.loadInput(ctx, m)
	if err != nil {
		s.renderFailed(ctx, w, m.Name, m.Run.ID, err)
		return
	}
	script, err := s.renderIPXE(in)
	if err != nil {
		s.renderFailed(ctx, w, m.Name, m.Run.ID, err)
		return
	}
	// The first address to fetch a run's script is the one its callback
	// must come from (see callbackSource); the script, with the run's
	// token, goes to that address only, so the token stops travelling to
	// whoever asks for the MAC once the machine itself has asked.
	if m.Run.ScriptFrom != "" && m.Run.ScriptFrom != remote && !in.profile.CallbackAnySource {
		s.log.Warn("boot script: refused, the run's script was fetched from another address", "machine", m.Name, "mac", mac, "remote", remote)
		writeScript(w, "#!ipxe\necho baremetal: this run's boot script was served to another address; see the machine's events\nexit\n")
		return
	}
	s.log.Info("boot script: serving installer", "machine", m.Name, "mac", mac, "profile", in.profile.Name)
	// Signalled before the script goes out, so the run is bound to this
	// address before its installer can call back.
	s.lc.Signal(ctx, m.Name, model.SignalScriptServed, map[string]string{"profile": in.profile.Name, "run": m.Run.ID, "remote": remote})
	writeScript(w, script)
}

// sanitizeLabel keeps client-supplied labels (arch, platform) short and
// printable before they reach events.
func sanitizeLabel(v string) string {
	v = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, v)
	if len(v) > 32 {
		v = v[:32]
	}
	return v
}

// renderFailed reports a render error to the Lifecycle and serves a script
// that says so on the console and leaves the machine to its local disk:
// never a partial script.
func (s *Server) renderFailed(ctx context.Context, w http.ResponseWriter, machine, run string, err error) {
	s.log.Warn("boot script: render failed", "machine", machine, "error", err.Error())
	s.lc.Signal(ctx, machine, model.SignalRenderFailed, map[string]string{"error": err.Error(), "run": run})
	// The error names profile internals; anyone may ask for a MAC's script,
	// so the details go to the machine's events only.
	writeScript(w, "#!ipxe\necho baremetal: "+renderFailedText+"\nexit\n")
}

// renderFailedText is all an unauthenticated client learns of a failed render.
const renderFailedText = "render failed; see the machine's events"

func (s *Server) serveUnknown(w http.ResponseWriter, r *http.Request, mac, remote string) {
	ctx := r.Context()
	if s.unknown.allow(mac) {
		s.log.Info("boot script: unknown MAC", "mac", mac, "remote", remote)
		s.lc.Signal(ctx, "", model.SignalUnknownMAC, map[string]string{"mac": mac, "remote": remote})
	}
	if s.cfg.UnknownMAC == "exit" {
		writeScript(w, exitScript)
		return
	}
	p, err := s.st.GetProfile(ctx, s.cfg.UnknownMAC)
	if err == nil {
		var script string
		if script, err = s.renderIPXE(renderInput{mac: mac, profile: p}); err == nil {
			writeScript(w, script)
			return
		}
	}
	// The discovery profile is the agent's configuration, not a machine's:
	// there is no machine to attach the failure to, so it is logged.
	s.log.Error("boot script: discovery profile unusable", "profile", s.cfg.UnknownMAC, "error", err.Error())
	writeScript(w, "#!ipxe\necho baremetal: discovery profile unusable; see the agent's log\nexit\n")
}

// loadInput loads what rendering for m's current run needs.
func (s *Server) loadInput(ctx context.Context, m *model.Machine) (renderInput, error) {
	return loadInput(ctx, loader{st: s.st}, m, true)
}

// handleAssets serves a file from the assets directory, with Range and
// conditional requests (http.ServeContent). Through the per-machine path
// the first fetch of the run's kernel and of each of its initrds is
// signalled.
func (s *Server) handleAssets(w http.ResponseWriter, r *http.Request) {
	if s.cfg.AssetsDir == "" {
		http.NotFound(w, r)
		return
	}
	rel := r.PathValue("path")
	var m *model.Machine
	if name := r.PathValue("name"); name != "" {
		// Checked before the path, so a caller without the run's token
		// learns neither whether the machine exists nor whether the file does.
		if m = s.liveRunMachine(w, r, name); m == nil {
			return
		}
	}
	path, err := resolveTFTPPath(s.cfg.AssetsDir, rel)
	if err != nil {
		s.log.Info("asset refused", "path", rel, "remote", remoteIP(r), "reason", err.Error())
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	// A HEAD is a probe, not a boot step.
	if m != nil && r.Method != http.MethodHead {
		s.maybeSignalAsset(r.Context(), m, rel)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, filepath.Base(path), fi.ModTime(), f)
}

func (s *Server) maybeSignalAsset(ctx context.Context, m *model.Machine, rel string) {
	if !m.Run.Serving() {
		return
	}
	in, err := s.loadInput(ctx, m)
	if err != nil {
		return
	}
	sig := model.SignalKernelFetched
	if strings.TrimPrefix(in.profile.Kernel, "/") != rel {
		if !slices.ContainsFunc(in.profile.Initrds, func(ird string) bool { return strings.TrimPrefix(ird, "/") == rel }) {
			return
		}
		sig = model.SignalInitrdFetched
	}
	s.signalOnce(ctx, m, rel, sig)
}

// presentedToken is the token a request carries (?token= or a bearer
// header). Callers compare it in constant time.
func presentedToken(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(h)
	}
	return ""
}

// liveRunMachine returns the named machine if the request carries the
// token of its current run and that run is still live (no callback, not
// failed, aborted or replaced: each of those marks the token used, in the
// store, so it holds across restarts). Otherwise it answers 403, the same
// for a machine that does not exist, and returns nil.
func (s *Server) liveRunMachine(w http.ResponseWriter, r *http.Request, name string) *model.Machine {
	m, err := s.st.GetMachine(r.Context(), name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("boot edge: store lookup failed", "machine", name, "error", err.Error())
		http.Error(w, "internal error", http.StatusInternalServerError)
		return nil
	}
	tok := presentedToken(r)
	var want string
	if err == nil && m.Run.Serving() {
		want = m.Run.Token
	}
	// Digests, so the comparison takes as long whatever the lengths, and a
	// missing machine costs what a wrong token does.
	a, b := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(want))
	if tok == "" || want == "" || subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		s.log.Warn("boot edge: token refused", "machine", name, "path", r.URL.Path, "remote", remoteIP(r))
		http.Error(w, "forbidden", http.StatusForbidden)
		return nil
	}
	return m
}

func (s *Server) handleTemplate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name, tmpl := r.PathValue("name"), r.PathValue("tmpl")
	m := s.liveRunMachine(w, r, name)
	if m == nil {
		return
	}
	in, err := s.loadInput(ctx, m)
	if err != nil {
		s.templateFailed(ctx, w, name, m.Run.ID, err)
		return
	}
	in.secrets = s.liveSecrets(ctx, in)
	out, found, err := s.renderTemplate(in, tmpl)
	if !found {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		s.templateFailed(ctx, w, name, m.Run.ID, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, out) // a client gone mid-response has nothing to be told
	s.log.Info("template served", "machine", name, "template", tmpl, "bytes", len(out))
	s.lc.Signal(ctx, name, model.SignalTemplatesFetched, map[string]string{"template": tmpl, "run": m.Run.ID})
}

// liveSecrets is the secret source of a template fetched with the run's
// live token: real values, and generated secrets made on first use.
func (s *Server) liveSecrets(ctx context.Context, in renderInput) *secretSource {
	params, _ := in.secretLayers().Effective()
	machine := in.machine.Name
	return &secretSource{params: params, generate: func(name string) (string, error) {
		return s.generate(ctx, machine, name)
	}}
}

func (s *Server) templateFailed(ctx context.Context, w http.ResponseWriter, machine, run string, err error) {
	s.log.Warn("template: render failed", "machine", machine, "error", err.Error())
	s.lc.Signal(ctx, machine, model.SignalRenderFailed, map[string]string{"error": err.Error(), "run": run})
	http.Error(w, renderFailedText, http.StatusInternalServerError)
}

// handleCallback carries an installer's report to the Lifecycle, which
// decides whether the token is good. Unknown JSON fields are ignored, not
// refused: installers are scripts in many languages and versions, and a
// finished install must not be lost over an extra field.
func (s *Server) handleCallback(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var report model.CallbackReport
	body := http.MaxBytesReader(w, r.Body, maxCallbackBody)
	if err := json.NewDecoder(body).Decode(&report); err != nil && !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "report too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "report is not JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	// Refused whole before the token is looked at: a report that would put
	// something other than addresses where templates expect them is not
	// stored, and the installer may retry with a good one.
	if err := report.Validate(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	report.From = remoteIP(r)
	err := s.lc.Callback(r.Context(), name, presentedToken(r), report)
	switch {
	case err == nil:
		s.log.Info("callback accepted", "machine", name, "addresses", strings.Join(report.Addresses, ","), "status", report.Status)
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, model.ErrTokenRejected):
		s.log.Warn("callback refused", "machine", name, "remote", remoteIP(r))
		http.Error(w, "forbidden", http.StatusForbidden)
	default:
		s.log.Error("callback failed", "machine", name, "error", err.Error())
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}
