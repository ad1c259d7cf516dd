package lab

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// defaultDiskMiB is the size of each VM's sparse raw disk unless the lab
// is told otherwise: room for the lab installer's marker and template.
// An image deploy needs room for the image and its config drive.
const defaultDiskMiB = 64

const (
	// qemuStopGrace is how long a VM gets to exit on SIGTERM before SIGKILL.
	qemuStopGrace = 5 * time.Second
	// qemuStartCheck is how long start waits to catch a VM that fails at
	// once (bad arguments, missing ROM) and report why. 300 ms was too
	// short on two loaded cores: QEMU had not yet got to refusing a bad
	// option, so the failure went unreported. The wait only delays the
	// Reset's answer, never the guest.
	qemuStartCheck = 2 * time.Second
)

type qemuVM struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been reaped
	err  error         // Wait's result, valid after done
}

// qemuBackend runs one qemu-system-x86_64 per powered-on system.
type qemuBackend struct {
	lab *Lab

	mu     sync.Mutex
	vms    map[*qemuVM]struct{} // every VM not yet reaped, for close
	closed bool

	serconOnce sync.Once
	serconErr  error
}

func (b *qemuBackend) paths(s *System) (disk, serial, qlog string) {
	dir := b.lab.cfg.StateDir
	return filepath.Join(dir, s.name+".disk"), filepath.Join(dir, s.name+".serial.log"), filepath.Join(dir, s.name+".qemu.log")
}

// varsPath is a UEFI VM's own variable store (its NVRAM).
func (b *qemuBackend) varsPath(s *System) string {
	return filepath.Join(b.lab.cfg.StateDir, s.name+".OVMF_VARS.fd")
}

// bootArgs maps the override to QEMU's boot order: once=n boots the
// network first and then, on every later (guest) reboot, the disk.
func bootArgs(boot BootOverride) string {
	switch {
	case boot.Target == "Pxe" && boot.Enabled == "Once":
		return "once=n,order=c"
	case boot.Target == "Pxe" && boot.Enabled == "Continuous":
		return "order=n"
	default:
		return "order=c"
	}
}

// userNetdev is the VM's user-mode network. Every VM has one of its own,
// all alike (10.0.2.0/24, the host as 10.0.2.2). Starting each one's DHCP
// pool at its own address gives the machines distinct reported addresses,
// as a real rack would, so a cluster's templates can tell its members
// apart. restrict=on isolates the VM: a real OS in it must not reach the
// outside world or the host, so its only ways out are the guest forward to
// the agent's boot endpoints and the published host forwards.
func (b *qemuBackend) userNetdev(s *System) string {
	cfg := b.lab.cfg
	esc := func(v string) string { return strings.ReplaceAll(v, ",", ",,") }
	netdev := fmt.Sprintf("user,id=n0,restrict=on,dhcpstart=%s", qemuGuestAddress(s.index))
	if cfg.BootURL != "" {
		u, _ := url.Parse(cfg.BootURL) // checked by qemuNetworkDefaults
		// iPXE fetches its first script over HTTP: the guest forward
		// carries TCP only, so TFTP to the host cannot pass.
		netdev += ",bootfile=" + esc(cfg.BootURL+"/boot.ipxe")
		netdev += ",guestfwd=tcp:" + u.Host + "-cmd:" + esc(strings.Join(append(slices.Clone(cfg.ForwardCommand), cfg.BootForward), " "))
	}
	for _, f := range cfg.HostForwards {
		switch {
		case f.Machine == s.name:
			netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", f.HostPort, f.GuestPort)
		case cfg.PeerForwards:
			// Each VM has a network of its own, so the peer's address is
			// free on this one (its DHCP pool starts past it or hands
			// this VM's one MAC a single lease): a guest forward there
			// reaches the peer's port through its host forward, and only
			// that port.
			peer := b.lab.systems[f.Machine] // checked by New
			hostEnd := net.JoinHostPort("127.0.0.1", fmt.Sprint(f.HostPort))
			netdev += fmt.Sprintf(",guestfwd=tcp:%s:%d-cmd:", qemuGuestAddress(peer.index), f.GuestPort) +
				esc(strings.Join(append(slices.Clone(cfg.ForwardCommand), hostEnd), " "))
		}
	}
	return netdev
}

func (c *Config) diskBytes() int64 { return int64(c.DiskMiB) << 20 }

// QEMUAgentAddress is the agent's address on every lab VM's network: a
// guest forward carries connections to it to the agent on the host.
const QEMUAgentAddress = "10.0.2.4"

// QEMUBootURL is the boot URL to advertise to the lab's VMs for an agent
// whose boot endpoints listen on the host's loopback at port.
func QEMUBootURL(port string) string { return "http://" + QEMUAgentAddress + ":" + port }

// qemuNetworkDefaults checks the boot URL a VM can be handed and fills in
// where its guest forward connects.
func qemuNetworkDefaults(cfg *Config) error {
	if cfg.BootURL == "" {
		if cfg.PeerForwards && len(cfg.HostForwards) > 0 {
			return forwardCommandDefault(cfg)
		}
		return nil
	}
	u, err := url.Parse(cfg.BootURL)
	if err != nil || u.Scheme != "http" || u.Port() == "" {
		return fmt.Errorf("lab: qemu backend: boot URL %q must be http://<address on 10.0.2.0/24>:<port> (the VMs reach it through a guest forward)", cfg.BootURL)
	}
	// The forward needs an address of the VMs' network that is neither
	// slirp's own (.2 the host, .3 DNS) nor one its DHCP hands a VM (.15
	// up, see qemuGuestAddress).
	ip := net.ParseIP(u.Hostname()).To4()
	if ip == nil || !(&net.IPNet{IP: net.IPv4(10, 0, 2, 0), Mask: net.CIDRMask(24, 32)}).Contains(ip) || ip[3] < 4 || ip[3] >= 15 {
		return fmt.Errorf("lab: qemu backend: boot URL %q must use an address from 10.0.2.4 to 10.0.2.14 (the VMs' network, where slirp and the VMs' DHCP leave room for the agent's forward), e.g. %s", cfg.BootURL, QEMUBootURL(u.Port()))
	}
	if cfg.BootForward == "" {
		cfg.BootForward = net.JoinHostPort("127.0.0.1", u.Port())
	}
	return forwardCommandDefault(cfg)
}

// forwardCommandDefault makes this executable's lab-forward the guest
// forwards' relay unless the caller named one.
func forwardCommandDefault(cfg *Config) error {
	if len(cfg.ForwardCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("lab: qemu backend: locating this program for the guest forward: %w", err)
		}
		cfg.ForwardCommand = []string{exe, "lab-forward"}
	}
	return nil
}

// uefiBootIndexes maps the override to the UEFI VM's boot order, given as
// bootindex properties (OVMF follows those, not -boot): the NIC first for a
// PXE override, the disk first otherwise. The order stays for the VM's
// life, so a guest reboot after an install PXE boots again and is told to
// boot the disk by its script.
func uefiBootIndexes(boot BootOverride) (nic, disk int) {
	if boot.Target == "Pxe" {
		return 1, 2
	}
	return 2, 1
}

func (b *qemuBackend) args(s *System, boot BootOverride) []string {
	disk, serial, _ := b.paths(s)
	cfg := b.lab.cfg
	netdev := b.userNetdev(s)
	// QEMU's e1000 ROM is iPXE (BIOS and EFI), which does the network boot
	// under either firmware.
	nic := "e1000,netdev=n0,mac=" + s.mac
	if len(cfg.Taps) > 0 {
		netdev = "tap,id=n0,ifname=" + strings.ReplaceAll(cfg.Taps[s.index-1], ",", ",,") + ",script=no,downscript=no"
		// No option ROM: EDK2's own virtio-net driver and PXE client.
		nic = "virtio-net-pci,netdev=n0,mac=" + s.mac + ",romfile="
	}
	diskFile := "file=" + strings.ReplaceAll(disk, ",", ",,") + ",format=raw"
	var firmware, devices []string
	if s.firmware == FirmwareUEFI {
		nicIdx, diskIdx := uefiBootIndexes(boot)
		firmware = []string{
			"-drive", "if=pflash,format=raw,readonly=on,file=" + strings.ReplaceAll(cfg.OVMFCode, ",", ",,"),
			"-drive", "if=pflash,format=raw,file=" + strings.ReplaceAll(b.varsPath(s), ",", ",,"),
		}
		devices = []string{
			"-netdev", netdev,
			"-device", fmt.Sprintf("%s,bootindex=%d", nic, nicIdx),
			"-drive", diskFile + ",if=none,id=disk0",
			"-device", fmt.Sprintf("virtio-blk-pci,drive=disk0,bootindex=%d", diskIdx),
		}
	} else {
		// SeaBIOS's serial console: the firmware's and iPXE's screen
		// output (DHCP, the boot file, the script's commands) lands in the
		// serial log, which is the only way to watch a headless VM boot.
		// OVMF writes to the serial port by itself.
		firmware = []string{"-fw_cfg", "name=etc/sercon-port,file=" + strings.ReplaceAll(b.serconPath(), ",", ",,")}
		devices = []string{
			"-netdev", netdev,
			"-device", nic,
			"-drive", diskFile + ",if=virtio",
			"-boot", bootArgs(boot),
		}
	}
	args := []string{
		"-name", s.name,
		"-accel", "tcg",
		"-m", strconv.Itoa(cfg.MemoryMiB),
		"-display", "none",
		"-vga", "none",
		"-monitor", "none",
		// Append, so the log keeps every boot of the machine.
		"-chardev", "file,id=serial0,path=" + strings.ReplaceAll(serial, ",", ",,") + ",append=on",
		"-serial", "chardev:serial0",
		"-smbios", "type=1,manufacturer=OpenBareMetal Lab,serial=" + s.serial + ",uuid=" + s.uuid,
	}
	args = append(args, firmware...)
	args = append(args, devices...)
	return append(args, cfg.ExtraQEMUArgs...)
}

func (b *qemuBackend) serconPath() string {
	return filepath.Join(b.lab.cfg.StateDir, "sercon-port.bin")
}

// ensureSercon writes, once per lab (a VM starting must never read a
// half-written file), the fw_cfg file that points SeaBIOS's console at
// COM1 (0x3f8, little-endian).
func (b *qemuBackend) ensureSercon() error {
	b.serconOnce.Do(func() {
		b.serconErr = os.WriteFile(b.serconPath(), []byte{0xf8, 0x03}, 0o644)
	})
	return b.serconErr
}

// ensureDisk creates the VM's sparse disk of size bytes once; later boots
// keep what the installer wrote.
func ensureDisk(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// ensureCopy copies src to path once: later boots keep what the firmware
// wrote (boot entries, settings). The copy is written under a temporary
// name and renamed, so a VM never starts on half a file.
func ensureCopy(path, src string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (b *qemuBackend) start(s *System, boot BootOverride) error {
	if err := os.MkdirAll(b.lab.cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("qemu: state directory: %w", err)
	}
	if err := b.ensureSercon(); err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	disk, _, qlog := b.paths(s)
	if err := ensureDisk(disk, b.lab.cfg.diskBytes()); err != nil {
		return fmt.Errorf("qemu: disk %s: %w", disk, err)
	}
	if s.firmware == FirmwareUEFI {
		if err := ensureCopy(b.varsPath(s), b.lab.cfg.OVMFVars); err != nil {
			return fmt.Errorf("qemu: UEFI variable store: %w", err)
		}
	}
	logf, err := os.OpenFile(qlog, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("qemu: log %s: %w", qlog, err)
	}
	defer logf.Close() // the child has its own descriptor

	cmd := exec.Command(b.lab.cfg.QEMUBinary, b.args(s, boot)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = qemuSysProcAttr()
	// Starting under b.mu means close either sees this VM or stops the
	// start: no VM outlives the lab.
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errors.New("qemu: the lab is shutting down")
	}
	if err := cmd.Start(); err != nil {
		b.mu.Unlock()
		return fmt.Errorf("qemu: starting %s: %w", b.lab.cfg.QEMUBinary, err)
	}
	vm := &qemuVM{cmd: cmd, done: make(chan struct{})}
	if b.vms == nil {
		b.vms = map[*qemuVM]struct{}{}
	}
	b.vms[vm] = struct{}{}
	b.mu.Unlock()

	s.mu.Lock()
	s.vm = vm
	s.setPower("On")
	s.mu.Unlock()
	b.lab.log.Info("lab: VM started", "system", s.name, "pid", cmd.Process.Pid, "boot", bootArgs(boot))

	go b.watch(s, vm)

	select {
	case <-vm.done:
		out, _ := os.ReadFile(qlog)
		return fmt.Errorf("qemu exited at start (%v): %s", vm.err, strings.TrimSpace(string(lastBytes(out, 600))))
	case <-time.After(qemuStartCheck):
		return nil
	}
}

// watch reaps the VM; a VM that exits by itself (guest poweroff, crash)
// powers its system off.
func (b *qemuBackend) watch(s *System, vm *qemuVM) {
	vm.err = vm.cmd.Wait()
	b.mu.Lock()
	delete(b.vms, vm)
	b.mu.Unlock()
	s.mu.Lock()
	if s.vm == vm {
		s.vm = nil
		s.setPower("Off")
	}
	s.mu.Unlock()
	close(vm.done)
	b.lab.log.Info("lab: VM exited", "system", s.name, "pid", vm.cmd.Process.Pid, "status", fmt.Sprint(vm.err))
}

func (b *qemuBackend) stop(s *System) error {
	s.mu.Lock()
	vm := s.vm
	s.mu.Unlock()
	if vm == nil {
		return nil
	}
	return stopVM(vm)
}

// stopVM sends SIGTERM, then SIGKILL after the grace period, and waits
// until the process is reaped.
func stopVM(vm *qemuVM) error {
	_ = vm.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-vm.done:
		return nil
	case <-time.After(qemuStopGrace):
	}
	if err := vm.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("qemu: killing pid %d: %w", vm.cmd.Process.Pid, err)
	}
	<-vm.done
	return nil
}

func (b *qemuBackend) close() error {
	b.mu.Lock()
	b.closed = true
	vms := make([]*qemuVM, 0, len(b.vms))
	for vm := range b.vms {
		vms = append(vms, vm)
	}
	b.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(vms))
	for i, vm := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = stopVM(vm)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// vmPID is the running VM's process id, 0 when off.
func (s *System) vmPID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vm == nil {
		return 0
	}
	return s.vm.cmd.Process.Pid
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return bytes.ToValidUTF8(b, nil)
}

// qemuGuestAddress is the address QEMU's user-mode DHCP hands the VM of
// index i (from 1): 10.0.2.15 (slirp's usual first address) onwards,
// staying below the broadcast address for up to 240 machines and wrapping
// after that.
func qemuGuestAddress(i int) string {
	return fmt.Sprintf("10.0.2.%d", 15+(i-1)%240)
}
