package lab

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// InventoryFile is the JSON document `lab --inventory` writes.
type InventoryFile struct {
	Machines []InventoryEntry `json:"machines"`
}

// ReadInventory reads a file written by `lab --inventory`.
func ReadInventory(path string) (InventoryFile, error) {
	var inv InventoryFile
	b, err := os.ReadFile(path)
	if err != nil {
		return inv, fmt.Errorf("lab inventory: %w", err)
	}
	if err := json.Unmarshal(b, &inv); err != nil {
		return inv, fmt.Errorf("lab inventory %s: %w", path, err)
	}
	return inv, nil
}

// WriteInventory writes inv to path atomically (a reader sees the old file
// or the whole new one) with mode 0600: it holds BMC passwords.
func WriteInventory(path string, inv InventoryFile) error {
	b, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("lab inventory: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("lab inventory: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		_ = f.Close()
		return fmt.Errorf("lab inventory: writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("lab inventory: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("lab inventory: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("lab inventory: %w", err)
	}
	return nil
}

func parseHostForwards(s string) ([]HostForward, error) {
	var out []HostForward
	for _, item := range splitList(s) {
		name, ports, ok := strings.Cut(item, "=")
		hp, gp, ok2 := strings.Cut(ports, ":")
		h, err1 := strconv.Atoi(hp)
		g, err2 := strconv.Atoi(gp)
		if !ok || !ok2 || err1 != nil || err2 != nil || h < 1 || h > 65535 || g < 1 || g > 65535 {
			return nil, fmt.Errorf("lab: --hostfwd %q: want MACHINE=HOSTPORT:GUESTPORT, e.g. lab-1=23790:2379", item)
		}
		out = append(out, HostForward{Machine: name, HostPort: h, GuestPort: g})
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// RunCommand is `baremetal-agent lab`: it serves a lab's Redfish service
// until ctx ends, then powers everything off.
func RunCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: baremetal-agent lab [flags]\n\nServes a Redfish service emulating N BMCs (the virtual lab) until interrupted.\n\nFlags:")
		fs.PrintDefaults()
	}
	machines := fs.Int("machines", 3, "number of machines (BMCs) to emulate")
	backend := fs.String("backend", BackendMemory, "machine backend: memory (simulated, instant) or qemu (real VMs)")
	listen := fs.String("listen", "127.0.0.1:8000", "address the Redfish service listens on (HOST:PORT; port 0 picks a free one)")
	advertise := fs.String("advertise-url", "", "base URL written into the inventory (default http://<listen address>, with 127.0.0.1 for an unspecified host)")
	inventory := fs.String("inventory", "lab-inventory.json", "file to write the machines' names, Redfish endpoints, credentials and MACs to (mode 0600)")
	bootURL := fs.String("boot-url", "", "the agent's advertised boot base URL the machines network-boot from (empty: they never boot). qemu backend: an http:// URL on the VMs' isolated network, e.g. http://10.0.2.4:8080, which a guest forward connects to --boot-forward")
	bootForward := fs.String("boot-forward", "", "qemu backend: host address the VMs' boot URL is forwarded to (default 127.0.0.1 and the boot URL's port)")
	hostFwds := fs.String("hostfwd", "", "qemu backend: comma-separated guest ports to publish on 127.0.0.1, as MACHINE=HOSTPORT:GUESTPORT (e.g. lab-1=23790:2379)")
	peerFwds := fs.Bool("hostfwd-peers", false, "qemu backend: the other VMs reach each --hostfwd port at the publishing machine's address (e.g. lab-1's 2379 at 10.0.2.15:2379), and only those ports")
	stateDir := fs.String("state-dir", "lab-state", "qemu backend: directory for VM disks, serial logs and QEMU logs")
	memory := fs.Int("memory", 256, "qemu backend: memory per VM in MiB")
	diskMiB := fs.Int("disk-mib", defaultDiskMiB, "qemu backend: size of each VM's sparse disk in MiB, made at its first start (an image deploy needs the image's size plus 65 MiB for the config drive)")
	qemuBin := fs.String("qemu", "qemu-system-x86_64", "qemu backend: QEMU binary")
	prefix := fs.String("name-prefix", "lab-", "machine name prefix: <prefix>1, <prefix>2, ...")
	useTLS := fs.Bool("tls", false, "serve HTTPS with a self-signed certificate, written into the inventory as each machine's ca_cert_pem")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	firmware := fs.String("firmware", "", "machine firmware: bios, uefi, or mixed (odd-numbered machines BIOS, even UEFI); default bios for the qemu backend (SeaBIOS), uefi for memory. UEFI VMs run Debian's OVMF")
	ovmfCode := fs.String("ovmf-code", DefaultOVMFCode, "qemu backend: UEFI firmware image (read-only)")
	ovmfVars := fs.String("ovmf-vars", DefaultOVMFVars, "qemu backend: UEFI variable store template; each UEFI VM gets its own copy in --state-dir")
	taps := fs.String("tap", "", "qemu backend: comma-separated host tap interfaces, one per machine, instead of user-mode networks; the VMs get a NIC without iPXE ROM so the UEFI firmware's own PXE client boots (needs --firmware uefi and a DHCP service on the taps)")
	latency := fs.Duration("latency", 0, "delay added before every Redfish response about a machine, for all machines (emulates slow BMCs; benchmarks)")
	var fault Fault
	fs.DurationVar(&fault.SlowReset, "slow-reset", 0, "fault: carry out a Reset action at once but answer only after this long (iDRAC under load)")
	fs.BoolVar(&fault.RevertModeToLegacy, "mode-revert", false, "fault: after a Boot PATCH, report BootSourceOverrideMode Legacy (Supermicro, AMI)")
	fs.IntVar(&fault.SessionLimit, "session-limit", 0, "fault: refuse a login beyond this many open sessions with iDRAC's RAC0218 (0: the default table of 64)")
	fs.BoolVar(&fault.Hang, "hang", false, "fault: accept connections and requests, never answer")
	fs.BoolVar(&fault.BadJSON, "bad-json", false, "fault: answer GETs under a system with a body that is not JSON")
	fs.IntVar(&fault.LockoutAfter, "lockout-after", 0, "fault: lock an account after this many failed logins (0: never)")
	fs.IntVar(&fault.DuplicateDriveLinks, "duplicate-drive-links", 0, "fault: link each system's drive this many times from its Storage")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("lab: unexpected arguments %q", fs.Args())
	}
	fwds, err := parseHostForwards(*hostFwds)
	if err != nil {
		return err
	}
	for name, d := range map[string]time.Duration{"latency": *latency, "slow-reset": fault.SlowReset} {
		if d < 0 {
			return fmt.Errorf("lab: --%s %s: must not be negative", name, d)
		}
	}
	for name, n := range map[string]int{"session-limit": fault.SessionLimit, "lockout-after": fault.LockoutAfter, "duplicate-drive-links": fault.DuplicateDriveLinks} {
		if n < 0 {
			return fmt.Errorf("lab: --%s %d: must not be negative", name, n)
		}
	}
	if *diskMiB < 1 {
		return fmt.Errorf("lab: --disk-mib %d: must be at least 1", *diskMiB)
	}
	fault.Latency = *latency
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("lab: --log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	l, err := New(Config{
		Machines:     *machines,
		Backend:      *backend,
		NamePrefix:   *prefix,
		BootURL:      *bootURL,
		BootForward:  *bootForward,
		HostForwards: fwds,
		PeerForwards: *peerFwds,
		StateDir:     *stateDir,
		QEMUBinary:   *qemuBin,
		MemoryMiB:    *memory,
		DiskMiB:      *diskMiB,
		Firmware:     *firmware,
		OVMFCode:     *ovmfCode,
		OVMFVars:     *ovmfVars,
		Taps:         splitList(*taps),
		Logger:       logger,
	})
	if err != nil {
		return err
	}
	if fault != (Fault{}) {
		for _, name := range l.Names() {
			l.SetFault(name, fault)
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		_ = l.Close()
		return fmt.Errorf("lab: listening on %s: %w", *listen, err)
	}
	scheme, caPEM := "http", ""
	if *useTLS {
		host, _, _ := net.SplitHostPort(*listen)
		cert, pemCert, err := selfSignedCert(host)
		if err != nil {
			_ = ln.Close()
			_ = l.Close()
			return fmt.Errorf("lab: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		scheme, caPEM = "https", pemCert
	}
	base := strings.TrimRight(*advertise, "/")
	if base == "" {
		base = scheme + "://" + advertisedAddr(ln.Addr())
	}
	entries := l.Inventory(base)
	for i := range entries {
		entries[i].CACertPEM = caPEM
	}
	if err := WriteInventory(*inventory, InventoryFile{Machines: entries}); err != nil {
		_ = ln.Close()
		_ = l.Close()
		return err
	}
	fmt.Fprintf(stdout, "lab: serving %d machines (%s, firmware %s) on %s, inventory %s\n", *machines, l.cfg.Backend, l.cfg.Firmware, base, *inventory)

	serveErr := l.Serve(ctx, ln)
	return errors.Join(serveErr, l.Close())
}

// advertisedAddr makes a wildcard listen address reachable for local
// clients.
func advertisedAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(tcp.Port))
}
