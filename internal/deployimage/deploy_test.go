package deployimage

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/imagecache"
)

const (
	mib        = 1 << 20
	imageBytes = 40 * mib
	diskBytes  = 128 * mib
	sector     = 512
	// The last LBA a GPT may use on the test disk: the backup table (32
	// sectors) and header (1) take the last 33 sectors.
	diskLastLBA = diskBytes/sector - 34
	machine     = "deploy-1"
	diskSerial  = "DEPLOYDISK1"
	// A ramdisk that is still working when this passes is stuck; TCG on a
	// shared 2-core machine takes 20-60 s per boot.
	bootTimeout = 8 * time.Minute
)

// skipOrFail skips when the environment lacks a piece, except in CI, where
// a missing piece must fail rather than pass silently.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// TestDeployRamdisk boots the real deploy ramdisk in QEMU against a fake
// agent on the loopback, one VM per case on an isolated user network whose
// only way out is a guest forward to that agent, and then reads the VM's
// disk file.
func TestDeployRamdisk(t *testing.T) {
	dir := os.Getenv("BAREMETAL_DEPLOY_IMAGE")
	if dir == "" {
		skipOrFail(t, "BAREMETAL_DEPLOY_IMAGE is not set; run `make deploy-image` and point it at .cache/deploy-image")
	}
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			skipOrFail(t, fmt.Sprintf("deploy image incomplete (%v); run `make deploy-image`", err))
		}
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "sfdisk", "blkid", "zstd", "mtype"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, tool+" not found; install qemu-system-x86, qemu-utils, fdisk, zstd and mtools")
		}
	}

	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	agentBin := filepath.Join(t.TempDir(), "baremetal-agent")
	build := exec.Command("go", "build", "-o", agentBin, "./agent")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "building the agent for its lab-forward command: %s", out)

	img := buildGPTImage(t)
	mbr := buildMBRImage(t)
	gz := gzipBytes(t, img.data)
	zst := zstdBytes(t, img.data)
	// A qcow2 reaches the ramdisk as the agent's raw conversion of it
	// (internal/imagecache, the agent's own code), with the raw file's
	// checksum: the same stream, hash and held-back first MiB as raw.
	qcow := qcow2Raw(t, img.data)
	// The checksum is of the file as served (downloaded), compressed or not.
	sha256sum := func(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }
	sha512sum := func(b []byte) string { s := sha512.Sum512(b); return "sha512:" + hex.EncodeToString(s[:]) }
	wrongSum := sha256sum([]byte("not the image"))
	t.Logf("test image: %d bytes raw, %d gzip, %d zstd", len(img.data), len(gz), len(zst))

	tests := []struct {
		name     string
		served   []byte // the image file as served; nil serves nothing (404)
		format   string
		checksum string
		size     int64
		// throttle paces the download so that it spans several progress
		// intervals (5 s): unthrottled, the loopback outruns them.
		throttle      bool
		networkConfig bool
		refuse        string // the agent's refusal of the disks report
		// notReady is how many disks reports the agent answers 503 (still
		// converting) before its plan.
		notReady int
		check    func(t *testing.T, r *deployRun)
		// clean, when set, boots the ramdisk again in clean mode with this
		// wipe level once check passed (or, with cleanOnly, instead of a
		// deploy), and cleaned checks the disk after it.
		clean     string
		cleanOnly bool
		cleaned   func(t *testing.T, r *deployRun)
	}{
		{name: "raw", served: img.data, format: "raw", checksum: sha256sum(img.data), size: imageBytes, throttle: true,
			check: func(t *testing.T, r *deployRun) {
				r.requireDeployed(t, img, false)
				r.requireGrowingProgress(t)
			}},
		{name: "gzip", served: gz, format: "gzip", checksum: sha512sum(gz), size: imageBytes,
			check: func(t *testing.T, r *deployRun) { r.requireDeployed(t, img, false) }},
		// size_bytes 0: the agent does not know the image's size.
		{name: "zstd", served: zst, format: "zstd", checksum: sha256sum(zst), networkConfig: true,
			check: func(t *testing.T, r *deployRun) { r.requireDeployed(t, img, true) }},
		{name: "MBR image then clean metadata", served: mbr.data, format: "raw", checksum: sha256sum(mbr.data), size: int64(len(mbr.data)),
			check: func(t *testing.T, r *deployRun) { r.requireDeployed(t, mbr, false) },
			clean: "metadata",
			cleaned: func(t *testing.T, r *deployRun) {
				disk := r.disk(t)
				assert.Empty(t, sfdiskLabel(t, r.diskPath), "a partition table survived the metadata wipe")
				requireZero(t, disk[:mib], "first MiB")
				requireZero(t, disk[diskBytes-mib:], "last MiB")
				for _, p := range mbr.table.Partitions {
					requireZero(t, disk[p.Start*sector:p.Start*sector+mib], "partition "+p.Node+"'s first MiB")
				}
				assert.False(t, bytes.Contains(disk, []byte(UserData)), "the user-data is still on the disk")
			}},
		{name: "qcow2 after a 503 then clean config-drive", served: qcow.data, format: "raw", checksum: qcow.checksum, size: int64(len(img.data)),
			notReady: 1,
			check: func(t *testing.T, r *deployRun) {
				r.requireDeployed(t, img, false)
				assert.Contains(t, r.console, "deploy: the agent is not ready: converting")
			},
			clean: "config-drive",
			cleaned: func(t *testing.T, r *deployRun) {
				disk := r.disk(t)
				table := sfdiskDump(t, r.diskPath)
				require.Equal(t, "gpt", table.Label)
				require.Len(t, table.Partitions, len(img.table.Partitions), "partitions after the clean: %+v", table.Partitions)
				for i, p := range img.table.Partitions {
					got := table.Partitions[i]
					assert.Equal(t, [4]any{p.Start, p.Size, p.Type, p.Name}, [4]any{got.Start, got.Size, got.Type, got.Name})
					assert.True(t, bytes.Equal(img.data[p.Start*sector:(p.Start+p.Size)*sector], disk[p.Start*sector:(p.Start+p.Size)*sector]),
						"the clean touched partition %s", p.Node)
				}
				// The config drive's 64 MiB below the backup GPT are zeros.
				requireZero(t, disk[diskBytes-65*mib:diskBytes-mib], "the config drive's area")
				assert.False(t, bytes.Contains(disk, []byte(UserData)), "the user-data is still on the disk")
				verify, err := exec.Command("sfdisk", "--verify", r.diskPath).CombinedOutput()
				assert.NoError(t, err, "sfdisk --verify: %s", verify)
			}},
		{name: "clean full", cleanOnly: true, clean: "full",
			cleaned: func(t *testing.T, r *deployRun) { requireZero(t, r.disk(t), "the disk") }},
		{name: "not gzip", served: img.data[:4*mib], format: "gzip", checksum: sha256sum(img.data[:4*mib]),
			check: func(t *testing.T, r *deployRun) {
				cb := r.requireFailed(t)
				assert.Contains(t, cb.Message, "decompressing the gzip image: ")
				requireZero(t, r.disk(t)[:mib], "first MiB")
			}},
		{name: "disks refused", refuse: "no disk matches the root device hints {min_size_gb: 500}; disks seen: vda (128 MiB)",
			check: func(t *testing.T, r *deployRun) {
				// The agent has failed the machine itself: the ramdisk
				// shows why and stops, with nothing written or called back.
				assert.Contains(t, r.console, "deploy: the agent refused the disks report (HTTP 409): no disk matches the root device hints {min_size_gb: 500}; disks seen: vda (128 MiB)")
				assert.Empty(t, r.agent.Callbacks())
				assert.Empty(t, r.agent.ImageGets())
				assert.Equal(t, previousDisk(), r.disk(t)[:mib])
			}},
		{name: "checksum mismatch", served: img.data, format: "raw", checksum: wrongSum, size: imageBytes,
			check: func(t *testing.T, r *deployRun) {
				cb := r.requireFailed(t)
				assert.Equal(t, fmt.Sprintf("checksum mismatch: want %s, got %s", wrongSum, sha256sum(img.data)), cb.Message)
				disk := r.disk(t)
				requireZero(t, disk[:mib], "first MiB")
				requireZero(t, disk[diskBytes-mib:], "last MiB")
				requireZero(t, disk[imageBytes-mib:imageBytes], "last MiB of the image (its backup GPT)")
				assert.NotEqual(t, "gpt", sfdiskLabel(t, r.diskPath), "a partition table survived the failed deploy")
			}},
		{name: "image larger than disk", served: img.data, format: "raw", checksum: sha256sum(img.data), size: 200 * mib,
			check: func(t *testing.T, r *deployRun) {
				cb := r.requireFailed(t)
				assert.Equal(t, fmt.Sprintf("image (%d bytes) is larger than disk vda (%d bytes)", 200*mib, diskBytes), cb.Message)
				assert.Empty(t, r.agent.ImageGets(), "the image was fetched although it cannot fit")
				assert.Equal(t, previousDisk(), r.disk(t)[:mib], "the disk was written before the image was refused")
			}},
		{name: "image URL 404", served: nil, format: "raw", checksum: sha256sum(img.data), size: imageBytes,
			check: func(t *testing.T, r *deployRun) {
				cb := r.requireFailed(t)
				assert.Contains(t, cb.Message, r.imageURL)
				assert.Contains(t, cb.Message, "404")
				// What the disk held before is not bootable either: a failed
				// deploy must not boot the old OS as if it were the new one.
				requireZero(t, r.disk(t)[:mib], "first MiB")
			}},
	}

	// Three VMs at a time: enough to overlap boots, few enough not to
	// starve the other work on a shared 2-core machine.
	slots := make(chan struct{}, 3)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			slots <- struct{}{}
			defer func() { <-slots }()

			agent := newFakeAgent(t)
			agent.NotReady(tt.notReady)
			name := "image." + tt.format
			if tt.served != nil {
				agent.Serve("/images/"+name, tt.served, tt.throttle)
			}
			r := &deployRun{agent: agent, imageURL: agent.GuestURL + "/images/" + name}
			cd := map[string]string{
				"user-data": agent.GuestURL + "/config/user-data",
				"meta-data": agent.GuestURL + "/config/meta-data",
			}
			if tt.networkConfig {
				cd["network-config"] = agent.GuestURL + "/config/network-config"
			}
			agent.SetPlan(map[string]any{
				"mode":         "deploy",
				"device":       "vda",
				"image":        map[string]any{"url": r.imageURL, "checksum": tt.checksum, "format": tt.format, "size_bytes": tt.size},
				"config_drive": cd,
			})
			agent.Refuse(tt.refuse)
			if !tt.cleanOnly {
				r.boot(t, dir, agentBin, "deploy")
				r.requireDisksReport(t, 1+tt.notReady)
				tt.check(t, r)
			}
			if tt.clean == "" {
				return
			}
			agent.Reset()
			agent.SetPlan(map[string]any{"mode": "clean", "device": "vda", "wipe": tt.clean})
			r.boot(t, dir, agentBin, "clean")
			r.requireDisksReport(t, 1)
			cb := r.callback(t)
			require.Equal(t, "ok", cb.Status, "clean callback %+v", cb)
			assert.Equal(t, "cleaned", cb.Stage)
			assert.Equal(t, "vda", cb.Disk)
			assert.Contains(t, r.console, "deploy: clean of /dev/vda done")
			tt.cleaned(t, r)
		})
	}
}

// testImage is a small real GPT disk image, and its partitions as sfdisk
// reads them.
type testImage struct {
	data  []byte
	table sfdiskTable
}

// buildGPTImage lays out an ESP-like and a Linux partition with sfdisk and
// fills them with seeded random data and markers, so any misplaced or lost
// byte shows, while gzip and zstd still have something to compress.
func buildGPTImage(t *testing.T) testImage {
	return buildImage(t, imageBytes, "label: gpt\nsize=8MiB, type=U, name=ESP\ntype=L, name=root\n")
}

// buildMBRImage is an image with a DOS partition table: the config drive
// goes into the MBR's free entries.
func buildMBRImage(t *testing.T) testImage {
	return buildImage(t, 24*mib, "label: dos\nsize=20MiB, type=83\n")
}

func buildImage(t *testing.T, size int64, layout string) testImage {
	t.Helper()
	path := filepath.Join(t.TempDir(), "image.raw")
	require.NoError(t, os.WriteFile(path, nil, 0o644))
	require.NoError(t, os.Truncate(path, size))
	sfdisk := exec.Command("sfdisk", "-q", path)
	sfdisk.Stdin = strings.NewReader(layout)
	out, err := sfdisk.CombinedOutput()
	require.NoError(t, err, "sfdisk: %s", out)
	table := sfdiskDump(t, path)
	require.NotEmpty(t, table.Partitions)

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	rng := mrand.New(mrand.NewChaCha8([32]byte{'d', 'e', 'p', 'l', 'o', 'y'}))
	for _, p := range table.Partitions {
		for off := p.Start * sector; off < (p.Start+p.Size)*sector; off += mib {
			chunk := data[off : off+64*1024]
			for i := range chunk {
				chunk[i] = byte(rng.Uint32())
			}
			copy(chunk, fmt.Sprintf("BAREMETAL-DEPLOY-TEST partition %s offset %d", p.Node, off))
		}
	}
	return testImage{data: data, table: table}
}

// convertedImage is a qcow2 image as the agent serves it: its raw
// conversion and that file's checksum.
type convertedImage struct {
	data     []byte
	checksum string
}

// qcow2Raw makes a compressed qcow2 of raw with qemu-img and converts it
// back with the agent's image cache, which checks the qcow2's checksum.
func qcow2Raw(t *testing.T, raw []byte) convertedImage {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.raw"), filepath.Join(dir, "image.qcow2")
	require.NoError(t, os.WriteFile(in, raw, 0o644))
	b, err := exec.Command("qemu-img", "convert", "-q", "-c", "-f", "raw", "-O", "qcow2", in, out).CombinedOutput()
	require.NoError(t, err, "qemu-img: %s", b)
	q, err := os.ReadFile(out)
	require.NoError(t, err)
	sum := sha256.Sum256(q)
	c, err := imagecache.New(t.Context(), filepath.Join(dir, "cache"))
	require.NoError(t, err)
	got, err := c.Raw(t.Context(), imagecache.Source{Name: "image.qcow2", Checksum: "sha256:" + hex.EncodeToString(sum[:]),
		Open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(q)), nil }})
	require.NoError(t, err)
	data, err := os.ReadFile(got.Path)
	require.NoError(t, err)
	require.True(t, bytes.Equal(raw, data), "the agent's conversion differs from the raw image")
	t.Logf("qcow2 image: %d bytes, converted to %d raw", len(q), len(data))
	return convertedImage{data: data, checksum: "sha256:" + got.SHA256}
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, err := w.Write(b)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func zstdBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	cmd := exec.Command("zstd", "-q", "-c")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	require.NoError(t, err)
	return out
}

type sfdiskPartition struct {
	Node  string `json:"node"`
	Start int64  `json:"start"`
	Size  int64  `json:"size"`
	Type  string `json:"type"`
	Name  string `json:"name"`
}

type sfdiskTable struct {
	Label      string            `json:"label"`
	LastLBA    int64             `json:"lastlba"`
	Partitions []sfdiskPartition `json:"partitions"`
}

func sfdiskDump(t *testing.T, path string) sfdiskTable {
	t.Helper()
	out, err := exec.Command("sfdisk", "--json", path).Output()
	require.NoError(t, err, "sfdisk --json %s", path)
	var v struct {
		PartitionTable sfdiskTable `json:"partitiontable"`
	}
	require.NoError(t, json.Unmarshal(out, &v))
	return v.PartitionTable
}

// sfdiskLabel is the partition table type sfdisk finds on path, or "" for
// none.
func sfdiskLabel(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("sfdisk", "--json", path).Output()
	if err != nil {
		return ""
	}
	var v struct {
		PartitionTable sfdiskTable `json:"partitiontable"`
	}
	require.NoError(t, json.Unmarshal(out, &v))
	return v.PartitionTable.Label
}

func requireZero(t *testing.T, b []byte, what string) {
	t.Helper()
	require.Equal(t, len(b), bytes.Count(b, []byte{0}), "%s is not all zeros", what)
}

// previousDisk is what the test disk holds before the deploy: a stand-in
// for an earlier OS's first MiB, so a test can tell untouched from wiped.
func previousDisk() []byte {
	return bytes.Repeat([]byte("PREVIOUS-OS-BOOT-SECTOR "), mib/24+1)[:mib]
}

// newFakeAgent starts the agent's side of the protocol for the test's
// machine, stopped when the test ends.
func newFakeAgent(t *testing.T) *FakeAgent {
	a, err := NewFakeAgent(machine)
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return a
}

// deployRun is one boot of the ramdisk and what came of it.
type deployRun struct {
	agent    *FakeAgent
	imageURL string
	diskPath string
	console  string
	elapsed  time.Duration
}

// boot runs the ramdisk in QEMU until it has called back and says it has
// stopped (after its final sync), then stops QEMU.
func (r *deployRun) boot(t *testing.T, dir, agentBin, mode string) {
	t.Helper()
	if r.diskPath == "" {
		r.diskPath = filepath.Join(t.TempDir(), "disk.raw")
		require.NoError(t, os.WriteFile(r.diskPath, previousDisk(), 0o644))
		require.NoError(t, os.Truncate(r.diskPath, diskBytes))
	}

	a := r.agent
	// Give up before the test binary's own deadline: its panic would lose
	// the console, which is what says where a stuck ramdisk stopped.
	deadline := time.Now().Add(bootTimeout)
	if d, ok := t.Deadline(); ok && d.Add(-30*time.Second).Before(deadline) {
		deadline = d.Add(-30 * time.Second)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	vm := VM{KernelDir: dir, Forward: []string{agentBin, "lab-forward"}, DiskPath: r.diskPath, DiskSerial: diskSerial, Mode: mode}
	console, elapsed, finished, err := vm.Boot(ctx, a)
	require.NoError(t, err)
	r.console, r.elapsed = console, elapsed
	if !finished {
		t.Fatalf("the ramdisk did not stop within %.0f s; console:\n%s", r.elapsed.Seconds(), r.console)
	}
	t.Logf("boot to stop: %.1f s", r.elapsed.Seconds())
	assert.NotContains(t, r.console, a.Token, "the console shows the token")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("console:\n%s", r.console)
		}
	})
}

func (r *deployRun) disk(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(r.diskPath)
	require.NoError(t, err)
	require.Len(t, b, diskBytes)
	return b
}

func (r *deployRun) callback(t *testing.T) CallbackReport {
	t.Helper()
	cbs := r.agent.Callbacks()
	require.Len(t, cbs, 1, "callbacks")
	return cbs[0]
}

func (r *deployRun) requireDisksReport(t *testing.T, n int) {
	t.Helper()
	disks := r.agent.Disks()
	require.Len(t, disks, n, "disks reports")
	require.Len(t, disks[0], 1, "disks seen: %+v", disks[0])
	d := disks[0][0]
	assert.Equal(t, "vda", d.Name)
	assert.Equal(t, int64(diskBytes), d.SizeBytes)
	assert.Equal(t, diskSerial, d.Serial)
	assert.NotNil(t, d.Rotational, "rotational missing")
}

func (r *deployRun) requireFailed(t *testing.T) CallbackReport {
	t.Helper()
	cb := r.callback(t)
	require.Equal(t, "failed", cb.Status, "callback %+v", cb)
	require.Equal(t, "image_written", cb.Stage)
	assert.Contains(t, r.console, "deploy: FAILED: "+cb.Message)
	return cb
}

// requireDeployed checks an ok callback and the disk: the image's bytes,
// its partitions where they were, the GPT moved to the disk's end, and a
// CIDATA partition at the end holding what the agent served.
func (r *deployRun) requireDeployed(t *testing.T, img testImage, withNetworkConfig bool) {
	t.Helper()
	cb := r.callback(t)
	require.Equal(t, "ok", cb.Status, "callback %+v", cb)
	assert.Equal(t, "image_written", cb.Stage)
	assert.Equal(t, []string{"10.0.2.15"}, cb.Addresses)
	assert.Equal(t, machine, cb.Hostname)
	assert.Equal(t, "vda", cb.Disk)
	assert.Equal(t, int64(len(img.data)), cb.BytesWritten)
	t.Logf("deploy: %d bytes in %d ms by the ramdisk's clock", cb.BytesWritten, cb.DurationMS)
	assert.Positive(t, cb.DurationMS)
	assert.Contains(t, cb.LogTail, "checksum verified")
	assert.Contains(t, r.console, "deploy: done")

	disk := r.disk(t)
	table := sfdiskDump(t, r.diskPath)
	require.Equal(t, img.table.Label, table.Label)
	// The last sector a partition may use.
	lastLBA := int64(diskBytes/sector - 1)
	lo, hi := sector, len(img.data)
	if table.Label == "gpt" {
		lastLBA = diskLastLBA
		assert.Equal(t, lastLBA, table.LastLBA, "the GPT does not span the disk")
		// Between the primary GPT (LBA 0-33: protective MBR, header,
		// entries, which the relocation and the new entry rewrite) and
		// the image's own backup GPT (its last 33 sectors).
		lo, hi = 34*sector, len(img.data)-33*sector
	} else {
		// The MBR's boot code is the image's; its table gained an entry.
		assert.True(t, bytes.Equal(img.data[:446], disk[:446]), "the MBR's boot code changed")
	}
	require.True(t, bytes.Equal(img.data[lo:hi], disk[lo:hi]), "the disk differs from the image outside its partition table")

	n := len(img.table.Partitions)
	require.Len(t, table.Partitions, n+1)
	for i, p := range img.table.Partitions {
		got := table.Partitions[i]
		assert.Equal(t, [4]any{p.Start, p.Size, p.Type, p.Name}, [4]any{got.Start, got.Size, got.Type, got.Name})
		assert.True(t, bytes.Equal(img.data[p.Start*sector:(p.Start+p.Size)*sector], disk[p.Start*sector:(p.Start+p.Size)*sector]),
			"partition %s differs from the image's", p.Node)
	}
	verify, err := exec.Command("sfdisk", "--verify", r.diskPath).CombinedOutput()
	assert.NoError(t, err, "sfdisk --verify: %s", verify)

	cd := table.Partitions[n]
	if table.Label == "gpt" {
		assert.Equal(t, "CIDATA", cd.Name)
	}
	assert.Equal(t, int64(64*mib/sector), cd.Size)
	assert.Zero(t, cd.Start%2048, "config drive start %d is not MiB-aligned", cd.Start)
	end := cd.Start + cd.Size - 1
	assert.LessOrEqual(t, end, lastLBA)
	assert.Less(t, lastLBA-end, int64(2048), "the config drive is not at the disk's end")
	off := cd.Start * sector
	// What cloud-init's NoCloud looks for: blkid's LABEL (or the boot
	// sector's, LABEL_FATBOOT) CIDATA on a vfat filesystem.
	for _, tag := range []string{"TYPE", "LABEL", "LABEL_FATBOOT"} {
		out, err := exec.Command("blkid", "-p", "-O", fmt.Sprint(off), "-s", tag, "-o", "value", r.diskPath).Output()
		require.NoError(t, err, "blkid %s", tag)
		assert.Equal(t, map[string]string{"TYPE": "vfat", "LABEL": "CIDATA", "LABEL_FATBOOT": "CIDATA"}[tag], strings.TrimSpace(string(out)), tag)
	}
	files := map[string]string{"user-data": UserData, "meta-data": MetaData}
	if withNetworkConfig {
		files["network-config"] = NetworkConfig
	}
	for name, want := range files {
		got, err := mtools("mtype", "-i", fmt.Sprintf("%s@@%d", r.diskPath, off), "::"+name).Output()
		require.NoError(t, err, "mtype %s", name)
		assert.Equal(t, want, string(got), name)
	}
	dir, err := mtools("mdir", "-b", "-i", fmt.Sprintf("%s@@%d", r.diskPath, off), "::").Output()
	require.NoError(t, err)
	assert.Len(t, strings.Fields(string(dir)), len(files), "config drive files: %s", dir)
}

// requireGrowingProgress checks that progress reports came during the
// stream and counted up to the image.
func (r *deployRun) requireGrowingProgress(t *testing.T) {
	t.Helper()
	progress := r.agent.Progress()
	t.Logf("progress: %+v", progress)
	require.GreaterOrEqual(t, len(progress), 2, "progress reports")
	for i := 1; i < len(progress); i++ {
		assert.GreaterOrEqual(t, progress[i].BytesWritten, progress[i-1].BytesWritten, "bytes_written went down")
		assert.Greater(t, progress[i].ElapsedMS, progress[i-1].ElapsedMS)
	}
	assert.Greater(t, progress[len(progress)-1].BytesWritten, progress[0].BytesWritten, "bytes_written never grew")
	assert.LessOrEqual(t, progress[len(progress)-1].BytesWritten, int64(imageBytes))
}

// mtools runs an mtools command on a FAT filesystem inside a disk file.
func mtools(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	// mtools refuses filesystems whose geometry fields it finds odd, which
	// says nothing about whether Linux and cloud-init can read them.
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	return cmd
}
