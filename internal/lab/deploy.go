package lab

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// simulateDeploy plays the agent's deploy ramdisk (deploy-image/init)
// against the boot edge: disks, image, progress, config drive, "image
// written". Like the real one, it verifies the image's checksum and
// reports a mismatch as a failure; unlike it, it writes nothing.
func simulateDeploy(ctx context.Context, hc *http.Client, res *PXEResult, base, q string, disks []model.SeenDisk, written func(string)) error {
	d := &DeployResult{ConfigDrive: map[string]string{}}
	res.Deploy = d
	var ans struct {
		Device string `json:"device"`
		Image  struct {
			URL      string `json:"url"`
			Checksum string `json:"checksum"`
			Format   string `json:"format"`
		} `json:"image"`
		ConfigDrive map[string]string `json:"config_drive"`
	}
	status, body, err := postDisks(ctx, hc, base+"/deploy/disks"+q, disks)
	if err != nil {
		return fmt.Errorf("deploy disks: %w", err)
	}
	if status != http.StatusOK {
		// The agent failed the machine; the ramdisk stops, as the real one.
		return fmt.Errorf("deploy disks: HTTP %d: %s", status, strings.TrimSpace(body))
	}
	if err := json.Unmarshal([]byte(body), &ans); err != nil {
		return fmt.Errorf("deploy disks answer: %w", err)
	}
	d.Disk = ans.Device
	report := model.CallbackReport{Hostname: res.Machine, Status: "ok", Stage: model.StageImageWritten, Disk: d.Disk}
	start := time.Now()
	n, sum, err := hashImage(ctx, hc, ans.Image.URL, ans.Image.Checksum)
	switch {
	case err != nil:
		report.Status, report.Message = "failed", err.Error()
	case sum != ans.Image.Checksum:
		report.Status, report.Message = "failed", fmt.Sprintf("checksum mismatch: want %s, got %s", ans.Image.Checksum, sum)
	default:
		d.BytesWritten, d.Checksum = n, sum
		_, _, _ = postJSON(ctx, hc, base+"/deploy/progress"+q, map[string]any{"bytes_written": n, "elapsed_ms": time.Since(start).Milliseconds()})
		for _, name := range []string{"user-data", "meta-data", "network-config"} {
			u, ok := ans.ConfigDrive[name]
			if !ok {
				continue
			}
			body, status, err := httpGet(ctx, hc, u, maxTemplate)
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("GET %s: HTTP %d", redact(u), status)
			}
			if err != nil {
				report.Status, report.Message = "failed", "config drive "+name+": "+err.Error()
				break
			}
			d.ConfigDrive[name] = body
		}
	}
	if report.Status == "ok" {
		// The image is on the disk before the agent is told: the power
		// cycle the report leads to must find it there.
		d.OSCallback = base + "/callback" + q
		if written != nil {
			written(d.OSCallback)
		}
		res.Address = addressForMAC(res.MAC)
		report.Addresses = []string{res.Address}
		report.BytesWritten = d.BytesWritten
		report.DurationMS = time.Since(start).Milliseconds()
	}
	return sendReport(ctx, hc, res, base, q, report, "deploy")
}

// sendReport posts the ramdisk's final callback; a report of failure, or a
// refused callback, is the simulated boot's error.
func sendReport(ctx context.Context, hc *http.Client, res *PXEResult, base, q string, report model.CallbackReport, what string) error {
	status, err := postCallback(ctx, hc, base+"/callback"+q, report)
	res.CallbackStatus = status
	switch {
	case err != nil:
		return fmt.Errorf("callback: %w", err)
	case report.Status != "ok":
		return errors.New(what + " failed: " + report.Message)
	case status < 200 || status > 299:
		return fmt.Errorf("callback POST %s: HTTP %d", redact(base+"/callback"), status)
	}
	return nil
}

// postDisks reports the disks, asking again while the agent answers 503
// (it is converting a qcow2 image), as the real ramdisk does.
func postDisks(ctx context.Context, hc *http.Client, raw string, disks []model.SeenDisk) (int, string, error) {
	for {
		status, body, err := postJSON(ctx, hc, raw, map[string]any{"disks": disks})
		if err != nil || status != http.StatusServiceUnavailable {
			return status, body, err
		}
		select {
		case <-ctx.Done():
			return 0, "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// simulateClean plays the deploy ramdisk's clean mode: it reports the
// disks, is told which one to clean and how far, and calls back
// "cleaned" (writing nothing, like the simulated deploy).
func simulateClean(ctx context.Context, hc *http.Client, res *PXEResult, base, q string, disks []model.SeenDisk) error {
	d := &DeployResult{}
	res.Deploy = d
	status, body, err := postDisks(ctx, hc, base+"/deploy/disks"+q, disks)
	if err != nil {
		return fmt.Errorf("clean disks: %w", err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("clean disks: HTTP %d: %s", status, strings.TrimSpace(body))
	}
	var ans struct {
		Mode   string `json:"mode"`
		Device string `json:"device"`
		Wipe   string `json:"wipe"`
	}
	if err := json.Unmarshal([]byte(body), &ans); err != nil {
		return fmt.Errorf("clean disks answer: %w", err)
	}
	d.Disk, d.Wipe = ans.Device, ans.Wipe
	report := model.CallbackReport{Hostname: res.Machine, Status: "ok", Stage: model.StageCleaned, Disk: d.Disk}
	if ans.Mode != "clean" {
		report.Status, report.Message = "failed", fmt.Sprintf("the agent answered with a %q plan to a clean boot", ans.Mode)
	}
	return sendReport(ctx, hc, res, base, q, report, "clean")
}

// hashImage reads the whole image at raw and hashes it with the algorithm
// of want ("sha256:..." or "sha512:...").
func hashImage(ctx context.Context, hc *http.Client, raw, want string) (int64, string, error) {
	algo, _, _ := strings.Cut(want, ":")
	var h hash.Hash
	switch algo {
	case "sha256":
		h = sha256.New()
	case "sha512":
		h = sha512.New()
	default:
		return 0, "", fmt.Errorf("unknown checksum algorithm %q", algo)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", transportErr("GET", raw, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, "", fmt.Errorf("image %s: HTTP %d", redact(raw), resp.StatusCode)
	}
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return n, "", transportErr("GET", raw, err)
	}
	return n, algo + ":" + hex.EncodeToString(h.Sum(nil)), nil
}

func postJSON(ctx context.Context, hc *http.Client, raw string, v any) (int, string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, raw, strings.NewReader(string(b)))
	if err != nil {
		return 0, "", fmt.Errorf("POST %s: %w", redact(raw), err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", transportErr("POST", raw, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(body), nil
}

// simulateOSBoot is the deployed OS's first boot: its cloud-init posts
// the "OS up" callback with the machine's address.
func (b *memoryBackend) simulateOSBoot(ctx context.Context, s *System, callback string) {
	defer b.lab.wg.Done()
	report := model.CallbackReport{Hostname: s.name, Status: "ok", Stage: model.StageOSUp, Addresses: []string{addressForMAC(s.mac)}}
	status, err := postCallback(ctx, b.lab.http, callback, report)
	if ctx.Err() != nil {
		return
	}
	if err != nil || status < 200 || status > 299 {
		b.lab.log.Warn("lab: simulated OS callback failed", "system", s.name, "status", status, "err", err)
		return
	}
	b.lab.log.Info("lab: simulated OS booted and called back", "system", s.name)
}

// disks is what a deploy ramdisk would find in the machine: its one disk,
// as its BMC describes it.
func (s *System) disks() []model.SeenDisk {
	hw := s.hardware()
	return []model.SeenDisk{{Name: "sda", SizeBytes: hw.diskBytes, Model: hw.diskModel, Serial: s.serial + "-D0", Rotational: hw.diskMedia == "HDD"}}
}
