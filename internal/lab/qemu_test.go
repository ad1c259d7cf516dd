package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func requireQEMU(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
}

// alive reports whether pid is a live (not reaped) process.
func alive(pid int) bool {
	return pid > 0 && !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func qemuCmdline(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatalf("reading the VM's command line: %v", err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

func argAfter(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

func TestQEMUBackendPowersRealVMs(t *testing.T) {
	requireQEMU(t)
	dir := t.TempDir()
	l, srv := newTestLab(t, Config{Machines: 2, Backend: BackendQEMU, StateDir: dir, MemoryMiB: 64,
		BootURL: "http://10.0.2.4:6969", ForwardCommand: []string{"/usr/bin/fwd", "--x"}})
	c := credsOf(l, "lab-1")
	s := l.System("lab-1")

	mustStatus(t, call(t, srv, c, "PATCH", "/redfish/v1/Systems/lab-1", map[string]any{"Boot": map[string]string{
		"BootSourceOverrideTarget": "Hdd", "BootSourceOverrideEnabled": "Once"}}), 200)
	mustStatus(t, reset(t, srv, c, "lab-1", "On"), 204)
	pid := s.vmPID()
	if !alive(pid) || s.PowerState() != "On" {
		t.Fatalf("after On: pid %d alive=%v, power %s", pid, alive(pid), s.PowerState())
	}
	args := qemuCmdline(t, pid)
	if got := argAfter(args, "-boot"); got != "order=c" {
		t.Errorf("-boot %q, want order=c for a disk boot", got)
	}
	if got := argAfter(args, "-accel"); got != "tcg" {
		t.Errorf("-accel %q", got)
	}
	if got := argAfter(args, "-device"); got != "e1000,netdev=n0,mac="+s.MAC() {
		t.Errorf("-device %q", got)
	}
	if got := argAfter(args, "-netdev"); got != "user,id=n0,restrict=on,dhcpstart=10.0.2.15,bootfile=http://10.0.2.4:6969/boot.ipxe,guestfwd=tcp:10.0.2.4:6969-cmd:/usr/bin/fwd --x 127.0.0.1:6969" {
		t.Errorf("-netdev %q", got)
	}
	disk, err := os.Stat(filepath.Join(dir, "lab-1.disk"))
	if err != nil || disk.Size() != defaultDiskMiB<<20 {
		t.Fatalf("disk: %v, %v", disk, err)
	}
	if got := call(t, srv, c, "GET", "/redfish/v1/Systems/lab-1", nil).doc["PowerState"]; got != "On" {
		t.Fatalf("Redfish PowerState %v", got)
	}

	mustStatus(t, reset(t, srv, c, "lab-1", "ForceOff"), 204)
	if alive(pid) || s.PowerState() != "Off" || s.vmPID() != 0 {
		t.Fatalf("after ForceOff: pid %d alive=%v, power %s", pid, alive(pid), s.PowerState())
	}

	// A PXE Once boot goes to the network first, then to disk on reboot.
	mustStatus(t, call(t, srv, c, "PATCH", "/redfish/v1/Systems/lab-1", map[string]any{"Boot": map[string]string{
		"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}), 200)
	mustStatus(t, reset(t, srv, c, "lab-1", "ForceRestart"), 204)
	pid = s.vmPID()
	if got := argAfter(qemuCmdline(t, pid), "-boot"); got != "once=n,order=c" {
		t.Errorf("-boot %q, want once=n,order=c", got)
	}
	if got := s.BootOverride(); got.Target != "None" {
		t.Errorf("Once override not consumed: %+v", got)
	}

	// A VM that dies on its own powers its system off.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the dead VM's system to be Off", func() bool { return s.PowerState() == "Off" })

	// Close stops whatever is running and leaves no process behind.
	mustStatus(t, reset(t, srv, c, "lab-1", "On"), 204)
	mustStatus(t, reset(t, srv, credsOf(l, "lab-2"), "lab-2", "On"), 204)
	pids := []int{s.vmPID(), l.System("lab-2").vmPID()}
	for _, p := range pids {
		if !alive(p) {
			t.Fatalf("VM %d not running before Close", p)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range pids {
		if alive(p) {
			t.Errorf("VM %d still running after Close", p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "lab-1.serial.log")); err != nil {
		t.Errorf("serial log: %v", err)
	}
}

func TestQEMUStartFailureIsReported(t *testing.T) {
	requireQEMU(t)
	l, srv := newTestLab(t, Config{Machines: 1, Backend: BackendQEMU, StateDir: t.TempDir(), MemoryMiB: 64,
		ExtraQEMUArgs: []string{"-no-such-option"}})
	r := reset(t, srv, credsOf(l, "lab-1"), "lab-1", "On")
	mustStatus(t, r, 500)
	if msg := as[string](t, get(r.doc, "error", "message")); !strings.Contains(msg, "no-such-option") {
		t.Fatalf("error %q does not say what QEMU complained about", msg)
	}
	if l.System("lab-1").PowerState() != "Off" {
		t.Fatal("a VM that failed to start left its system On")
	}
}

// A UEFI VM runs OVMF from pflash with a variable store of its own, copied
// once and kept, and boots in the order the override gives through
// bootindex properties.
func TestQEMUBackendUEFI(t *testing.T) {
	requireQEMU(t)
	for _, f := range []string{DefaultOVMFCode, DefaultOVMFVars} {
		if _, err := os.Stat(f); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%v: install Debian's ovmf package", err)
			}
			t.Skipf("%v: install Debian's ovmf package", err)
		}
	}
	dir := t.TempDir()
	l, srv := newTestLab(t, Config{Machines: 2, Backend: BackendQEMU, StateDir: dir, MemoryMiB: 64, DiskMiB: 96, Firmware: FirmwareMixed})
	c := credsOf(l, "lab-2")
	s := l.System("lab-2")
	mustStatus(t, call(t, srv, c, "PATCH", "/redfish/v1/Systems/lab-2", map[string]any{"Boot": map[string]string{
		"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once", "BootSourceOverrideMode": "UEFI"}}), 200)
	mustStatus(t, reset(t, srv, c, "lab-2", "On"), 204)
	args := qemuCmdline(t, s.vmPID())
	vars := filepath.Join(dir, "lab-2.OVMF_VARS.fd")
	for _, want := range []string{
		"if=pflash,format=raw,readonly=on,file=" + DefaultOVMFCode,
		"if=pflash,format=raw,file=" + vars,
		"e1000,netdev=n0,mac=" + s.MAC() + ",bootindex=1",
		"virtio-blk-pci,drive=disk0,bootindex=2",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("QEMU arguments lack %q: %q", want, args)
		}
	}
	if slices.Contains(args, "-boot") || slices.Contains(args, "-fw_cfg") {
		t.Errorf("a UEFI VM got SeaBIOS's -boot or -fw_cfg: %q", args)
	}
	// An image deploy needs a disk of the size the lab was given.
	if disk, err := os.Stat(filepath.Join(dir, "lab-2.disk")); err != nil || disk.Size() != 96<<20 {
		t.Errorf("disk: %v, %v; want 96 MiB", disk, err)
	}
	st, err := os.Stat(vars)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.Stat(DefaultOVMFVars)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != tmpl.Size() {
		t.Errorf("variable store %d bytes, template %d", st.Size(), tmpl.Size())
	}
	// The firmware's writes survive a power cycle: the copy is made once.
	if err := os.WriteFile(vars, []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustStatus(t, reset(t, srv, c, "lab-2", "ForceOff"), 204)
	if err := ensureCopy(vars, DefaultOVMFVars); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(vars); string(b) != "kept" {
		t.Errorf("the variable store was replaced on the next boot")
	}
	// The BIOS machine of the mixed lab stays SeaBIOS.
	mustStatus(t, reset(t, srv, credsOf(l, "lab-1"), "lab-1", "On"), 204)
	if got := argAfter(qemuCmdline(t, l.System("lab-1").vmPID()), "-boot"); got != "order=c" {
		t.Errorf("BIOS machine -boot %q, want order=c", got)
	}
}

// With PeerForwards, the other VMs reach a published port at the
// publishing machine's own address, relayed to its host forward, and the
// publisher gets no forward to itself; without it they reach nothing of it.
func TestQEMUPeerForwards(t *testing.T) {
	for _, peers := range []bool{true, false} {
		l, _ := newTestLab(t, Config{Machines: 3, Backend: BackendQEMU, StateDir: t.TempDir(),
			BootURL: "http://10.0.2.4:6969", ForwardCommand: []string{"/usr/bin/fwd"},
			HostForwards: []HostForward{{Machine: "lab-1", HostPort: 23790, GuestPort: 2379}}, PeerForwards: peers})
		b, ok := l.backend.(*qemuBackend)
		require.True(t, ok)
		boot := "user,id=n0,restrict=on,dhcpstart=%s,bootfile=http://10.0.2.4:6969/boot.ipxe,guestfwd=tcp:10.0.2.4:6969-cmd:/usr/bin/fwd 127.0.0.1:6969"
		assert.Equal(t, fmt.Sprintf(boot, "10.0.2.15")+",hostfwd=tcp:127.0.0.1:23790-:2379", b.userNetdev(l.System("lab-1")))
		for name, addr := range map[string]string{"lab-2": "10.0.2.16", "lab-3": "10.0.2.17"} {
			want := fmt.Sprintf(boot, addr)
			if peers {
				want += ",guestfwd=tcp:10.0.2.15:2379-cmd:/usr/bin/fwd 127.0.0.1:23790"
			}
			assert.Equal(t, want, b.userNetdev(l.System(name)), "%s, peer forwards %v", name, peers)
		}
	}
}
