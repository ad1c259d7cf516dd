package boot

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// The image deploy protocol between the agent's deploy ramdisk
// (deploy-image/init) and the boot edge. The ramdisk boots with
// baremetal.mode=deploy (or, for the clean run of a deprovision,
// baremetal.mode=clean) and the run's token, then:
//  1. POST /machines/{name}/deploy/disks {"disks":[...]}: the agent picks
//     the disk by the root device hints and answers what to write where
//     (or, for a clean, what to erase); 503 while it still converts the
//     run's qcow2 image, which it then serves at
//     GET /machines/{name}/deploy/image;
//  2. POST /machines/{name}/deploy/progress {"bytes_written":N} now and
//     then while it writes;
//  3. POST /machines/{name}/callback with stage "image_written" (or
//     "cleaned").

// deployFiles are the deploy ramdisk's files, under the names the boot
// script uses.
var deployFiles = map[string]model.Signal{"vmlinuz": model.SignalKernelFetched, "initrd.img": model.SignalInitrdFetched}

// deployAsset is the per-machine path of a deploy ramdisk file, which is
// also the asset path its boot step is signalled with.
func deployAsset(file string) string { return "deploy-image/" + file }

// imagePlan is the boot plan of an image profile: the deploy kernel and
// initrd from this agent, then the config drive's templates.
func imagePlan() (kernel string, initrds []string) {
	return deployAsset("vmlinuz"), []string{deployAsset("initrd.img")}
}

func (s *Server) handleDeployImage(w http.ResponseWriter, r *http.Request) {
	file := r.PathValue("file")
	sig, ok := deployFiles[file]
	if !ok || s.cfg.DeployImageDir == "" {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(filepath.Join(s.cfg.DeployImageDir, file))
	if err != nil {
		s.log.Error("deploy ramdisk file missing; build it with make deploy-image and set --deploy-image-dir", "file", file, "dir", s.cfg.DeployImageDir)
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	name := r.PathValue("name")
	m, err := s.st.GetMachine(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		http.NotFound(w, r)
		return
	}
	if err == nil && r.Method != http.MethodHead && m.Run.Serving() {
		s.signalOnce(r.Context(), m, deployAsset(file), sig)
		// The ramdisk takes a while to boot: time the agent uses to
		// convert a qcow2 image it will ask for.
		s.startConversion(r.Context(), m)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, file, fi.ModTime(), f)
}

// deployAnswer is the boot edge's answer to a deploy ramdisk's disks.
type deployAnswer struct {
	// Mode is "deploy" (write Image and ConfigDrive) or "clean" (erase
	// the config drive, and what Wipe says, from Device).
	Mode        string            `json:"mode"`
	Device      string            `json:"device"`
	Image       deployImage       `json:"image,omitzero"`
	ConfigDrive map[string]string `json:"config_drive,omitempty"`
	Wipe        string            `json:"wipe,omitempty"`
}

type deployImage struct {
	URL       string `json:"url"`
	Checksum  string `json:"checksum"`
	Format    string `json:"format"`
	SizeBytes int64  `json:"size_bytes,omitempty"`
}

func (s *Server) handleDeployDisks(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	var req struct {
		Disks []model.SeenDisk `json:"disks"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxCallbackBody)).Decode(&req); err != nil {
		http.Error(w, "disks report is not JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	tok := presentedToken(r)
	target, err := s.lc.DeployDisks(ctx, name, tok, req.Disks)
	switch {
	case errors.Is(err, model.ErrTokenRejected):
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	case errors.Is(err, model.ErrDeployRefused):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		s.log.Error("deploy disks failed", "machine", name, "error", err.Error())
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	m, err := s.st.GetMachine(ctx, name)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	in, err := s.loadInput(ctx, m)
	if err != nil {
		s.templateFailed(ctx, w, name, runID(m), err)
		return
	}
	if target.Wipe != "" {
		// A clean run: the ramdisk erases, it writes nothing.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(deployAnswer{Mode: "clean", Device: target.Disk.Name, Wipe: target.Wipe})
		s.log.Info("clean: disk chosen", "machine", name, "disk", target.Disk.Name, "wipe", target.Wipe)
		return
	}
	rc := s.newContext(in)
	ans := deployAnswer{
		Mode:   "deploy",
		Device: target.Disk.Name,
		ConfigDrive: map[string]string{
			"user-data": rc.URLs.Templates + "/user-data?token=" + url.QueryEscape(tok),
			"meta-data": s.bootURL + "/machines/" + url.PathEscape(name) + "/deploy/meta-data?token=" + url.QueryEscape(tok),
		},
	}
	if target.Image.Format == model.FormatQCOW2 {
		if !s.qcow2Answer(w, r, name, tok, target, &ans) {
			return
		}
	} else {
		imgURL, err := assetURL(rc.URLs.Assets, target.Image.URL, "?token="+url.QueryEscape(tok))
		if err != nil {
			s.templateFailed(ctx, w, name, runID(m), err)
			return
		}
		ans.Image = deployImage{URL: imgURL, Checksum: target.Image.Checksum, Format: target.Image.Format, SizeBytes: s.imageSize(target.Image)}
	}
	if _, ok := in.profile.Templates["network-config"]; ok {
		ans.ConfigDrive["network-config"] = rc.URLs.Templates + "/network-config?token=" + url.QueryEscape(tok)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(ans)
	s.log.Info("deploy: disk chosen", "machine", name, "disk", target.Disk.Name, "image", target.Image.URL)
}

// imageSize is the size of a raw image the agent serves itself, which the
// ramdisk checks against the disk before writing; 0 when unknown
// (compressed, or fetched from elsewhere).
func (s *Server) imageSize(img model.Image) int64 {
	if img.Format != "raw" || !servedByAgent(img.URL) || s.cfg.AssetsDir == "" {
		return 0
	}
	path, err := resolveTFTPPath(s.cfg.AssetsDir, strings.TrimPrefix(img.URL, "/"))
	if err != nil {
		return 0
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func servedByAgent(u string) bool {
	return !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://")
}

func (s *Server) handleDeployProgress(w http.ResponseWriter, r *http.Request) {
	var req struct {
		BytesWritten int64 `json:"bytes_written"`
		ElapsedMS    int64 `json:"elapsed_ms"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&req); err != nil || req.BytesWritten < 0 {
		http.Error(w, "progress report is not JSON with bytes_written", http.StatusBadRequest)
		return
	}
	err := s.lc.DeployProgress(r.Context(), r.PathValue("name"), presentedToken(r), req.BytesWritten, time.Duration(req.ElapsedMS)*time.Millisecond)
	switch {
	case errors.Is(err, model.ErrTokenRejected):
		http.Error(w, "forbidden", http.StatusForbidden)
	case err != nil:
		http.Error(w, "internal error", http.StatusInternalServerError)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// handleMetaData serves the config drive's meta-data: the profile's own
// "meta-data" template when it has one, else an instance-id that changes
// with every run (so cloud-init treats a re-image as a new instance and
// runs its user-data again) and the machine's name as hostname.
func (s *Server) handleMetaData(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	m, err := s.st.GetMachine(ctx, name)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !tokenGood(m, presentedToken(r))) {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	in, err := s.loadInput(ctx, m)
	if err != nil {
		s.templateFailed(ctx, w, name, runID(m), err)
		return
	}
	in.secrets = s.liveSecrets(ctx, in)
	out, found, err := s.renderTemplate(in, "meta-data")
	if err != nil {
		s.templateFailed(ctx, w, name, runID(m), err)
		return
	}
	if !found {
		out = fmt.Sprintf("instance-id: %s-%s\nlocal-hostname: %s\n", m.Name, m.Run.ID, m.Name)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, out)
}

// signalOnce signals a boot step of the machine's run the first time its
// asset is fetched: a kernel and its initrds are each signalled once per
// run, however many range requests iPXE makes for them.
func (s *Server) signalOnce(ctx context.Context, m *model.Machine, rel string, sig model.Signal) {
	key := m.Name + "\x00" + rel
	s.mu.Lock()
	first := s.signalRuns[key] != m.Run.ID
	s.signalRuns[key] = m.Run.ID
	s.mu.Unlock()
	if first {
		s.lc.Signal(ctx, m.Name, sig, map[string]string{"path": rel, "run": m.Run.ID})
	}
}

// tokenGood reports whether tok is the machine's current, unspent run token.
// runID names m's current run ("" without one), for signals that must not
// land on a later run.
func runID(m *model.Machine) string {
	if m.Run == nil {
		return ""
	}
	return m.Run.ID
}

func tokenGood(m *model.Machine, tok string) bool {
	return m.Run != nil && !m.Run.TokenUsed && m.Run.Token != "" && tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(m.Run.Token)) == 1
}
