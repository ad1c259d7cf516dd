package boot

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// TestQEMUNetworkBoot boots a real VM through the boot edge: QEMU's own
// iPXE ROM gets tftp://10.0.2.2:<port>/boot.ipxe from slirp's DHCP, fetches
// it from our TFTP server on the host's loopback, chains to /boot.ipxe and
// the per-machine script over HTTP, loads the lab kernel and initrd, and the
// busybox installer fetches its rendered template, writes it to the VM's
// disk and posts the callback. Build the image with `make lab-image`.
func TestQEMUNetworkBoot(t *testing.T) {
	dir := os.Getenv("BAREMETAL_LAB_IMAGE")
	if dir == "" {
		t.Skip("BAREMETAL_LAB_IMAGE is not set; run `make lab-image` and set it to the image directory (make test does)")
	}
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Skipf("lab image incomplete (%v); run `make lab-image`", err)
		}
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not found; install qemu-system-x86 and ipxe-qemu")
	}

	st := openTestStore(t)
	lc := newRecordingLifecycle(st)
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	tftpPC, err := net.ListenPacket("udp", "127.0.0.1:0")
	must(t, err)
	httpPort := as[*net.TCPAddr](t, httpLn.Addr()).Port
	tftpPort := as[*net.UDPAddr](t, tftpPC.LocalAddr()).Port

	srv, err := New(Config{
		BootURL:   fmt.Sprintf("http://10.0.2.2:%d", httpPort),
		AssetsDir: dir,
		TFTPRoot:  t.TempDir(), // QEMU's ROM is iPXE already: only the virtual boot.ipxe is needed
		Logger:    testLogger(t),
	}, st, StoreSecrets(st), lc)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { errs <- srv.ServeHTTPListener(ctx, httpLn) }()
	go func() { errs <- srv.ServeTFTP(ctx, tftpPC) }()
	t.Cleanup(func() {
		cancel()
		for i := 0; i < 2; i++ {
			if err := <-errs; err != nil {
				t.Errorf("server: %v", err)
			}
		}
	})

	tok := make([]byte, 16)
	rand.Read(tok)
	token := hex.EncodeToString(tok)
	mustCreateProfile(t, st, &model.BootProfile{
		Name: "lab", Kernel: "vmlinuz", Initrds: []string{"initrd.img"},
		Cmdline:   "console=ttyS0 panic=-1 baremetal.templates=user-data",
		Templates: map[string]string{"user-data": "#cloud-config\nhostname: {{ .Machine.Name }}\ngreeting: {{ .Params.greeting }}\n"},
	})
	mustCreateMachine(t, st, &model.Machine{
		Name: "vm1", MACs: []string{"52:54:00:12:34:56"}, BootProfile: "lab", State: model.StateProvisioned,
		Params: map[string]string{"greeting": "hello-from-the-agent"},
		Run:    &model.Run{ID: "run-1", Token: token, Profile: "lab", StartedAt: time.Now()},
	})
	wantTemplate := "#cloud-config\nhostname: vm1\ngreeting: hello-from-the-agent\n"

	work := t.TempDir()
	serial := filepath.Join(work, "serial.log")
	disk := filepath.Join(work, "disk.img")
	must(t, os.WriteFile(disk, make([]byte, 1<<20), 0o644))
	qctx, qcancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer qcancel()
	cmd := exec.CommandContext(qctx, qemu,
		"-accel", "tcg", "-m", "256", "-display", "none", "-monitor", "none", "-no-reboot",
		"-serial", "file:"+serial,
		"-netdev", fmt.Sprintf("user,id=n0,bootfile=tftp://10.0.2.2:%d/boot.ipxe", tftpPort),
		"-device", "e1000,netdev=n0,mac=52:54:00:12:34:56",
		"-drive", "file="+disk+",format=raw,if=virtio",
		"-boot", "n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	must(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill() // clean-up: the error would only say it has exited
			_ = cmd.Wait()
		}
	})
	err = cmd.Wait()
	log, _ := os.ReadFile(serial)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serial log:\n%s", tail(string(log), 80))
		}
	})
	if err != nil || qctx.Err() != nil {
		t.Fatalf("QEMU did not finish the install (err %v, ctx %v) after %s\nstderr: %s\nserial log:\n%s\nsignals: %+v",
			err, qctx.Err(), time.Since(start).Round(time.Second), stderr.String(), tail(string(log), 40), lc.recorded())
	}
	t.Logf("VM installed and rebooted in %s", time.Since(start).Round(100*time.Millisecond))

	want := []model.Signal{model.SignalPXERequested, model.SignalScriptServed, model.SignalKernelFetched,
		model.SignalInitrdFetched, model.SignalTemplatesFetched, model.SignalCallbackReceived}
	if got := lc.sequence("vm1"); !slices.Equal(got, want) {
		t.Fatalf("signal sequence %v, want %v\nserial log:\n%s", got, want, tail(string(log), 40))
	}
	lc.mu.Lock()
	cbs := append([]model.CallbackReport(nil), lc.callbacks...)
	lc.mu.Unlock()
	if len(cbs) != 1 || !slices.Equal(cbs[0].Addresses, []string{"10.0.2.15"}) || cbs[0].Hostname != "vm1" || cbs[0].Status != "ok" {
		t.Fatalf("callback report %+v, want 10.0.2.15 from vm1", cbs)
	}
	if !strings.Contains(cbs[0].LogTail, fmt.Sprintf("installer: fetched template user-data (%d bytes)", len(wantTemplate))) {
		t.Fatalf("callback log tail does not show the template fetch:\n%s", cbs[0].LogTail)
	}
	for _, line := range []string{"installer: network", "installer: fetched template user-data", "installer: wrote marker and templates to /dev/vda", "installer: callback ok"} {
		if !strings.Contains(string(log), line) {
			t.Errorf("serial log lacks %q", line)
		}
	}
	// The kernel echoes its command line (token included) to the console;
	// the installer itself must not repeat it.
	for _, line := range strings.Split(string(log), "\n") {
		if strings.HasPrefix(line, "installer:") && strings.Contains(line, token) {
			t.Errorf("installer printed the run token: %q", line)
		}
	}
	// The disk holds what the VM received: the template rendered for it.
	img, err := os.ReadFile(disk)
	must(t, err)
	wantDisk := "BAREMETAL-INSTALLED machine=vm1 address=10.0.2.15\n--- template user-data\n" + wantTemplate + "--- end\n"
	if !bytes.Equal(img[:4096], make([]byte, 4096)) {
		t.Fatal("the installer wrote into the disk's first 4 KiB (boot sector)")
	}
	if got := img[4096:]; !bytes.HasPrefix(got, []byte(wantDisk)) {
		t.Fatalf("disk at 4096 holds %q, want %q", got[:min(len(got), len(wantDisk)+40)], wantDisk)
	}
	m, err := st.GetMachine(context.Background(), "vm1")
	must(t, err)
	if !m.Run.TokenUsed {
		t.Fatal("run token not consumed by the callback")
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
