// Package lab is a virtual server lab: one Redfish service that emulates the
// BMCs of N machines, so the agent's Redfish client, reconciler and the demo
// can run without hardware.
//
// Two backends power the machines. "memory" keeps the power state in memory
// and, when a machine powers on with a PXE boot override, runs a simulated PXE
// client against the agent's boot URL (SimulatePXEBoot), so the whole
// provisioning lifecycle runs in-process and scales to thousands of machines.
// "qemu" runs a real qemu-system-x86_64 VM per powered-on machine whose boot
// order follows the override.
//
// Each machine has its own username and password that authorise only its own
// system, as separate BMCs would; faults (latency, 503s, refused logins,
// ignored power actions, reverting boot overrides, stale power state) can be
// injected per machine, and every request is logged with its start and end
// so tests can assert how a client behaved.
package lab

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Backends a Config may name.
const (
	BackendMemory = "memory"
	BackendQEMU   = "qemu"
)

// Firmwares a Config may name.
const (
	// FirmwareBIOS: legacy BIOS (SeaBIOS under the qemu backend); the
	// BMC allows only the Legacy boot mode.
	FirmwareBIOS = "bios"
	// FirmwareUEFI: UEFI only (OVMF under the qemu backend), as most
	// servers sold today; the BMC allows only the UEFI boot mode.
	FirmwareUEFI = "uefi"
	// FirmwareMixed alternates: odd-numbered machines BIOS, even UEFI.
	FirmwareMixed = "mixed"
)

// Debian's OVMF (package ovmf), the UEFI firmware of the qemu backend.
const (
	DefaultOVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	DefaultOVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Config describes a lab.
type Config struct {
	// Machines is how many machines (BMCs) the lab emulates.
	Machines int
	// Backend is BackendMemory (default) or BackendQEMU.
	Backend string
	// NamePrefix names the machines: "lab-" (default) gives lab-1, lab-2, ...
	NamePrefix string

	// BootURL is the agent's advertised boot base URL: the memory
	// backend's simulated machines fetch from it when they PXE boot, and
	// the qemu backend's VMs are handed <BootURL>/boot.ipxe as their DHCP
	// boot file. Empty: machines power on but never boot from the agent.
	//
	// A VM's network is QEMU's user-mode network with restrict=on: the VM
	// reaches nothing at all, except the boot URL's address and port, which
	// a guest forward connects to BootForward on the host, and the ports
	// HostForwards publish. So under the qemu backend the boot URL must be
	// an http:// URL on the user network at an address the VMs do not use
	// themselves (QEMUBootURL).
	BootURL string
	// BootForward is the host address the guest forward of the boot URL
	// connects to (default 127.0.0.1 and the boot URL's port): the agent's
	// --boot-addr.
	BootForward string
	// ForwardCommand is the program QEMU runs for every guest connection to
	// the boot URL, with BootForward appended as its last argument; it
	// relays the connection's bytes between its stdin/stdout and that
	// address (default: this executable's "lab-forward" command).
	ForwardCommand []string
	// HostForwards publish guest TCP ports on the host's loopback, e.g. a
	// control plane's etcd for the demo to read (qemu backend).
	HostForwards []HostForward
	// PeerForwards lets every other VM reach each port HostForwards
	// publish at the publishing machine's own address (its DHCP address,
	// qemuGuestAddress), as on a rack's shared network: a guest forward on
	// the other VMs' networks relays to the host forward. The VMs reach
	// those ports of each other and nothing more (qemu backend).
	PeerForwards bool
	// HTTPClient is what simulated machines use to reach BootURL
	// (default: a client with a 30s timeout).
	HTTPClient *http.Client

	// StateDir holds the VMs' disks, serial logs and QEMU logs (qemu backend).
	StateDir string
	// QEMUBinary defaults to qemu-system-x86_64 on $PATH.
	QEMUBinary string
	// MemoryMiB is each VM's memory (default 256).
	MemoryMiB int
	// DiskMiB is the size of each VM's sparse disk (default 64), set when
	// the VM is first started; a disk already in StateDir keeps its size.
	DiskMiB int
	// ExtraQEMUArgs are appended to every VM's command line.
	ExtraQEMUArgs []string

	// Firmware is FirmwareBIOS, FirmwareUEFI or FirmwareMixed. Empty: BIOS
	// for the qemu backend, UEFI for the memory backend.
	Firmware string
	// OVMFCode and OVMFVars are the qemu backend's UEFI firmware and the
	// template of its variable store (default Debian's OVMF). Each UEFI VM
	// gets its own copy of the variables in StateDir, kept across boots as
	// a server keeps its NVRAM.
	OVMFCode, OVMFVars string
	// Taps, when set, puts machine i on the host's tap interface
	// Taps[i-1] instead of a user-mode network, with a virtio NIC that has
	// no option ROM: the UEFI firmware's own PXE client (EDK2's) then does
	// the network boot, fetching an iPXE binary over TFTP, as on a server
	// whose NIC has no iPXE. The tap's DHCP service is the caller's. Only
	// UEFI machines can boot this way (SeaBIOS has no PXE client of its
	// own); qemu backend.
	Taps []string

	Logger *slog.Logger
	// PasswordSeed makes the machines' passwords deterministic (tests);
	// empty means random passwords.
	PasswordSeed string
}

// HostForward publishes one machine's guest TCP port on 127.0.0.1.
type HostForward struct {
	Machine   string // machine name, e.g. lab-1
	HostPort  int
	GuestPort int
}

// Fault is what a machine's BMC does wrong. The zero Fault is a healthy BMC.
type Fault struct {
	// Latency is added before every response about this machine.
	Latency time.Duration
	// Fail503Next answers the next N requests with 503 and Retry-After: 1.
	Fail503Next int
	// RefuseLogin answers 401 even to valid credentials.
	RefuseLogin bool
	// IgnorePower accepts Reset actions (204) but changes nothing.
	IgnorePower bool
	// RevertBootOverride accepts a boot override PATCH (200) but keeps the
	// old value, as some Supermicro BMCs do.
	RevertBootOverride bool
	// LiePowerStateFor keeps reporting the previous PowerState for this long
	// after a change, like BMCs whose power sensor polls lazily.
	LiePowerStateFor time.Duration
	// SlowReset carries out a Reset action at once but answers only after
	// this long, as iDRACs under load do.
	SlowReset time.Duration
	// RevertModeToLegacy takes a Boot PATCH but then reports
	// BootSourceOverrideMode Legacy (and boots that way), as some
	// Supermicro and AMI BMCs do.
	RevertModeToLegacy bool
	// SessionLimit, when above 0, is how many sessions the BMC holds; a
	// login beyond it is refused with iDRAC's RAC0218 "maximum number of
	// user sessions" (400). Basic auth still works.
	SessionLimit int
	// Hang accepts connections and requests and never answers.
	Hang bool
	// BadJSON answers GETs under the system with a body that is not JSON.
	BadJSON bool
	// LockoutAfter, when above 0, locks the account after that many failed
	// logins (session or basic auth): every login is refused from then on,
	// the right password included, until the fault is replaced.
	LockoutAfter int
	// DuplicateDriveLinks, when above 1, links the system's one drive that
	// many times from its Storage.
	DuplicateDriveLinks int
}

// Counts is what a system's BMC was asked, counted at the BMC.
type Counts struct {
	Resets       int // POSTs of ComputerSystem.Reset, whatever their answer
	Patches      int // PATCHes of the ComputerSystem
	Logins       int // session creations tried (POST to Sessions)
	FailedLogins int // logins refused for bad credentials, session or basic auth
	// PatchedModes lists the BootSourceOverrideMode of every PATCH that
	// carried one, in order.
	PatchedModes []string
}

// BootOverride is a system's Redfish Boot source override.
type BootOverride struct {
	Target  string // BootSourceOverrideTarget: None, Pxe, Hdd, ...
	Enabled string // BootSourceOverrideEnabled: Disabled, Once, Continuous
	Mode    string // BootSourceOverrideMode: UEFI or Legacy
}

// InventoryEntry is how to reach one machine's BMC, as `lab` writes it.
type InventoryEntry struct {
	Name string `json:"name"`
	// Endpoint is the full system URL, <baseURL>/redfish/v1/Systems/<name>.
	Endpoint string `json:"endpoint"`
	Username string `json:"username"`
	Password string `json:"password"`
	MAC      string `json:"mac"`
	// Firmware is what the machine boots: bios or uefi.
	Firmware string `json:"firmware"`
	// CACertPEM is the certificate to trust when the lab serves HTTPS
	// (`lab --tls`): each machine's "BMC CA".
	CACertPEM string `json:"ca_cert_pem,omitempty"`
}

// RequestRecord is one request the Redfish service answered.
type RequestRecord struct {
	// Time is when the request arrived (equal to Start).
	Time time.Time
	// System is the machine the request was about or authenticated as;
	// empty for anonymous requests such as the ServiceRoot.
	System string
	Method string
	Path   string
	// Start and End bracket the whole handling, latency faults included,
	// so overlapping records prove concurrent requests.
	Start  time.Time
	End    time.Time
	Status int
}

// maxRequestLog bounds the request log of a long-running lab; tests read far
// fewer records than this.
const maxRequestLog = 1 << 16

// Lab is a running lab.
type Lab struct {
	cfg     Config
	log     *slog.Logger
	backend backend
	http    *http.Client

	systems map[string]*System
	order   []*System          // by index, for collections
	byUser  map[string]*System // usernames are unique per machine

	// sessMu guards the session maps and every System's sessions.
	sessMu   sync.Mutex
	sessions map[string]*session // by token
	sessByID map[string]*session

	reqMu    sync.Mutex
	requests []RequestRecord
	reqStart int // ring start once the log is full

	serviceUUID   string
	gracefulDelay time.Duration

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // PXE clients, delayed shutdowns
	closeOnce sync.Once
	closeErr  error
}

// System is one emulated machine. Its methods are safe for concurrent use.
type System struct {
	lab      *Lab
	name     string
	index    int
	firmware string // FirmwareBIOS or FirmwareUEFI
	username string
	password string
	mac      string // normalised lower-case
	uuid     string
	serial   string

	// opMu serialises power operations, which may block (a VM stopping)
	// while mu must stay free for readers and the VM exit watcher.
	opMu sync.Mutex

	mu             sync.Mutex
	power          string
	prevPower      string
	powerChangedAt time.Time
	powerGen       uint64 // bumped by every power action; cancels delayed ones
	powerOns       int
	boot           BootOverride
	fault          Fault
	fail503Left    int
	counts         Counts
	failedLogins   int       // since the fault was last set, for LockoutAfter
	lastReset      time.Time // when the system last came out of a reset

	pxeCancel context.CancelFunc
	pxeBoots  int
	lastPXE   *PXEResult
	lastPXErr error

	vm *qemuVM // qemu backend: the running VM, nil when off

	// osCallback is where the image a simulated deploy wrote calls back
	// on its first boot from disk (memory backend).
	osCallback string
	memoryGiB  atomic.Uint64 // float64 bits; 0: the backend's default (SetMemoryGiB)

	sessions map[string]*session // by id; guarded by lab.sessMu
}

// New builds a lab. It starts nothing until a system is powered on.
func New(cfg Config) (*Lab, error) {
	if cfg.Machines < 1 {
		return nil, fmt.Errorf("lab: need at least one machine, got %d", cfg.Machines)
	}
	if cfg.Machines > 65000 {
		return nil, fmt.Errorf("lab: %d machines is more than the 65000 the MAC and address scheme covers", cfg.Machines)
	}
	if cfg.Backend == "" {
		cfg.Backend = BackendMemory
	}
	if cfg.NamePrefix == "" {
		cfg.NamePrefix = "lab-"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 256
	}
	if cfg.DiskMiB == 0 {
		cfg.DiskMiB = defaultDiskMiB
	}
	if cfg.QEMUBinary == "" {
		cfg.QEMUBinary = "qemu-system-x86_64"
	}
	if cfg.BootURL != "" && !strings.HasPrefix(cfg.BootURL, "http://") && !strings.HasPrefix(cfg.BootURL, "https://") {
		return nil, fmt.Errorf("lab: boot URL %q must start with http:// or https://", cfg.BootURL)
	}
	if cfg.Backend == BackendQEMU {
		if err := qemuNetworkDefaults(&cfg); err != nil {
			return nil, err
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	l := &Lab{
		cfg:           cfg,
		log:           cfg.Logger,
		http:          cfg.HTTPClient,
		systems:       make(map[string]*System, cfg.Machines),
		order:         make([]*System, 0, cfg.Machines),
		byUser:        make(map[string]*System, cfg.Machines),
		sessions:      make(map[string]*session),
		sessByID:      make(map[string]*session),
		serviceUUID:   uuidFrom("openbaremetal-lab-service/" + cfg.NamePrefix),
		gracefulDelay: defaultGracefulDelay,
		ctx:           ctx,
		cancel:        cancel,
	}

	switch cfg.Backend {
	case BackendMemory:
		l.backend = &memoryBackend{lab: l}
	case BackendQEMU:
		if cfg.StateDir == "" {
			cancel()
			return nil, errors.New("lab: the qemu backend needs a state directory for VM disks and serial logs")
		}
		if _, err := exec.LookPath(cfg.QEMUBinary); err != nil {
			cancel()
			return nil, fmt.Errorf("lab: qemu backend: %s not found (install qemu-system-x86): %w", cfg.QEMUBinary, err)
		}
		l.backend = &qemuBackend{lab: l}
	default:
		cancel()
		return nil, fmt.Errorf("lab: unknown backend %q (want %q or %q)", cfg.Backend, BackendMemory, BackendQEMU)
	}

	if err := l.checkFirmware(); err != nil {
		cancel()
		return nil, err
	}
	for i := 1; i <= cfg.Machines; i++ {
		name := fmt.Sprintf("%s%d", cfg.NamePrefix, i)
		fw := firmwareOf(l.cfg.Firmware, i)
		s := &System{
			lab:      l,
			name:     name,
			index:    i,
			firmware: fw,
			username: "admin-" + name,
			password: password(cfg.PasswordSeed, name),
			mac:      macFor(i),
			uuid:     uuidFrom("openbaremetal-lab/" + name),
			serial:   fmt.Sprintf("OBML%06d", i),
			power:    "Off",
			boot:     BootOverride{Target: "None", Enabled: "Disabled", Mode: bootModesOf(fw)[0]},
			sessions: map[string]*session{},
		}
		if _, dup := l.systems[name]; dup {
			cancel()
			return nil, fmt.Errorf("lab: duplicate machine name %q (check the name prefix)", name)
		}
		l.systems[name] = s
		l.byUser[s.username] = s
		l.order = append(l.order, s)
	}
	for _, f := range cfg.HostForwards {
		if l.systems[f.Machine] == nil {
			cancel()
			return nil, fmt.Errorf("lab: host forward for unknown machine %q", f.Machine)
		}
	}
	return l, nil
}

// checkFirmware validates the firmware settings (after the backend's
// defaults are in place) and fills in the firmware's defaults.
func (l *Lab) checkFirmware() error {
	cfg := &l.cfg
	if cfg.Firmware == "" {
		cfg.Firmware = FirmwareUEFI
		if cfg.Backend == BackendQEMU {
			cfg.Firmware = FirmwareBIOS
		}
	}
	if !slices.Contains([]string{FirmwareBIOS, FirmwareUEFI, FirmwareMixed}, cfg.Firmware) {
		return fmt.Errorf("lab: unknown firmware %q (want %s, %s or %s)", cfg.Firmware, FirmwareBIOS, FirmwareUEFI, FirmwareMixed)
	}
	if len(cfg.Taps) > 0 {
		if cfg.Backend != BackendQEMU {
			return errors.New("lab: tap networking needs the qemu backend")
		}
		if len(cfg.Taps) != cfg.Machines {
			return fmt.Errorf("lab: %d tap interfaces for %d machines: give one per machine", len(cfg.Taps), cfg.Machines)
		}
		for i := 1; i <= cfg.Machines; i++ {
			if firmwareOf(cfg.Firmware, i) != FirmwareUEFI {
				return fmt.Errorf("lab: machine %d boots BIOS, which has no PXE client of its own for a tap network; use --firmware uefi", i)
			}
		}
	}
	if cfg.OVMFCode == "" {
		cfg.OVMFCode = DefaultOVMFCode
	}
	if cfg.OVMFVars == "" {
		cfg.OVMFVars = DefaultOVMFVars
	}
	if cfg.Backend != BackendQEMU || cfg.Firmware == FirmwareBIOS {
		return nil
	}
	for _, f := range []string{cfg.OVMFCode, cfg.OVMFVars} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("lab: UEFI machines need OVMF (install Debian's ovmf package, or give --ovmf-code/--ovmf-vars): %w", err)
		}
	}
	return nil
}

// firmwareOf is the firmware of machine i (from 1) under the lab's setting.
func firmwareOf(setting string, i int) string {
	if setting == FirmwareMixed {
		if i%2 == 1 {
			return FirmwareBIOS
		}
		return FirmwareUEFI
	}
	return setting
}

// bootModesOf is what a machine's BMC lists as
// BootSourceOverrideMode@Redfish.AllowableValues: one mode, since a lab
// machine's firmware can boot only its own way (SeaBIOS has no UEFI, and a
// UEFI-only server has no legacy boot).
func bootModesOf(firmware string) []string {
	if firmware == FirmwareUEFI {
		return []string{"UEFI"}
	}
	return []string{"Legacy"}
}

// macFor gives machine i a fixed, locally administered QEMU-range MAC.
func macFor(i int) string {
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", (i>>16)&0xff, (i>>8)&0xff, i&0xff)
}

func password(seed, name string) string {
	if seed != "" {
		sum := sha256.Sum256([]byte(seed + "/" + name))
		return hex.EncodeToString(sum[:10])
	}
	return rand.Text()
}

// uuidFrom derives a stable RFC 4122 (version 5 layout) UUID from s.
func uuidFrom(s string) string {
	h := sha256.Sum256([]byte(s))
	h[6] = (h[6] & 0x0f) | 0x50
	h[8] = (h[8] & 0x3f) | 0x80
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// Handler is the Redfish service.
func (l *Lab) Handler() http.Handler { return http.HandlerFunc(l.serveHTTP) }

// Serve answers Redfish requests on ln until ctx ends. It does not Close
// the lab: the caller does, after Serve returns.
func (l *Lab) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           l.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Above any Latency fault a test injects, so a slow BMC is slow,
		// not cut off.
		WriteTimeout: 2 * time.Minute,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(l.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("lab: serving Redfish on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		_ = srv.Close()
	}
	<-errc //nolint:errcheck // Serve ends with http.ErrServerClosed after the shutdown (or an error of a run the caller cancelled anyway)
	return nil
}

// Inventory lists every machine with its full system URL under baseURL
// (e.g. http://127.0.0.1:8000) and its credentials.
func (l *Lab) Inventory(baseURL string) []InventoryEntry {
	baseURL = strings.TrimRight(baseURL, "/")
	out := make([]InventoryEntry, 0, len(l.order))
	for _, s := range l.order {
		out = append(out, InventoryEntry{
			Name:     s.name,
			Endpoint: baseURL + "/redfish/v1/Systems/" + s.name,
			Username: s.username,
			Password: s.password,
			MAC:      s.mac,
			Firmware: s.firmware,
		})
	}
	return out
}

// System returns the named machine, or nil.
func (l *Lab) System(name string) *System { return l.systems[name] }

// Requests returns the request log, oldest first (the most recent 65536).
func (l *Lab) Requests() []RequestRecord {
	l.reqMu.Lock()
	defer l.reqMu.Unlock()
	out := make([]RequestRecord, 0, len(l.requests))
	out = append(out, l.requests[l.reqStart:]...)
	out = append(out, l.requests[:l.reqStart]...)
	return out
}

func (l *Lab) record(r RequestRecord) {
	l.reqMu.Lock()
	defer l.reqMu.Unlock()
	if len(l.requests) < maxRequestLog {
		l.requests = append(l.requests, r)
		return
	}
	l.requests[l.reqStart] = r
	l.reqStart = (l.reqStart + 1) % maxRequestLog
}

// SetFault replaces the named machine's fault; Fault{} heals it.
func (l *Lab) SetFault(name string, f Fault) {
	s := l.systems[name]
	if s == nil {
		l.log.Error("lab: SetFault on an unknown machine", "system", name)
		return
	}
	s.mu.Lock()
	s.fault = f
	s.fail503Left = f.Fail503Next
	s.failedLogins = 0
	s.mu.Unlock()
}

// Close powers off every VM, stops the simulated PXE clients and waits for
// them. The Handler must not be used afterwards.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		l.cancel()
		l.closeErr = l.backend.close()
		l.wg.Wait()
	})
	return l.closeErr
}

// Names lists the machines in index order.
func (l *Lab) Names() []string {
	out := make([]string, len(l.order))
	for i, s := range l.order {
		out[i] = s.name
	}
	return out
}

// Name is the machine's name, which is also its Redfish system Id.
func (s *System) Name() string { return s.name }

// Firmware is the machine's firmware, FirmwareBIOS or FirmwareUEFI.
func (s *System) Firmware() string { return s.firmware }

// MAC is the machine's (only) NIC's MAC address, lower-case with colons.
func (s *System) MAC() string { return s.mac }

// PowerState is the true power state, "On" or "Off", whatever a
// LiePowerStateFor fault makes the BMC report.
func (s *System) PowerState() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.power
}

// BootOverride is the boot override currently in effect.
func (s *System) BootOverride() BootOverride {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.boot
}

// PowerOnCount counts how often the machine was powered on or restarted.
func (s *System) PowerOnCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.powerOns
}

// Faults is the machine's current fault; Fail503Next is what is left of it.
func (s *System) Faults() Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fault
	f.Fail503Next = s.fail503Left
	return f
}

// Counts is what the system's BMC was asked so far.
func (s *System) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts
	c.PatchedModes = slices.Clone(c.PatchedModes)
	return c
}

// PXEBoots counts the simulated PXE boots that finished (memory backend).
func (s *System) PXEBoots() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pxeBoots
}

// LastPXEDoc is the answer of the lab's Redfish extension
// Systems/<name>/Oem/Lab/LastPXE (memory backend): the last finished
// simulated PXE boot (nil before the first) and its error.
type LastPXEDoc struct {
	Result *PXEResult `json:"result"`
	Error  string     `json:"error,omitempty"`
}

// LastPXE is the outcome of the last finished simulated PXE boot.
func (s *System) LastPXE() (*PXEResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastPXE, s.lastPXErr
}

// setPower records a power change; callers hold s.mu.
func (s *System) setPower(state string) {
	if state == s.power {
		return
	}
	s.prevPower = s.power
	s.powerChangedAt = time.Now()
	s.power = state
}

// reportedPower is what the BMC says; callers hold s.mu.
func (s *System) reportedPower(now time.Time) string {
	if d := s.fault.LiePowerStateFor; d > 0 && s.prevPower != "" && now.Before(s.powerChangedAt.Add(d)) {
		return s.prevPower
	}
	return s.power
}

// addressForMAC is the address a simulated machine reports after
// installing: 10.77.x.y from the MAC's last two bytes, so stable per machine.
func addressForMAC(mac string) string {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return "10.77.0.1"
	}
	return fmt.Sprintf("10.77.%d.%d", hw[4], hw[5])
}
