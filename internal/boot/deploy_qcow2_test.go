package boot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

const disksReport = `{"disks":[{"name":"vda","size_bytes":1073741824,"rotational":false}]}`

// makeQCOW2 converts raw to a qcow2 file with qemu-img, with opts.
func makeQCOW2(t *testing.T, raw []byte, opts ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("qemu-img not found; install qemu-utils")
		}
		t.Skip("qemu-img not found; install qemu-utils")
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.raw"), filepath.Join(dir, "out.qcow2")
	require.NoError(t, os.WriteFile(in, raw, 0o644))
	b, err := exec.Command("qemu-img", append(append([]string{"convert", "-q", "-f", "raw", "-O", "qcow2"}, opts...), in, out)...).CombinedOutput()
	require.NoError(t, err, "qemu-img: %s", b)
	q, err := os.ReadFile(out)
	require.NoError(t, err)
	return q
}

func sha256Of(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }

func postDisks(t *testing.T, f *httpFixture, machine, token string) (int, string) {
	t.Helper()
	resp, err := http.Post(f.ts.URL+"/machines/"+machine+"/deploy/disks?token="+token, "application/json", strings.NewReader(disksReport))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestDeployQCOW2 runs the disks report of a machine whose profile has a
// qcow2 image: the agent converts it (from its assets directory or an
// http(s) URL) and answers with its own raw URL, the raw file's sha256 and
// size; the raw file, fetched with the run's token, is the disk the qcow2
// holds. A qcow2 that cannot be used fails the machine, naming the image
// and why.
func TestDeployQCOW2(t *testing.T) {
	raw := bytes.Repeat([]byte("a qcow2 image's disk, byte for byte "), 30000)
	raw = append(raw, make([]byte, 2<<20)...)
	raw = raw[:len(raw)/512*512]
	q := makeQCOW2(t, raw, "-c")
	backed := func() []byte {
		dir := t.TempDir()
		base := filepath.Join(dir, "base.qcow2")
		require.NoError(t, os.WriteFile(base, q, 0o644))
		over := filepath.Join(dir, "over.qcow2")
		out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", over).CombinedOutput()
		require.NoError(t, err, "%s", out)
		b, err := os.ReadFile(over)
		require.NoError(t, err)
		return b
	}()
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/images/disk.qcow2":
			_, _ = w.Write(q)
		case "/images/backed.qcow2":
			_, _ = w.Write(backed)
		case "/images/stalls.qcow2":
			w.Header().Set("Content-Length", fmt.Sprint(len(q)))
			_, _ = w.Write(q[:4096])
			_ = http.NewResponseController(w).Flush()
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	}))
	defer remote.Close()

	tests := []struct {
		name string
		img  model.Image
		// want is a substring of the failure; "" for a deploy.
		want string
	}{
		{name: "from the assets directory", img: model.Image{URL: "images/disk.qcow2", Checksum: sha256Of(q)}},
		{name: "from an http URL", img: model.Image{URL: remote.URL + "/images/disk.qcow2", Checksum: sha256Of(q)}},
		{name: "404", img: model.Image{URL: remote.URL + "/images/gone.qcow2", Checksum: sha256Of(q)},
			want: "preparing the qcow2 image: fetching " + remote.URL + "/images/gone.qcow2: HTTP 404 Not Found"},
		{name: "refused", img: model.Image{URL: "http://127.0.0.1:1/disk.qcow2", Checksum: sha256Of(q)},
			want: "preparing the qcow2 image: fetching http://127.0.0.1:1/disk.qcow2: dial tcp 127.0.0.1:1: connect: connection refused"},
		{name: "checksum mismatch", img: model.Image{URL: "images/disk.qcow2", Checksum: sha256Of([]byte("x"))},
			want: "checksum mismatch for assets path images/disk.qcow2: want " + sha256Of([]byte("x")) + ", got " + sha256Of(q)},
		{name: "backing file", img: model.Image{URL: remote.URL + "/images/backed.qcow2", Checksum: sha256Of(backed)},
			want: "reading " + remote.URL + "/images/backed.qcow2 as qcow2: unsupported qcow2 feature: backing file"},
		{name: "stalled download", img: model.Image{URL: remote.URL + "/images/stalls.qcow2", Checksum: sha256Of(q)},
			want: "preparing the qcow2 image: fetching " + remote.URL + "/images/stalls.qcow2: the download stalled: no data for 300ms"},
		{name: "not a qcow2", img: model.Image{URL: "images/disk.raw", Checksum: sha256Of(raw)},
			want: "reading assets path images/disk.raw as qcow2: corrupt qcow2 image: no qcow2 magic"},
	}
	stall := qcow2Stall
	qcow2Stall = 300 * time.Millisecond
	defer func() { qcow2Stall = stall }()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newHTTPFixture(t, func(c *Config) { c.ImageCacheDir = t.TempDir() })
			require.NoError(t, os.MkdirAll(filepath.Join(f.assets, "images"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(f.assets, "images", "disk.qcow2"), q, 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(f.assets, "images", "disk.raw"), raw, 0o644))
			img := tt.img
			img.Format = model.FormatQCOW2
			mustCreateProfile(t, f.st, &model.BootProfile{Name: "img", Image: &img})
			mustCreateMachine(t, f.st, &model.Machine{Name: "m1", MACs: []string{"52:54:00:00:00:01"}, BootProfile: "img", State: model.StateProvisioned,
				BMC: model.BMC{Endpoint: "http://127.0.0.1:1", Username: "u", Password: "p"}, Run: &model.Run{ID: "r1", Token: "tok-1", Profile: "img"}})

			code, body := postDisks(t, f, "m1", "tok-1")
			if tt.want != "" {
				assert.Equal(t, http.StatusConflict, code, body)
				assert.Contains(t, body, tt.want)
				f.lc.mu.Lock()
				cbs := append([]model.CallbackReport(nil), f.lc.callbacks...)
				f.lc.mu.Unlock()
				require.Len(t, cbs, 1, "the machine was not failed")
				cb := cbs[0]
				assert.Equal(t, "failed", cb.Status)
				assert.Equal(t, model.StageImageWritten, cb.Stage)
				assert.Contains(t, cb.Message, tt.want)
				assert.NotContains(t, cb.Message, "tok-1")
				return
			}
			require.Equal(t, http.StatusOK, code, body)
			var ans deployAnswer
			require.NoError(t, json.Unmarshal([]byte(body), &ans))
			assert.Equal(t, "deploy", ans.Mode)
			assert.Equal(t, "vda", ans.Device)
			assert.Equal(t, deployImage{URL: "http://10.0.2.2:8081/machines/m1/deploy/image?token=tok-1", Checksum: sha256Of(raw), Format: "raw", SizeBytes: int64(len(raw))}, ans.Image)

			code, got := f.get(t, "/machines/m1/deploy/image?token=tok-1", nil)
			require.Equal(t, http.StatusOK, code)
			assert.True(t, got == string(raw), "the served raw image differs from the qcow2's disk")
			code, _ = f.get(t, "/machines/m1/deploy/image?token=wrong", nil)
			assert.Equal(t, http.StatusForbidden, code)

			// A second report (the ramdisk asking again) finds the conversion cached.
			code, again := postDisks(t, f, "m1", "tok-1")
			require.Equal(t, http.StatusOK, code)
			assert.JSONEq(t, body, again)
		})
	}
}

// TestDeployClean: the boot script of a clean run boots the deploy
// ramdisk with baremetal.mode=clean, and its disks report is answered
// with the disk and the wipe level, and no image or config drive.
func TestDeployClean(t *testing.T) {
	f := newHTTPFixture(t, func(c *Config) { c.DeployImageDir = t.TempDir() })
	mustCreateProfile(t, f.st, &model.BootProfile{Name: "img", Cmdline: "console=ttyS0",
		Image: &model.Image{URL: "disk.raw", Checksum: sha256Of(nil), Format: "raw", Wipe: model.WipeMetadata}})
	mustCreateMachine(t, f.st, &model.Machine{Name: "m1", MACs: []string{"52:54:00:00:00:01"}, BootProfile: "img", State: model.StateAvailable,
		BMC: model.BMC{Endpoint: "http://127.0.0.1:1", Username: "u", Password: "p"},
		Run: &model.Run{ID: "r2", Token: "tok-2", Profile: "img", Clean: model.WipeMetadata}})

	code, script := f.get(t, "/boot/52:54:00:00:00:01", nil)
	require.Equal(t, http.StatusOK, code, script)
	assert.Contains(t, script, "/machines/m1/deploy-image/vmlinuz?token=tok-2")
	assert.Contains(t, script, "console=ttyS0 baremetal.mode=clean baremetal.url=http://10.0.2.2:8081 baremetal.machine=m1 baremetal.token=tok-2")
	assert.NotContains(t, script, "baremetal.mode=deploy")

	code, body := postDisks(t, f, "m1", "tok-2")
	require.Equal(t, http.StatusOK, code, body)
	assert.JSONEq(t, `{"mode":"clean","device":"vda","wipe":"metadata"}`, body)
}
