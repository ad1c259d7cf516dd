package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/imagecache"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// A qcow2 image is converted to raw by the agent (internal/imagecache) and
// served to the deploy ramdisk as a raw image with the raw file's own
// sha256 and size: the ramdisk streams, hashes and holds back the first
// MiB exactly as for any raw image. The qcow2's own checksum, the one the
// profile gives, is verified by the agent before it converts.

// qcow2Wait is how long a disks report waits for a conversion before the
// ramdisk is told (503) to ask again: well below the ramdisk's 60 s
// request timeout.
const qcow2Wait = 40 * time.Second

// qcow2Fetch is the client that fetches qcow2 images from http(s) URLs.
// A whole image takes long, so there is no overall timeout, but a server
// that never answers or stalls is given up on.
var qcow2Fetch = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout:   30 * time.Second,
	ResponseHeaderTimeout: time.Minute,
	IdleConnTimeout:       time.Minute,
}}

// qcow2Source is where the agent reads a qcow2 image from: its assets
// directory, or the image's http(s) URL.
func (s *Server) qcow2Source(img model.Image) imagecache.Source {
	src := imagecache.Source{Name: img.URL, Checksum: img.Checksum}
	if servedByAgent(img.URL) {
		src.Name = "assets path " + img.URL
		src.Open = func(context.Context) (io.ReadCloser, error) {
			if s.cfg.AssetsDir == "" {
				return nil, errors.New("the agent has no assets directory (--assets-dir)")
			}
			p, err := resolveTFTPPath(s.cfg.AssetsDir, strings.TrimPrefix(img.URL, "/"))
			if err != nil {
				return nil, fmt.Errorf("not a file in the agent's assets directory: %w", err)
			}
			return os.Open(p)
		}
		return src
	}
	if u, err := url.Parse(img.URL); err == nil {
		src.Name = u.Redacted()
	}
	src.Open = func(ctx context.Context) (io.ReadCloser, error) {
		ctx, cancel := context.WithCancelCause(ctx)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, img.URL, nil)
		if err != nil {
			cancel(nil)
			return nil, err
		}
		resp, err := qcow2Fetch.Do(req)
		if err != nil {
			cancel(nil)
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			cancel(nil)
			return nil, fmt.Errorf("HTTP %s", resp.Status)
		}
		return newStallReader(ctx, resp.Body, cancel, qcow2Stall), nil
	}
	return src
}

// qcow2Stall is how long a qcow2 download may go without a byte before
// it is given up on: a hung download would otherwise hold the one shared
// conversion of its image, and every machine waiting on it, for good.
var qcow2Stall = 2 * time.Minute

var errStalled = errors.New("the download stalled")

// stallReader cancels its request when no byte arrives for a while.
type stallReader struct {
	body   io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	after  time.Duration
}

func newStallReader(ctx context.Context, body io.ReadCloser, cancel context.CancelCauseFunc, after time.Duration) *stallReader {
	r := &stallReader{body: body, ctx: ctx, cancel: cancel, after: after}
	r.timer = time.AfterFunc(after, func() {
		cancel(fmt.Errorf("%w: no data for %s", errStalled, after))
	})
	return r
}

func (r *stallReader) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	if n > 0 {
		r.timer.Reset(r.after)
	}
	if err != nil && err != io.EOF && errors.Is(context.Cause(r.ctx), errStalled) {
		err = context.Cause(r.ctx)
	}
	return n, err
}

func (r *stallReader) Close() error {
	r.timer.Stop()
	r.cancel(nil)
	return r.body.Close()
}

// rawImage returns the raw conversion of a qcow2 image, waiting for it at
// most until ctx is done (imagecache.ErrPending).
func (s *Server) rawImage(ctx context.Context, img model.Image) (imagecache.Raw, error) {
	if s.images == nil {
		return imagecache.Raw{}, errors.New("this agent has no image cache directory, so it cannot convert qcow2 images")
	}
	return s.images.Raw(ctx, s.qcow2Source(img))
}

// startConversion begins converting the run's qcow2 image, if it has one,
// while the machine is still booting the deploy ramdisk.
func (s *Server) startConversion(ctx context.Context, m *model.Machine) {
	in, err := s.loadInput(ctx, m)
	if err != nil || in.profile.Image == nil || in.profile.Image.Format != model.FormatQCOW2 || m.Run.Clean != "" {
		return
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	_, _ = s.rawImage(done, *in.profile.Image)
}

// qcow2Answer fills in the deploy answer's image for a qcow2 profile: the
// agent's raw conversion. It answers the request itself and returns false
// when the conversion is still running (503: ask again) or failed (the
// machine fails, naming the image and why; 409).
func (s *Server) qcow2Answer(w http.ResponseWriter, r *http.Request, name, tok string, target model.DeployTarget, ans *deployAnswer) bool {
	ctx, cancel := context.WithTimeout(r.Context(), qcow2Wait)
	defer cancel()
	raw, err := s.rawImage(ctx, target.Image)
	switch {
	case errors.Is(err, imagecache.ErrPending):
		w.Header().Set("Retry-After", "5")
		http.Error(w, "the agent is converting the qcow2 image to raw; ask again", http.StatusServiceUnavailable)
		return false
	case err != nil:
		msg := "preparing the qcow2 image: " + err.Error()
		s.log.Warn("deploy: qcow2 image failed", "machine", name, "error", msg)
		report := model.CallbackReport{Status: "failed", Stage: model.StageImageWritten, Message: msg, Disk: target.Disk.Name, From: remoteIP(r)}
		if cerr := s.lc.Callback(r.Context(), name, tok, report); cerr != nil {
			s.log.Error("deploy: failing the machine after its qcow2 image failed", "machine", name, "error", cerr.Error())
		}
		http.Error(w, msg, http.StatusConflict)
		return false
	}
	ans.Image = deployImage{
		URL:       s.bootURL + "/machines/" + url.PathEscape(name) + "/deploy/image?token=" + url.QueryEscape(tok),
		Checksum:  "sha256:" + raw.SHA256,
		Format:    "raw",
		SizeBytes: raw.Size,
	}
	return true
}

// handleDeployRaw serves a run's converted qcow2 image to its deploy
// ramdisk, with the run's token like the machine's other assets.
func (s *Server) handleDeployRaw(w http.ResponseWriter, r *http.Request) {
	m := s.liveRunMachine(w, r, r.PathValue("name"))
	if m == nil {
		return
	}
	in, err := s.loadInput(r.Context(), m)
	if err != nil || in.profile.Image == nil || in.profile.Image.Format != model.FormatQCOW2 || s.images == nil {
		http.NotFound(w, r)
		return
	}
	raw, ok := s.images.Lookup(in.profile.Image.Checksum)
	if !ok {
		http.Error(w, "the image is not converted (yet); report the disks first", http.StatusNotFound)
		return
	}
	f, err := os.Open(raw.Path)
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
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "image.raw", fi.ModTime(), f)
}
