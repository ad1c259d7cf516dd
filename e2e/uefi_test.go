package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/tapnet"
)

// TestUEFIFirmwarePXE installs a UEFI machine whose NIC has no iPXE ROM,
// so the whole chain starts in the firmware, as on most servers: EDK2's own
// PXE client (OVMF) gets ipxe.efi from the agent's TFTP on port 69, the
// iPXE it starts is sent to the agent's boot.ipxe over HTTP, and the
// machine's script boots the EFI-stub kernel with its initrd; the installer
// fetches its template and calls back, and the machine is provisioned. The
// guest is on a tap interface of its own, with the test's DHCP service as
// the site's: slirp would answer port 69 itself.
func TestUEFIFirmwarePXE(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	image := os.Getenv("BAREMETAL_LAB_IMAGE")
	agent := filepath.Join(root, "bin", "baremetal-agent")
	switch {
	case image == "":
		skipOrFailInCI(t, "BAREMETAL_LAB_IMAGE is not set (make lab-image builds it; make e2e sets it)")
	case !exists(filepath.Join(image, "vmlinuz")) || !exists(filepath.Join(image, "initrd.img")):
		skipOrFailInCI(t, "no vmlinuz/initrd.img in "+image+": run make lab-image")
	case !exists(agent):
		skipOrFailInCI(t, "bin/ lacks the agent: run make build")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		skipOrFailInCI(t, "qemu-system-x86_64 is not on PATH")
	}
	for _, f := range []string{lab.DefaultOVMFCode, lab.DefaultOVMFVars, "/usr/lib/ipxe/ipxe.efi"} {
		if !exists(f) {
			skipOrFailInCI(t, f+" is missing: install Debian's ovmf and ipxe packages")
		}
	}
	tap := tapnet.New(t)
	dir := t.TempDir()
	e := &env{t: t, root: root, dir: dir, labState: filepath.Join(dir, "lab")}

	apiPort, bootPort, labPort := freeTCPPort(t), freeTCPPort(t), freeTCPPort(t)
	bootURL := fmt.Sprintf("http://%s:%d", tap.HostIP, bootPort)
	token := "e2e-uefi-token-0123456789abcdef012345"
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.daemon("agent", agent, "serve",
		"--data-dir", filepath.Join(dir, "agent"), "--token-file", tokens,
		"--api-addr", fmt.Sprintf("127.0.0.1:%d", apiPort),
		"--boot-addr", fmt.Sprintf("%s:%d", tap.HostIP, bootPort),
		"--boot-url", bootURL,
		// PXE firmware speaks TFTP to port 69 only.
		"--tftp-addr", tap.HostIP.String()+":69",
		"--assets-dir", image)
	inventory := filepath.Join(dir, "inventory.json")
	e.daemon("lab", agent, "lab", "--backend", "qemu", "--machines", "1", "--name-prefix", "uefi-",
		"--listen", fmt.Sprintf("127.0.0.1:%d", labPort), "--inventory", inventory,
		"--state-dir", e.labState, "--firmware", lab.FirmwareUEFI, "--tap", tap.Iface)
	tap.ServeDHCP(t, "ipxe.efi", bootURL+"/boot.ipxe")

	certFile := filepath.Join(dir, "agent", "api-cert.pem")
	var cert []byte
	await(t, 30*time.Second, "the agent's certificate and the lab's inventory", func() bool {
		cert, _ = os.ReadFile(certFile)
		return len(cert) > 0 && exists(inventory)
	})
	e.client, err = client.New(client.Config{Endpoint: fmt.Sprintf("https://127.0.0.1:%d", apiPort), Token: token, CACertPEM: string(cert)})
	if err != nil {
		t.Fatal(err)
	}
	await(t, 30*time.Second, "the agent API", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := e.client.Info(ctx)
		return err == nil
	})
	await(t, 10*time.Second, "the lab's inventory", func() bool {
		e.inventory, err = lab.ReadInventory(inventory)
		return err == nil && len(e.inventory.Machines) == 1
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- serial log (tail) ---\n%s", tail(e.serialLog("uefi-1"), 4000))
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if _, err := e.client.CreateBootProfile(ctx, api.BootProfileRequest{
		Name: "lab-uefi", Kernel: "vmlinuz", Initrds: []string{"initrd.img"},
		Cmdline:   "console=ttyS0 baremetal.templates=user-data",
		Templates: map[string]string{"user-data": "stock:lab-user-data"},
	}); err != nil {
		t.Fatal(err)
	}
	m := e.inventory.Machines[0]
	if m.Firmware != lab.FirmwareUEFI {
		t.Fatalf("lab machine firmware %q, want uefi", m.Firmware)
	}
	start := time.Now()
	if _, err := e.client.CreateMachine(ctx, api.MachineRequest{
		Name: m.Name, MACs: []string{m.MAC}, BootProfile: "lab-uefi",
		BMC: api.BMCRequest{Endpoint: m.Endpoint, Username: m.Username, Password: m.Password},
	}); err != nil {
		t.Fatal(err)
	}
	got, err := e.client.WaitMachine(ctx, m.Name, func(m *api.Machine) (bool, error) {
		return m.Phase == string(model.PhaseProvisioned) || m.Phase == string(model.PhaseFailed), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", m.Name, err)
	}
	if got.Phase != string(model.PhaseProvisioned) {
		t.Fatalf("%s: phase %s, last error %q", m.Name, got.Phase, got.LastError)
	}
	t.Logf("%s: UEFI firmware PXE, provisioned %s after registration", m.Name, time.Since(start).Round(time.Second))
	if len(got.Addresses) == 0 || got.Addresses[0] != tap.GuestIP.String() {
		t.Errorf("addresses %v, want the DHCP address %s", got.Addresses, tap.GuestIP)
	}
	// The agent marks the machine provisioned on the callback, a moment
	// before the installer logs its answer.
	await(t, 30*time.Second, "the installer's callback line", func() bool {
		return strings.Contains(e.serialLog(m.Name), "installer: callback ok")
	})
	serial := e.serialLog(m.Name)
	for _, want := range []string{
		"Start PXE over IPv4",        // EDK2's own PXE client
		"efi: EFI v",                 // the kernel was started by EFI
		"fetched template user-data", // the installer ran with its initrd
	} {
		if !strings.Contains(serial, want) {
			t.Errorf("serial log lacks %q", want)
		}
	}
	if !strings.Contains(e.disk(m.Name), "BAREMETAL-INSTALLED machine="+m.Name) {
		t.Errorf("the installer's marker is not on the disk")
	}
}
