package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

// requireSite checks what a test with a real agent and a qemu lab needs and
// returns the repository root and the lab image directory.
func requireSite(t *testing.T, files ...string) (root, image string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	image = os.Getenv("BAREMETAL_LAB_IMAGE")
	switch {
	case image == "":
		skipOrFailInCI(t, "BAREMETAL_LAB_IMAGE is not set (make lab-image builds it; make e2e sets it)")
	case !exists(filepath.Join(image, "vmlinuz")) || !exists(filepath.Join(image, "initrd.img")):
		skipOrFailInCI(t, "no vmlinuz/initrd.img in "+image+": run make lab-image")
	case !exists(filepath.Join(root, "bin", "baremetal-agent")):
		skipOrFailInCI(t, "bin/ lacks the agent: run make build")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		skipOrFailInCI(t, "qemu-system-x86_64 is not on PATH")
	}
	for _, f := range files {
		if !exists(f) {
			skipOrFailInCI(t, f+" is missing: install Debian's ovmf and ipxe packages")
		}
	}
	return root, image
}

type siteOpts struct {
	bootAddr, bootURL, tftpAddr string
	lab                         []string // the lab's flags beyond backend, listen, inventory and state
	assets                      string   // the agent's --assets-dir (default: the lab image)
	agent                       []string // the agent's flags beyond addresses, data, tokens and assets
}

// TestMain: the e2e tests run what `make build` made, as terraform runs
// the provider from bin/.
func TestMain(m *testing.M) {
	if os.Getenv("BAREMETAL_AGENT_BIN") == "" {
		_ = os.Setenv("BAREMETAL_AGENT_BIN", filepath.Join("..", "bin", "baremetal-agent"))
	}
	testenv.Main(m)
}

// startSite starts a real agent and a real qemu lab for one test, waits
// until both answer, and returns the env with its API client and the lab's
// inventory.
func startSite(t *testing.T, root, image string, o siteOpts) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, root: root, dir: dir, labState: filepath.Join(dir, "lab")}
	token := "e2e-site-token-0123456789abcdef0123456"
	assets := o.assets
	if assets == "" {
		assets = image
	}
	agent := testenv.StartAgent(t, &testenv.Log{}, testenv.AgentSpec{
		DataDir: filepath.Join(dir, "agent"), TokenFile: testenv.TokenFile(t, token), Token: token, APIAddr: testenv.FreeTCP(t).Release(),
		Args: append([]string{"--boot-addr", o.bootAddr, "--boot-url", o.bootURL, "--tftp-addr", o.tftpAddr, "--assets-dir", assets}, o.agent...),
	})
	testenv.StartLab(t, &testenv.Log{}, dir, append([]string{"--backend", "qemu", "--listen", testenv.FreeTCP(t).Release(),
		"--state-dir", e.labState}, o.lab...)...)
	e.endpoint, e.token, e.caPEM, e.inventoryFile = agent.Endpoint, token, agent.CAPEM, testenv.LabInventoryFile(dir)
	var err error
	e.inventory, err = lab.ReadInventory(e.inventoryFile)
	require.NoError(t, err)
	e.client, err = client.New(client.Config{Endpoint: e.endpoint, Token: token, CACertPEM: e.caPEM})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range e.inventory.Machines {
				t.Logf("--- %s serial log (tail) ---\n%s", m.Name, testenv.Tail(e.serialLog(m.Name), 4000))
			}
		}
	})
	return e
}

// labProfile boots the lab's installer, which fetches its user-data and
// calls back; extra is appended to its kernel command line.
func labProfile(name, extra string) api.BootProfileRequest {
	return api.BootProfileRequest{
		Name: name, Kernel: "vmlinuz", Initrds: []string{"initrd.img"},
		Cmdline:   strings.TrimSpace("console=ttyS0 baremetal.templates=user-data " + extra),
		Templates: map[string]string{"user-data": "stock:lab-user-data"},
	}
}

// provision registers lab machine m with profile p and waits until it is
// provisioned, failing the test otherwise. The installer's own "callback
// ok" line comes a moment after the agent's provisioned; it is awaited too.
func (e *env) provision(ctx context.Context, m lab.InventoryEntry, p api.BootProfileRequest) *api.Machine {
	t := e.t
	t.Helper()
	if _, err := e.client.CreateBootProfile(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.CreateMachine(ctx, api.MachineRequest{
		Name: m.Name, MACs: []string{m.MAC}, BootProfile: p.Name,
		BMC: api.BMCRequest{Endpoint: m.Endpoint, Username: m.Username, Password: m.Password},
	}); err != nil {
		t.Fatal(err)
	}
	got, err := e.client.WaitMachine(ctx, m.Name, func(m *api.Machine) (bool, error) {
		return m.Phase == api.PhaseProvisioned || m.Phase == api.PhaseFailed, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", m.Name, err)
	}
	if got.Phase != api.PhaseProvisioned {
		t.Fatalf("%s: phase %s, last error %q", m.Name, got.Phase, got.LastError)
	}
	testenv.Eventually(t, m.Name+"'s installer callback line", 30*time.Second, func() error {
		if !strings.Contains(e.serialLog(m.Name), "installer: callback ok") {
			return errors.New("not in the serial log yet")
		}
		return nil
	})
	return got
}
