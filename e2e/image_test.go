package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

// The lab's Debian image (scripts/build-os-image.sh) as the agent serves it
// from its assets directory: the raw disk and its zstd copy, each with a
// sha256sum file beside it.
const (
	osImageRaw = "debian-12-amd64.raw"
	osImageZst = "debian-12-amd64.raw.zst"
	// osImageV2 is the re-image's image, made by the test.
	osImageV2 = "debian-12-amd64-v2.raw.zst"
)

// TestImageDeployOverQEMU installs the real Debian image on QEMU machines
// through the real agent: iPXE boots the agent's deploy ramdisk, which
// reports its disks, streams the image from the agent onto the VM's disk,
// writes the NoCloud config drive and calls back "image written"; the
// agent boots the disk through Redfish, and the image's cloud-init runs the
// stock user-data, which calls back "OS up" with the OS's addresses. One
// machine is UEFI and one BIOS; a third (BIOS), deployed at the same time
// with a wrong checksum, must fail with the mismatch and never boot its
// disk. Then a new image on the UEFI machine's profile re-images it in
// place. Each step is read back from the VMs' serial logs.
//
// It needs the OS image (BAREMETAL_OS_IMAGE, make os-image) and the deploy
// ramdisk (BAREMETAL_DEPLOY_IMAGE, make deploy-image); make e2e provides
// both. Without them it skips, except under make e2e (BAREMETAL_E2E).
func TestImageDeployOverQEMU(t *testing.T) {
	t.Parallel()
	root, osDir, ramdisk := requireImageSite(t)
	zstSum := sha256File(t, filepath.Join(osDir, osImageZst))
	rawSum := sha256File(t, filepath.Join(osDir, osImageRaw))
	rawInfo, err := os.Stat(filepath.Join(osDir, osImageRaw))
	require.NoError(t, err)
	// Room for the image, the 64 MiB config drive and the GPT's backup.
	diskMiB := rawInfo.Size()>>20 + 128

	// The agent serves the images from an assets directory of the test's:
	// the zstd image as built, and a second release of it for the re-image,
	// compressed anew (other bytes, another checksum, the same disk).
	assets := t.TempDir()
	linkOrCopy(t, filepath.Join(osDir, osImageZst), filepath.Join(assets, osImageZst))
	v2 := filepath.Join(assets, osImageV2)
	out, err := exec.Command("zstd", "-q", "-1", "-T0", filepath.Join(osDir, osImageRaw), "-o", v2).CombinedOutput()
	require.NoError(t, err, "zstd: %s", out)
	v2Sum := sha256Of(t, v2)
	require.NotEqual(t, zstSum, v2Sum)

	bootAddr, bootPort := freeBoot(t)
	e := startSite(t, root, "", siteOpts{
		bootAddr: bootAddr, bootURL: lab.QEMUBootURL(bootPort),
		tftpAddr: testenv.FreeUDP(t).Release(),
		assets:   assets,
		agent:    []string{"--deploy-image-dir", ramdisk},
		// Odd machines BIOS, even UEFI; Debian with cloud-init wants more
		// than the lab's default 256 MiB.
		lab: []string{"--machines", "3", "--name-prefix", "img-", "--firmware", lab.FirmwareMixed,
			"--memory", "1024", "--disk-mib", fmt.Sprint(diskMiB), "--boot-url", lab.QEMUBootURL(bootPort)},
	})
	require.Len(t, e.inventory.Machines, 3)
	bios, uefi, bad := e.inventory.Machines[0], e.inventory.Machines[1], e.inventory.Machines[2]
	require.Equal(t, lab.FirmwareBIOS, bios.Firmware)
	require.Equal(t, lab.FirmwareUEFI, uefi.Firmware)

	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Minute)
	defer cancel()
	wrong := "sha256:" + rawSum // the raw image's sum, offered for the zstd file
	for _, p := range []api.BootProfileRequest{
		imageProfile("debian", osImageZst, "sha256:"+zstSum, "zstd"),
		imageProfile("debian-uefi", osImageZst, "sha256:"+zstSum, "zstd"),
		imageProfile("debian-bad-sum", osImageZst, wrong, "zstd"),
	} {
		_, err := e.client.CreateBootProfile(ctx, p)
		require.NoError(t, err)
	}
	start := time.Now()
	for _, mp := range []struct {
		m       lab.InventoryEntry
		profile string
	}{{bios, "debian"}, {uefi, "debian-uefi"}, {bad, "debian-bad-sum"}} {
		_, err := e.client.CreateMachine(ctx, api.MachineRequest{
			Name: mp.m.Name, MACs: []string{mp.m.MAC}, BootProfile: mp.profile,
			BMC: api.BMCRequest{Endpoint: mp.m.Endpoint, Username: mp.m.Username, Password: mp.m.Password},
		})
		require.NoError(t, err)
	}

	// The bad checksum: the ramdisk streams the whole image, then refuses it.
	failed := e.waitSettled(ctx, bad.Name)
	require.Equal(t, api.PhaseFailed, failed.Phase, "last error %q", failed.LastError)
	assert.Contains(t, failed.LastError, "checksum mismatch: want "+wrong+", got sha256:"+zstSum)
	assert.Contains(t, e.serialLog(bad.Name), "deploy: FAILED: checksum mismatch: want "+wrong+", got sha256:"+zstSum)
	t.Logf("%s: failed after %s: %s", bad.Name, time.Since(start).Round(time.Second), failed.LastError)

	// The good image: written, booted from disk, and up, under either firmware.
	for _, m := range []lab.InventoryEntry{bios, uefi} {
		up := e.waitSettled(ctx, m.Name)
		require.Equal(t, api.PhaseProvisioned, up.Phase, "%s: last error %q", m.Name, up.LastError)
		t.Logf("%s (%s): provisioned %s after registration", m.Name, m.Firmware, time.Since(start).Round(time.Second))
		assert.Contains(t, up.Addresses, e.ramdiskAddress(m.Name), "%s: the OS-up callback carries the address the VM's DHCP gave its ramdisk", m.Name)
		e.assertDeployed(m, osImageZst, 1)
	}

	// A new image re-images the UEFI machine in place.
	up, err := e.client.GetMachine(ctx, uefi.Name)
	require.NoError(t, err)
	before := up.ProvisionedProfileVersion
	_, err = e.client.UpdateBootProfile(ctx, "debian-uefi", imageProfile("debian-uefi", osImageV2, "sha256:"+v2Sum, "zstd"))
	require.NoError(t, err)
	reimage := time.Now()
	again, err := e.client.WaitMachine(ctx, uefi.Name, func(m *api.Machine) (bool, error) {
		return m.Phase == api.PhaseFailed ||
			(m.Phase == api.PhaseProvisioned && m.ProvisionedProfileVersion > before), nil
	})
	require.NoError(t, err)
	require.Equal(t, api.PhaseProvisioned, again.Phase, "last error %q", again.LastError)
	t.Logf("%s: re-imaged in %s", uefi.Name, time.Since(reimage).Round(time.Second))
	e.assertDeployed(uefi, osImageV2, 2)

	// All that time the machine with the bad image stayed in its ramdisk:
	// no second boot, no firmware loading its disk, and a disk that holds
	// no partition table to boot from.
	badSerial := e.serialLog(bad.Name)
	assert.Equal(t, 1, strings.Count(badSerial, "deploy: starting"), "the failed machine booted again")
	for _, never := range []string{"Cloud-init v.", "login:", "root=UUID="} {
		assert.NotContains(t, badSerial, never, "the failed machine booted its disk")
	}
	assert.True(t, zeroAt(t, e.labDisk(bad.Name), 0, 1<<20), "the first MiB (MBR, primary GPT) of the failed machine's disk is not blank")
}

// requireImageSite checks what the image deploy test needs: the agent, the
// deploy ramdisk, the OS image with its zstd copy, QEMU, zstd and OVMF.
func requireImageSite(t *testing.T) (root, osDir, ramdisk string) {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	img := os.Getenv("BAREMETAL_OS_IMAGE")
	ramdisk = os.Getenv("BAREMETAL_DEPLOY_IMAGE")
	switch {
	case img == "":
		skipUnlessE2E(t, "BAREMETAL_OS_IMAGE is not set: make e2e builds the OS image (about 14 minutes the first time) and runs this test")
	case ramdisk == "":
		skipUnlessE2E(t, "BAREMETAL_DEPLOY_IMAGE is not set: make e2e builds the deploy ramdisk and runs this test")
	}
	osDir, err = filepath.Abs(filepath.Dir(img))
	require.NoError(t, err)
	for _, f := range []string{
		filepath.Join(osDir, osImageRaw), filepath.Join(osDir, osImageRaw+".sha256"),
		filepath.Join(osDir, osImageZst), filepath.Join(osDir, osImageZst+".sha256"),
		filepath.Join(ramdisk, "vmlinuz"), filepath.Join(ramdisk, "initrd.img"),
		filepath.Join(root, "bin", "baremetal-agent"), lab.DefaultOVMFCode, lab.DefaultOVMFVars,
	} {
		if !exists(f) {
			skipUnlessE2E(t, f+" is missing: make e2e builds the images and the agent (and .ci/run installs ovmf)")
		}
	}
	for _, tool := range []string{"qemu-system-x86_64", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipUnlessE2E(t, tool+" is not on PATH (Debian's qemu-system-x86 and zstd)")
		}
	}
	return root, osDir, ramdisk
}

// skipUnlessE2E skips a test whose large prerequisites (a 1.5 GB OS image
// that takes minutes to build, VMs that boot a real OS for minutes) make
// test leaves out, except under make e2e (BAREMETAL_E2E), whose point they
// are.
func skipUnlessE2E(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("BAREMETAL_E2E") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// imageProfile deploys file from the agent's assets directory; the deploy
// ramdisk's console is the serial port, where the test reads it.
func imageProfile(name, file, checksum, format string) api.BootProfileRequest {
	return api.BootProfileRequest{
		Name: name, Cmdline: "console=ttyS0",
		Image: &api.Image{URL: file, Checksum: checksum, Format: format},
	}
}

// waitSettled waits until the machine is provisioned or failed.
func (e *env) waitSettled(ctx context.Context, name string) *api.Machine {
	e.t.Helper()
	m, err := e.client.WaitMachine(ctx, name, func(m *api.Machine) (bool, error) {
		return m.Phase == api.PhaseProvisioned || m.Phase == api.PhaseFailed, nil
	})
	require.NoError(e.t, err, "waiting for %s", name)
	return m
}

// assertDeployed checks the n-th deploy of file to machine name in its
// serial log and events: the ramdisk verified and wrote the image, the
// firmware booted the disk's grub, Debian's cloud-init finished under the
// machine's name, and the agent recorded both callbacks of the run.
func (e *env) assertDeployed(m lab.InventoryEntry, file string, n int) {
	t := e.t
	t.Helper()
	name := m.Name
	// cloud-init calls back from its last stage, so the machine can be
	// provisioned a moment before cloud-init's closing line.
	finished := regexp.MustCompile(`Cloud-init v\. \S+ finished at`)
	testenv.Eventually(t, name+"'s cloud-init to finish", 3*time.Minute, func() error {
		if got := len(finished.FindAllStringIndex(e.serialLog(name), -1)); got < n {
			return fmt.Errorf("%d of %d runs finished", got, n)
		}
		return nil
	})
	serial := e.serialLog(name)
	// Each deploy names its own image, so the n-th deploy is the n-th
	// "writing" line and must name file; earlier ones wrote other images.
	writes := regexp.MustCompile(`deploy: at [0-9.]+ s since boot: writing http://10\.0\.2\.4:\d+/machines/`+name+`/assets/(\S+)\?token=<token>`).FindAllStringSubmatch(serial, -1)
	if assert.Len(t, writes, n, "%s: deploys in the serial log", name) {
		assert.Equal(t, file, writes[n-1][1], "%s: the image of deploy %d", name, n)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`deploy: checksum verified \(sha256\)`),
		regexp.MustCompile(`deploy: config drive: user-data \(\d+ bytes\)`),
		// The agent power-cycles the machine as soon as the ramdisk's
		// callback arrives, often before the ramdisk can print its answer.
		regexp.MustCompile(`deploy: image written to /dev/vda: \d+ bytes in \d+ ms`),
		regexp.MustCompile(`Command line: .*root=UUID=[0-9a-f-]{36} `),
		regexp.MustCompile(`Cloud-init v\. \S+ running 'modules:final'`),
		finished,
		regexp.MustCompile(regexp.QuoteMeta(name) + ` login:`),
	} {
		if got := len(want.FindAllStringIndex(serial, -1)); got < n {
			t.Errorf("%s serial log: %d lines match %q, want at least %d", name, got, want, n)
		}
	}
	// Under UEFI both the ramdisk's kernel and Debian's are started by the
	// firmware; under BIOS neither.
	efi := strings.Count(serial, "efi: EFI v")
	if m.Firmware == lab.FirmwareUEFI {
		assert.GreaterOrEqual(t, efi, 2*n, "%s: kernels started by UEFI", name)
	} else {
		assert.Zero(t, efi, "%s: a BIOS machine's kernel was started by UEFI", name)
	}
	for _, line := range regexp.MustCompile(`deploy: (writing|image written|checksum)[^\r\n]*|Cloud-init v\. \S+ finished[^\r\n]*`).FindAllString(serial, -1) {
		t.Logf("%s serial: %s", name, line)
	}
	var written, osUp int
	var startedAt, writtenAt time.Time
	for _, ev := range e.events(name) {
		switch {
		case ev.Type == api.EventRunStarted:
			startedAt = ev.Time
		case ev.Type == api.EventImageWritten && ev.Data["status"] == "ok":
			written++
			writtenAt = ev.Time
		case ev.Type == api.EventCallbackReceived && ev.Data["stage"] == model.StageOSUp && ev.Data["hostname"] == name && ev.Data["status"] == "ok":
			osUp++
			t.Logf("%s: OS up (addresses %s) %s after the run started, %s after the image was written",
				name, ev.Data["addresses"], ev.Time.Sub(startedAt).Round(time.Second), ev.Time.Sub(writtenAt).Round(time.Second))
		}
	}
	assert.Equal(t, n, written, "%s: image_written events", name)
	assert.Equal(t, n, osUp, "%s: OS-up callbacks", name)
}

// ramdiskAddress is the address the VM's DHCP gave its deploy ramdisk, as
// the ramdisk printed it.
func (e *env) ramdiskAddress(name string) string {
	e.t.Helper()
	m := regexp.MustCompile(`deploy: network \S+ address (\S+)`).FindStringSubmatch(e.serialLog(name))
	require.NotNil(e.t, m, "%s: no address in the ramdisk's serial output", name)
	return m[1]
}

// labDisk is the path of a lab VM's disk file.
func (e *env) labDisk(name string) string { return filepath.Join(e.labState, name+".disk") }

// zeroAt reports whether n bytes of file at off are all zero.
func zeroAt(t *testing.T, file string, off, n int64) bool {
	t.Helper()
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, n)
	_, err = f.ReadAt(buf, off)
	require.NoError(t, err)
	return bytes.Count(buf, []byte{0}) == len(buf)
}

// linkOrCopy makes dst a hard link to src, or a copy where they are on
// different filesystems: the agent serves no symlink that leaves its
// assets directory.
func linkOrCopy(t *testing.T, src, dst string) {
	t.Helper()
	if os.Link(src, dst) == nil {
		return
	}
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.Create(dst)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}

// sha256Of is the hex sha256 of file.
func sha256Of(t *testing.T, file string) string {
	t.Helper()
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// sha256File reads the hex sum from file's sha256sum file.
func sha256File(t *testing.T, file string) string {
	t.Helper()
	f, err := os.Open(file + ".sha256")
	require.NoError(t, err)
	defer f.Close()
	b, err := io.ReadAll(f)
	require.NoError(t, err)
	fields := strings.Fields(string(b))
	require.NotEmpty(t, fields, "%s.sha256 is empty", file)
	require.Regexp(t, `^[0-9a-f]{64}$`, fields[0])
	return fields[0]
}
