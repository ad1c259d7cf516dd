package provision_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// TestImageDeploy runs image deploys through the real reconciler, boot
// edge and Redfish client against the lab's simulated machines, whose
// deploy ramdisk reads the whole image and checks its checksum: a good
// image is written, the machine is power-cycled into it and provisioned
// when the deployed OS calls back; a checksum mismatch and root device
// hints no disk matches fail the machine with what to fix, and neither
// machine is ever booted from its disk.
func TestImageDeploy(t *testing.T) {
	e := newEnv(t, envOpts{machines: 3})
	image := []byte(strings.Repeat("a raw disk image\n", 4096))
	require.NoError(t, os.WriteFile(filepath.Join(e.assets, "image.raw"), image, 0o644))
	sum := sha256.Sum256(image)
	good := "sha256:" + hex.EncodeToString(sum[:])
	bad := "sha256:" + strings.Repeat("0", 64)
	userData := map[string]string{"user-data": "#cloud-config\nhostname: {{ .Machine.Name }}\n"}
	e.profile(&model.BootProfile{Name: "img", Cmdline: "console=ttyS0", Templates: userData,
		Image: &model.Image{URL: "image.raw", Checksum: good, Format: "raw"}})
	e.profile(&model.BootProfile{Name: "img-bad", Templates: userData,
		Image: &model.Image{URL: "image.raw", Checksum: bad, Format: "raw"}})
	e.update("lab-1", func(m *model.Machine) { m.State = model.StateProvisioned; m.BootProfile = "img" })
	e.update("lab-2", func(m *model.Machine) { m.State = model.StateProvisioned; m.BootProfile = "img-bad" })
	e.update("lab-3", func(m *model.Machine) {
		m.State = model.StateProvisioned
		m.BootProfile = "img"
		m.RootDevice = &model.RootDeviceHints{MinSizeGiB: 10000}
	})
	e.start()

	m := e.awaitPhase("lab-1", model.PhaseProvisioned, 30*time.Second)
	assert.Equal(t, []string{"10.77.0.1"}, m.Status.Addresses)
	require.NotNil(t, m.Run.Deploy)
	assert.Equal(t, "sda", m.Run.Deploy.Disk)
	assert.EqualValues(t, len(image), m.Run.Deploy.BytesWritten)
	res, err := e.lab.System("lab-1").LastPXE()
	require.NoError(t, err)
	require.NotNil(t, res.Deploy)
	assert.Equal(t, good, res.Deploy.Checksum)
	assert.Contains(t, res.Deploy.ConfigDrive["user-data"], "hostname: lab-1")
	assert.Equal(t, "instance-id: lab-1-"+m.Run.ID+"\nlocal-hostname: lab-1\n", res.Deploy.ConfigDrive["meta-data"])
	assert.Contains(t, res.Cmdline, "baremetal.mode=deploy")
	// One power-on into the ramdisk, one power cycle into the image.
	assert.Equal(t, 2, e.lab.System("lab-1").PowerOnCount())
	// booting_os may be skipped in the trail: the simulated OS can call
	// back before the agent records the reboot.
	trail := strings.Join(e.awaitTrail("lab-1", "provisioned"), " ")
	assert.Regexp(t, `provisioning/installing provisioning/image_written (provisioning/booting_os )?provisioning/finishing provisioned$`, trail)
	var types []string
	for _, ev := range e.events("lab-1") {
		types = append(types, ev.Type)
	}
	assert.Subset(t, types, []string{string(model.SignalDeployDisks), string(model.SignalDeployProgress), model.EventImageWritten})
	var osUp []model.Event
	for _, ev := range e.events("lab-1") {
		if ev.Type == string(model.SignalCallbackReceived) {
			osUp = append(osUp, ev)
		}
	}
	require.Len(t, osUp, 1)
	assert.Equal(t, "deployed OS called back", osUp[0].Message)
	assert.Equal(t, model.StageOSUp, osUp[0].Data["stage"])

	m = e.awaitPhase("lab-2", model.PhaseFailed, 30*time.Second)
	assert.Contains(t, m.Status.LastError, "checksum mismatch: want "+bad+", got "+good)
	assert.Equal(t, 1, e.lab.System("lab-2").PowerOnCount(), "the machine whose image failed was booted again")

	m = e.awaitPhase("lab-3", model.PhaseFailed, 30*time.Second)
	assert.Contains(t, m.Status.LastError, "no disk matches root_device {min_size_gib=10000}; disks seen: sda 447.1 GiB Lab SSD 480")
	assert.Equal(t, 1, e.lab.System("lab-3").PowerOnCount())

	// A new image re-images in place.
	_, err = e.st.UpdateProfile(context.Background(), "img", func(p *model.BootProfile) error {
		p.Templates = map[string]string{"user-data": "#cloud-config\nhostname: {{ .Machine.Name }}\nrelease: 2\n"}
		return nil
	})
	require.NoError(t, err)
	e.await("lab-1 re-imaged", 30*time.Second, func() (bool, string) {
		res, _ := e.lab.System("lab-1").LastPXE()
		m := e.machine("lab-1")
		return m.Status.Phase == model.PhaseProvisioned && res != nil && res.Deploy != nil &&
			strings.Contains(res.Deploy.ConfigDrive["user-data"], "release: 2"), describe(m)
	})
}

// TestImageDeprovisionCleans: a machine deployed by image is released
// only through a clean run of the deploy ramdisk (baremetal.mode=clean),
// at its profile's wipe level, whether it is set available or deleted; a
// clean that fails leaves the machine failed with what to fix, not
// forgotten, and deleting it again retries the clean.
func TestImageDeprovisionCleans(t *testing.T) {
	e := newEnv(t, envOpts{machines: 3})
	image := []byte(strings.Repeat("a raw disk image\n", 4096))
	require.NoError(t, os.WriteFile(filepath.Join(e.assets, "image.raw"), image, 0o644))
	sum := sha256.Sum256(image)
	e.profile(&model.BootProfile{Name: "img", Cmdline: "console=ttyS0",
		Image: &model.Image{URL: "image.raw", Checksum: "sha256:" + hex.EncodeToString(sum[:]), Format: "raw", Wipe: model.WipeMetadata}})
	for _, n := range []string{"lab-1", "lab-2", "lab-3"} {
		e.update(n, func(m *model.Machine) { m.State = model.StateProvisioned; m.BootProfile = "img" })
	}
	e.start()
	for _, n := range []string{"lab-1", "lab-2", "lab-3"} {
		m := e.awaitPhase(n, model.PhaseProvisioned, 30*time.Second)
		assert.Equal(t, model.WipeMetadata, m.Status.CleanPending, n)
	}

	// Desired state available: clean, then power off.
	e.update("lab-1", func(m *model.Machine) { m.State = model.StateAvailable })
	m := e.awaitPhase("lab-1", model.PhaseAvailable, 30*time.Second)
	assert.Empty(t, m.Status.CleanPending)
	assert.Equal(t, model.WipeMetadata, m.Run.Clean)
	res, err := e.lab.System("lab-1").LastPXE()
	require.NoError(t, err)
	assert.Contains(t, res.Cmdline, "baremetal.mode=clean")
	require.NotNil(t, res.Deploy)
	assert.Equal(t, [2]string{"sda", model.WipeMetadata}, [2]string{res.Deploy.Disk, res.Deploy.Wipe})
	assert.Equal(t, 3, e.lab.System("lab-1").PowerOnCount(), "into the ramdisk, into the OS, into the ramdisk to clean")
	trail := strings.Join(e.awaitTrail("lab-1", "available"), " ")
	assert.Regexp(t, `provisioned deprovisioning/setting_boot deprovisioning/powering_on .*deprovisioning/powering_off available$`, trail)
	var msgs []string
	for _, ev := range e.events("lab-1") {
		msgs = append(msgs, ev.Message)
	}
	assert.Contains(t, msgs, "desired state available; the deploy ramdisk cleans the disk first (wipe metadata)")
	assert.Contains(t, msgs, "deploy ramdisk cleaned sda (wipe metadata): config drive removed")

	// Deletion: clean, power off, forgotten.
	e.update("lab-2", func(m *model.Machine) { m.DeletionRequested = time.Now() })
	e.await("lab-2 forgotten", 30*time.Second, func() (bool, string) {
		m, err := e.st.GetMachine(context.Background(), "lab-2")
		if err != nil {
			return true, ""
		}
		return false, describe(m)
	})
	res, err = e.lab.System("lab-2").LastPXE()
	require.NoError(t, err)
	assert.Contains(t, res.Cmdline, "baremetal.mode=clean")

	// A clean that cannot find its disk fails the deletion, which waits.
	e.update("lab-3", func(m *model.Machine) {
		m.RootDevice = &model.RootDeviceHints{Serial: "NO-SUCH-DISK"}
		m.DeletionRequested = time.Now()
	})
	m = e.awaitPhase("lab-3", model.PhaseFailed, 30*time.Second)
	assert.Contains(t, m.Status.LastError, "no disk matches root_device {serial=NO-SUCH-DISK}")
	assert.Equal(t, model.WipeMetadata, m.Status.CleanPending)
	assert.Equal(t, model.WipeMetadata, m.Run.Clean)
	before := e.lab.System("lab-3").PowerOnCount()
	// The operator fixes the hints and deletes again (e.update fails if
	// the machine was forgotten meanwhile).
	e.update("lab-3", func(m *model.Machine) {
		m.RootDevice = nil
		m.DeletionRequested = time.Now()
	})
	e.await("lab-3 forgotten", 30*time.Second, func() (bool, string) {
		m, err := e.st.GetMachine(context.Background(), "lab-3")
		if err != nil {
			return true, ""
		}
		return false, describe(m)
	})
	assert.Greater(t, e.lab.System("lab-3").PowerOnCount(), before, "the clean was not retried")
}
