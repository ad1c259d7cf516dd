package provision_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	. "github.com/openbaremetal/terraform-provider-baremetal/internal/provision"
)

// TestStalledKernel: a kernel that never starts its installer (here a
// profile script that boots it without the baremetal.* arguments, as an
// EFI-stub kernel handed no initrd would panic) is fetched with its initrd
// and then nothing comes. The real reconciler and boot edge say so in
// last_error while the run waits, record one boot_stalled event, and the
// run fails at the install timeout with the same description.
func TestStalledKernel(t *testing.T) {
	e := newEnv(t, envOpts{machines: 1, cfg: func(c *Config) {
		c.BootStallWarning = 200 * time.Millisecond
		c.Timeouts.Install = 3 * time.Second
	}})
	e.profile(&model.BootProfile{Name: "panics", Kernel: "vmlinuz", Initrds: []string{"initrd.img"},
		IPXEScript: "#!ipxe\nkernel {{ .Kernel }} console=ttyS0\n{{ range .Initrds }}initrd {{ . }}\n{{ end }}boot\n",
		Templates:  map[string]string{"user-data": "#cloud-config\n"}})
	n := e.lab.Names()[0]
	e.update(n, func(m *model.Machine) { m.State, m.BootProfile = model.StateProvisioned, "panics" })
	e.start()

	const where = "kernel and initrd served "
	const why = " ago, no template fetched since: the kernel may not have started; check the console"
	e.await("the stall in last_error", 10*time.Second, func() (bool, string) {
		m := e.machine(n)
		return m.Status.Step == model.StepInstalling && strings.Contains(m.Status.LastError, where), describe(m)
	})
	assert.Contains(t, e.machine(n).Status.LastError, why)

	m := e.awaitPhase(n, model.PhaseFailed, 20*time.Second)
	assert.Contains(t, m.Status.LastError, "did not call back within 3s; "+where)
	assert.Contains(t, m.Status.LastError, why)
	var got []model.BootStep
	for _, s := range m.Run.Steps {
		got = append(got, model.BootStep{Signal: s.Signal, Name: s.Name})
	}
	assert.Equal(t, []model.BootStep{{Signal: model.SignalPXERequested}, {Signal: model.SignalScriptServed},
		{Signal: model.SignalKernelFetched, Name: "vmlinuz"}, {Signal: model.SignalInitrdFetched, Name: "initrd.img"}}, got)

	var stalls []model.Event
	for _, ev := range e.events(n) {
		if ev.Type == model.EventBootStalled {
			stalls = append(stalls, ev)
		}
	}
	// Three seconds of stall at a 200ms warning: the age in last_error was
	// refreshed many times, the event recorded once.
	require.Len(t, stalls, 1)
	assert.Contains(t, stalls[0].Message, where)
	assert.Equal(t, string(model.SignalInitrdFetched), stalls[0].Data["last_step"])
	assert.Equal(t, m.Run.ID, stalls[0].Data["run"])
}

// TestStallBeforePXE: a machine that never asks for its boot script says
// so from the power-on on, and a power cycle starts the count again.
func TestStallBeforePXE(t *testing.T) {
	e := newEnv(t, envOpts{machines: 1, noBoot: true, cfg: func(c *Config) {
		c.BootStallWarning = 100 * time.Millisecond
		c.Timeouts.WaitPXE = 1500 * time.Millisecond
		c.Timeouts.Retries = 1
	}})
	n := e.lab.Names()[0]
	e.update(n, func(m *model.Machine) { m.State = model.StateProvisioned })
	e.start()
	m := e.awaitPhase(n, model.PhaseFailed, 20*time.Second)
	assert.Contains(t, m.Status.LastError, "no PXE request from the machine within 1.5s after each of 2 power-ons")
	var msgs []string
	for _, ev := range e.events(n) {
		if ev.Type == model.EventBootStalled {
			msgs = append(msgs, ev.Message)
		}
	}
	require.Len(t, msgs, 2, "one stall per power-on")
	for _, msg := range msgs {
		assert.Regexp(t, `^no boot script requested since power-on \d+m?s ago: check the PXE/DHCP setup and the boot order$`, msg)
	}
}
