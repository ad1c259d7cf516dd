package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/bench/internal/report"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/deployimage"
)

// deployOpts are the deploy benchmark's knobs (-deploy-* flags).
type deployOpts struct {
	kernelDir string   // make deploy-image's output: vmlinuz, initrd.img
	mib       int      // raw image size
	formats   []string // raw, zstd, gzip
	memMiB    int
	cpus      int
	reps      int
}

// The ramdisk's console lines the benchmark reads (deploy-image/init).
var (
	benchDDLine   = regexp.MustCompile(`deploy: bench dd: wrote (\d+) bytes in (\d+) ms \(exit (\d+)\)(.*)`)
	hashLine      = regexp.MustCompile(`deploy: bench hash: \S+ of the download in (\d+) ms`)
	streamedLine  = regexp.MustCompile(`deploy: streamed (\d+) bytes in (\d+) ms`)
	writtenLine   = regexp.MustCompile(`deploy: image written to /dev/\S+: (\d+) bytes in (\d+) ms`)
	benchMachine  = "bench-1"
	benchDiskName = "vda"
)

// deployTrial is one VM: the plain dd baseline, then the product's deploy
// of the same image to the same disk.
type deployTrial struct {
	ddBytes, ddMS         int64
	streamBytes, streamMS int64 // the deploy's pipeline: wget | hash | decompress | dd
	writtenMS             int64 // the whole deploy, config drive included
	hashMS                int64 // wget | sha256sum alone
	boot                  time.Duration
}

func (t deployTrial) ddMiBps() float64     { return mibps(t.ddBytes, t.ddMS) }
func (t deployTrial) deployMiBps() float64 { return mibps(t.streamBytes, t.streamMS) }

// hashMiBps is the image's raw size over the time to download and hash it
// (of a compressed image, the compressed file is hashed).
func (t deployTrial) hashMiBps() float64 { return mibps(t.streamBytes, t.hashMS) }

func mibps(bytes, ms int64) float64 {
	if ms <= 0 {
		return math.NaN()
	}
	return float64(bytes) / (1 << 20) / (float64(ms) / 1000)
}

// benchImageFile is one format of the benchmark image as served.
type benchImageFile struct {
	format string
	served []byte
}

// buildDeployImage makes a GPT disk image of size bytes (an ESP-like and a
// root partition, as sfdisk lays them out) whose partitions hold data that
// compresses about 2:1, as an OS image does: in each 4 KiB block, 2 KiB of
// pseudo-random bytes and 2 KiB of repeated text.
func buildDeployImage(dir string, size int64) ([]byte, error) {
	path := filepath.Join(dir, "deploy-image.raw")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		return nil, err
	}
	if err := os.Truncate(path, size); err != nil {
		return nil, err
	}
	sfdisk := exec.Command("sfdisk", "-q", path)
	sfdisk.Stdin = strings.NewReader("label: gpt\nsize=64MiB, type=U, name=ESP\ntype=L, name=root\n")
	if out, err := sfdisk.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("sfdisk: %v: %s", err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// The partitions start at 1 MiB and end 33 sectors before the image's
	// end (the backup GPT): fill only what lies between.
	text := bytes.Repeat([]byte("BAREMETAL-DEPLOY-BENCH usr/share/doc/ lib/modules/ etc/ "), 2048/55+1)[:2048]
	var x uint64 = 0x9E3779B97F4A7C15
	end := len(data) - 64*1024
	for off := 1 << 20; off+4096 <= end; off += 4096 {
		blk := data[off : off+4096]
		for i := 0; i < 2048; i += 8 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			for j := range 8 {
				blk[i+j] = byte(x >> (8 * j))
			}
		}
		copy(blk[2048:], text)
	}
	return data, os.Remove(path)
}

func compress(format string, raw []byte) ([]byte, error) {
	var cmd *exec.Cmd
	switch format {
	case "raw":
		return raw, nil
	case "zstd":
		cmd = exec.Command("zstd", "-q", "-c", "-T0")
	case "gzip":
		cmd = exec.Command("gzip", "-c", "-6")
	default:
		return nil, fmt.Errorf("unknown format %q (want raw, zstd or gzip)", format)
	}
	cmd.Stdin = bytes.NewReader(raw)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %v: %s", cmd.Path, err, stderr.String())
	}
	return out, nil
}

// runDeployTrial boots the ramdisk once, in a fresh VM with a fresh disk,
// with baremetal.bench=dd: the ramdisk writes img with plain dd first, then
// deploys it, and the console says how long each took.
func runDeployTrial(e *env, o deployOpts, img benchImageFile, raw []byte) (deployTrial, error) {
	var t deployTrial
	agent, err := deployimage.NewFakeAgent(benchMachine)
	if err != nil {
		return t, err
	}
	defer agent.Close()
	name := "image." + img.format
	agent.Serve("/images/"+name, img.served, false)
	sum := checksum(img.served)
	agent.SetPlan(map[string]any{
		"mode":   "deploy",
		"device": benchDiskName,
		"image": map[string]any{"url": agent.GuestURL + "/images/" + name, "checksum": sum,
			"format": img.format, "size_bytes": len(raw)},
		"config_drive": map[string]string{
			"user-data": agent.GuestURL + "/config/user-data",
			"meta-data": agent.GuestURL + "/config/meta-data",
		},
	})
	// Room for the image and the 64 MiB config drive at the end; sparse.
	disk := filepath.Join(e.dir, "deploy-disk.raw")
	defer os.Remove(disk)
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		return t, err
	}
	if err := os.Truncate(disk, int64(len(raw))+128<<20); err != nil {
		return t, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	vm := deployimage.VM{KernelDir: o.kernelDir, Forward: []string{e.self, "lab-forward"}, DiskPath: disk,
		DiskSerial: "BENCHDISK1", Mode: "deploy", ExtraArgs: "baremetal.bench=dd", MemoryMiB: o.memMiB, CPUs: o.cpus}
	console, elapsed, finished, err := vm.Boot(ctx, agent)
	if err != nil {
		return t, err
	}
	t.boot = elapsed
	logPath := filepath.Join(e.dir, fmt.Sprintf("deploy-%s-%d.console", img.format, time.Now().UnixNano()))
	_ = os.WriteFile(logPath, []byte(console), 0o644)
	if !finished {
		return t, fmt.Errorf("the ramdisk did not stop within %s; console in %s:\n%s", elapsed.Round(time.Second), logPath, tail(console))
	}
	cbs := agent.Callbacks()
	if len(cbs) != 1 || cbs[0].Status != "ok" {
		return t, fmt.Errorf("the deploy did not call back ok (%+v):\n%s", cbs, tail(console))
	}
	if err := t.parse(console); err != nil {
		return t, err
	}
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, "bench ") || strings.Contains(l, "streamed") || strings.Contains(l, "image written") {
			logf("  %s", strings.TrimSpace(l))
		}
	}
	// The plain dd's count is the disk's sectors written, which may hold a
	// few KiB more than the image (the kernel's own writes to the device).
	if t.ddBytes < int64(len(raw)) || t.ddBytes >= int64(len(raw))+1<<20 || t.streamBytes != int64(len(raw)) {
		return t, fmt.Errorf("bytes written: plain dd %d, deploy %d, want %d", t.ddBytes, t.streamBytes, len(raw))
	}
	t.ddBytes = int64(len(raw))
	// What the deploy left on the disk is the image (between the primary
	// GPT, which the config drive's partition rewrote, and the image's own
	// backup GPT).
	got, err := os.ReadFile(disk)
	if err != nil {
		return t, err
	}
	lo, hi := 34*512, len(raw)-33*512
	if !bytes.Equal(got[lo:hi], raw[lo:hi]) {
		return t, errors.New("the disk differs from the image after the deploy")
	}
	return t, nil
}

// tail is the console's last 20 lines, for an error.
func tail(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// benchDeploy measures the deploy ramdisk's write throughput against plain
// dd of the same image to the same virtual disk in the same VM (issue 16,
// benchmark 7, second bullet).
func benchDeploy(e *env, o deployOpts) (string, error) {
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if _, err := os.Stat(filepath.Join(o.kernelDir, f)); err != nil {
			return "", fmt.Errorf("deploy ramdisk missing (%v); run `make deploy-image`", err)
		}
	}
	for _, tool := range []string{"qemu-system-x86_64", "sfdisk", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("%s not found; install qemu-system-x86, fdisk and zstd", tool)
		}
	}
	raw, err := buildDeployImage(e.dir, int64(o.mib)<<20)
	if err != nil {
		return "", err
	}
	var images []benchImageFile
	for _, f := range o.formats {
		served, err := compress(f, raw)
		if err != nil {
			return "", err
		}
		images = append(images, benchImageFile{format: f, served: served})
		logf("deploy image %s: %d bytes served", f, len(served))
	}
	trials := make([][]deployTrial, len(images))
	for rep := range o.reps {
		for i, img := range images {
			t, err := runDeployTrial(e, o, img, raw)
			if err != nil {
				return "", fmt.Errorf("%s, repetition %d: %w", img.format, rep+1, err)
			}
			logf("deploy rep %d/%d %s: plain dd %.1f MiB/s (%d ms), deploy %.1f MiB/s (%d ms), ratio %.2f, VM %s",
				rep+1, o.reps, img.format, t.ddMiBps(), t.ddMS, t.deployMiBps(), t.streamMS,
				report.Ratio(t.deployMiBps(), t.ddMiBps()), t.boot.Round(time.Second))
			trials[i] = append(trials[i], t)
		}
	}

	var b strings.Builder
	b.WriteString("## Deploy ramdisk write throughput\n\n")
	fmt.Fprintf(&b, "The deploy ramdisk (`make deploy-image`) boots in one QEMU VM (TCG: no KVM here; %d vCPU, %d MiB RAM; virtio-blk on a sparse raw file, "+
		"QEMU's default writeback cache; virtio-net on slirp with `restrict=on`, the image served by a Go HTTP server on the host's loopback through a guest forward) "+
		"and writes the same %d MiB GPT image (in each 4 KiB, 2 KiB pseudo-random and 2 KiB text: it compresses about 2:1) to the same virtual disk twice: "+
		"first the baseline, `wget -q -O - URL | <decompress> | dd of=/dev/vda bs=1M conv=fsync` then `sync` (kernel argument `baremetal.bench=dd`, benchmarks only), "+
		"then the product's own deploy of it: wget, tee to the hasher, decompress, first MiB held back, `dd` to the disk, then `sync` (its console's "+
		"`streamed N bytes in M ms`, which also counts wiping the disk's ends before it). The page cache is dropped before each. "+
		"MiB/s is the image's raw size over that time, by the guest's clock; each repetition is a fresh VM and a fresh disk; "+
		"the disk is compared with the image afterwards. \"hash alone\" is `wget -q -O - URL | sha256sum` in the same VM between the two writes "+
		"(the raw size over its time), a bound the deploy cannot beat since it hashes every byte downloaded; \"whole deploy\" adds the checksum check, the held-back MiB, and the config drive.\n\n",
		o.cpus, o.memMiB, o.mib)
	missed := ""
	for i, img := range images {
		fmt.Fprintf(&b, "### %s (%d MiB served)\n\n", img.format, (len(img.served)+(1<<19))>>20)
		b.WriteString("| repetition | plain dd MiB/s | deploy MiB/s | deploy ÷ dd | hash alone MiB/s | whole deploy s | VM boot to stop s |\n|---|--:|--:|--:|--:|--:|--:|\n")
		var dd, dep, ratio, hash []float64
		for r, t := range trials[i] {
			rr := report.Ratio(t.deployMiBps(), t.ddMiBps())
			dd, dep, ratio, hash = append(dd, t.ddMiBps()), append(dep, t.deployMiBps()), append(ratio, rr), append(hash, t.hashMiBps())
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s |\n", r+1, report.F(t.ddMiBps(), 1), report.F(t.deployMiBps(), 1),
				report.F(rr, 2), report.F(t.hashMiBps(), 1), report.F(float64(t.writtenMS)/1000, 1), report.F(t.boot.Seconds(), 0))
		}
		med := report.Median(ratio)
		fmt.Fprintf(&b, "| **median** | **%s** | **%s** | **%s** | %s | | |\n\n", report.F(report.Median(dd), 1), report.F(report.Median(dep), 1),
			report.F(med, 2), report.F(report.Median(hash), 1))
		if !math.IsNaN(med) && med < 0.8 {
			missed += fmt.Sprintf(", %s %.2f×", img.format, med)
		}
	}
	b.WriteString("Target (issue 16): the deploy's write throughput at least 0.8× plain dd's (median ratio). ")
	if missed == "" {
		b.WriteString("Met.\n")
	} else {
		fmt.Fprintf(&b, "**Missed** (%s).\n", strings.TrimPrefix(missed, ", "))
	}
	return b.String(), nil
}

func checksum(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// parse reads the ramdisk's figures from its console into t.
func (t *deployTrial) parse(console string) error {
	m := benchDDLine.FindStringSubmatch(console)
	if m == nil {
		return fmt.Errorf("no 'bench dd' line on the console (a ramdisk without baremetal.bench?):\n%s", tail(console))
	}
	if m[3] != "0" {
		return fmt.Errorf("the plain dd failed (exit %s):%s", m[3], m[4])
	}
	t.ddBytes, _ = strconv.ParseInt(m[1], 10, 64)
	t.ddMS, _ = strconv.ParseInt(m[2], 10, 64)
	m = streamedLine.FindStringSubmatch(console)
	if m == nil {
		return fmt.Errorf("no 'streamed' line on the console:\n%s", tail(console))
	}
	t.streamBytes, _ = strconv.ParseInt(m[1], 10, 64)
	t.streamMS, _ = strconv.ParseInt(m[2], 10, 64)
	if m = hashLine.FindStringSubmatch(console); m != nil {
		t.hashMS, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m = writtenLine.FindStringSubmatch(console); m != nil {
		t.writtenMS, _ = strconv.ParseInt(m[2], 10, 64)
	}
	return nil
}
