package boot

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/tapnet"
)

// OVMF is Debian's build of EDK2 for QEMU (package ovmf). EDK2's PXE base
// code and its Mtftp4 driver are the TFTP client of most server UEFI
// firmware, so this is the firmware client the TFTP server must satisfy.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// TestOVMFNetworkBoot PXE-boots UEFI firmware from the agent, in lock-step
// and with the sender window, through three clients: EDK2's PXE base code
// (Mtftp4) fetches ipxe.efi over TFTP; the iPXE it starts fetches ipxe.efi
// again with iPXE's own TFTP client (the test's DHCP names it once more);
// the iPXE started then chain-loads boot.ipxe and the machine's script over
// HTTP. The guest sits on a tap interface of its own with the test's DHCP
// responder: slirp cannot be used, because it answers every TFTP packet to
// its gateway's port 69 itself, and PXE firmware only speaks to port 69.
// The NIC is virtio-net without an option ROM, which leaves the network
// stack to EDK2's own drivers (QEMU's NIC ROMs are iPXE).
func TestOVMFNetworkBoot(t *testing.T) {
	t.Parallel()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		tapnet.SkipOrFailInCI(t, "qemu-system-x86_64 not found; install qemu-system-x86")
	}
	for _, f := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(f); err != nil {
			tapnet.SkipOrFailInCI(t, fmt.Sprintf("%v; install Debian's ovmf package", err))
		}
	}
	// Debian links ipxe.efi from /boot, and the TFTP server does not follow
	// links out of its root: serve a copy, as the agent does.
	ipxe, err := os.ReadFile(filepath.Join(DefaultTFTPRoot, "ipxe.efi"))
	if err != nil {
		tapnet.SkipOrFailInCI(t, fmt.Sprintf("%v; install Debian's ipxe package", err))
	}
	varsImage, err := os.ReadFile(ovmfVars)
	must(t, err)

	tests := []struct {
		name   string
		window uint
	}{
		{"lock-step", 0},
		{"window 16", 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tap := tapnet.New(t)
			hostIP := tap.HostIP
			tftpPC, err := net.ListenPacket("udp4", hostIP.String()+":69")
			must(t, err)
			httpLn, err := net.Listen("tcp4", hostIP.String()+":0")
			must(t, err)
			bootURL := fmt.Sprintf("http://%s:%d", hostIP, as[*net.TCPAddr](t, httpLn.Addr()).Port)
			// iPXE's own TFTP client fetches a sizeable file too: a script
			// fetches ipxe.efi without starting it (an ipxe.efi started
			// from iPXE hangs re-initialising the NIC) and then chains the
			// agent's boot.ipxe over HTTP.
			root := t.TempDir()
			must(t, os.WriteFile(filepath.Join(root, "ipxe.efi"), ipxe, 0o644))
			must(t, os.WriteFile(filepath.Join(root, "stage2.ipxe"),
				[]byte("#!ipxe\nimgfetch tftp://${next-server}/ipxe.efi\nimgfree\nchain "+bootURL+"/boot.ipxe\n"), 0o644))

			st := openTestStore(t)
			lc := newRecordingLifecycle(st)
			const mac = "52:54:00:0e:f1:01"
			mustCreateMachine(t, st, &model.Machine{Name: "uefi1", MACs: []string{mac}, State: model.StateProvisioned})
			logTap := &tftpLogTap{Handler: slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}), events: make(chan tftpLogEvent, 64)}
			srv, err := New(Config{
				BootURL:        bootURL,
				TFTPRoot:       root,
				TFTPAnticipate: tt.window,
				// Short, so that shutdown does not wait long for a transfer
				// the killed guest leaves behind.
				TFTPTimeout: time.Second,
				TFTPRetries: 2,
				Logger:      slog.New(logTap),
			}, st, StoreSecrets(st), lc)
			must(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 2)
			go func() { served <- srv.ServeTFTP(ctx, tftpPC) }()
			go func() { served <- srv.ServeHTTPListener(ctx, httpLn) }()
			t.Cleanup(func() {
				cancel()
				for range 2 {
					if err := <-served; err != nil {
						t.Errorf("server: %v", err)
					}
				}
			})
			tap.ServeDHCP(t, "ipxe.efi", "stage2.ipxe")

			work := t.TempDir()
			vars := filepath.Join(work, "vars.fd")
			must(t, os.WriteFile(vars, varsImage, 0o644))
			serial := filepath.Join(work, "serial.log")
			qctx, qcancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer qcancel()
			cmd := exec.CommandContext(qctx, qemu,
				"-accel", "tcg", "-m", "256", "-display", "none", "-monitor", "none", "-no-reboot",
				"-serial", "file:"+serial,
				"-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode,
				"-drive", "if=pflash,format=raw,file="+vars,
				"-netdev", "tap,id=n0,ifname="+tap.Iface+",script=no,downscript=no",
				"-device", "virtio-net-pci,netdev=n0,mac="+mac+",romfile=,bootindex=1")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			cmd.WaitDelay = 5 * time.Second
			start := time.Now()
			must(t, cmd.Start())
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			t.Cleanup(func() {
				qcancel()
				<-exited //nolint:errcheck // killed by qcancel: its exit error is expected
			})
			fail := func(format string, args ...any) {
				t.Helper()
				log, _ := os.ReadFile(serial)
				t.Fatalf("%s after %s\nQEMU stderr: %s\nserial log:\n%s\nsignals: %+v", fmt.Sprintf(format, args...),
					time.Since(start).Round(time.Second), stderr.String(), tail(string(log), 30), lc.recorded())
			}

			var done []tftpLogEvent
			var at []time.Duration
			pxe := false
			sizeQueries := 0
			wantFiles := []string{"ipxe.efi", "stage2.ipxe", "ipxe.efi"}
			for len(done) < len(wantFiles) || !pxe {
				select {
				case ev := <-logTap.events:
					if ev.msg == "tftp size query answered" {
						// EDK2 asks for the size first (tsize) and ends that
						// request with an ERROR of code 8 once it has the OACK;
						// the agent must not take it for a failed transfer.
						sizeQueries++
						continue
					}
					if ev.msg != "tftp transfer done" {
						fail("TFTP %s: %v", ev.msg, ev.attrs)
					}
					if len(done) == len(wantFiles) || ev.attrs["file"] != wantFiles[len(done)] {
						fail("transfer of %q after %d, want %q", ev.attrs["file"], len(done), wantFiles)
					}
					done = append(done, ev)
					at = append(at, time.Since(start))
				case <-lc.changed:
					pxe = slices.ContainsFunc(lc.recorded(), func(s signalRecord) bool { return s.Signal == model.SignalPXERequested })
				case err := <-exited:
					exited <- err
					fail("QEMU exited (%v) after %d complete transfer(s)", err, len(done))
				case <-qctx.Done():
					fail("%d of %d transfers (%q), boot script requested: %v", len(done), len(wantFiles), wantFiles, pxe)
				}
			}
			if sizeQueries != 1 {
				t.Errorf("%d size queries, want EDK2's one", sizeQueries)
			}
			if len(done) != len(wantFiles) {
				fail("%d transfers before the boot script, want %q", len(done), wantFiles)
			}
			sig := lc.recorded()[0]
			if sig.Machine != "uefi1" || sig.Data["mac"] != mac || sig.Data["platform"] != "efi" {
				fail("signal %+v, want pxe_requested for uefi1 from an EFI iPXE", sig)
			}
			for i, who := range []string{"EDK2 Mtftp4", "iPXE", "iPXE"} {
				t.Logf("%s fetched %s in %s (blksize %s), done %s after QEMU started", who, done[i].attrs["file"],
					done[i].attrs["duration"], done[i].attrs["blksize"], at[i].Round(100*time.Millisecond))
			}
			t.Logf("boot script requested %s after QEMU started", time.Since(start).Round(100*time.Millisecond))
		})
	}
}

type tftpLogEvent struct {
	msg   string
	attrs map[string]string
}

// tftpLogTap passes the server's log through and hands its per-transfer
// TFTP records (and refusals) to the test.
type tftpLogTap struct {
	slog.Handler
	events chan tftpLogEvent
}

func (h *tftpLogTap) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "tftp ") {
		ev := tftpLogEvent{msg: r.Message, attrs: map[string]string{}}
		r.Attrs(func(a slog.Attr) bool {
			ev.attrs[a.Key] = a.Value.String()
			return true
		})
		select {
		case h.events <- ev:
		default:
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h *tftpLogTap) WithAttrs(as []slog.Attr) slog.Handler {
	return &tftpLogTap{Handler: h.Handler.WithAttrs(as), events: h.events}
}

func (h *tftpLogTap) WithGroup(name string) slog.Handler {
	return &tftpLogTap{Handler: h.Handler.WithGroup(name), events: h.events}
}
