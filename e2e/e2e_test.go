// Package e2e runs the main job end to end: terraform apply of the
// quickstart against a real baremetal-agent and a lab of QEMU machines that
// boot over real PXE (TFTP, iPXE, HTTP) behind an emulated Redfish BMC.
//
// It needs the binaries from `make build` (bin/), the lab image from
// `make lab-image` (BAREMETAL_LAB_IMAGE), qemu-system-x86_64 and terraform;
// without them it skips, saying what is missing. `make e2e` runs it alone.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

const machines = 2

type env struct {
	t         *testing.T
	root      string // repository root
	dir       string // scratch: agent data, lab state, terraform working copy
	workdir   string // the copy of examples/quickstart terraform runs in
	labState  string
	tfEnv     []string
	client    *client.Client
	inventory lab.InventoryFile

	endpoint, token, caPEM, inventoryFile string
}

func TestQuickstartOverQEMU(t *testing.T) {
	t.Parallel()
	root, image := requireSite(t, lab.DefaultOVMFCode, lab.DefaultOVMFVars)
	if _, err := exec.LookPath("terraform"); err != nil {
		skipOrFailInCI(t, "terraform is not on PATH")
	}
	e := start(t, root, image)

	// 1. Apply: the control plane first, then the worker, over real PXE.
	e.terraform("apply", "-auto-approve", "-input=false")
	var names []string
	for _, m := range e.inventory.Machines {
		names = append(names, m.Name)
	}
	cp, worker := names[0], names[1]
	for _, name := range names {
		m, err := e.client.GetMachine(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if m.Phase != api.PhaseProvisioned || len(m.Addresses) == 0 {
			t.Errorf("%s: phase %q, addresses %v; want provisioned with an address", name, m.Phase, m.Addresses)
		}
		serial := e.serialLog(name)
		for _, want := range []string{
			"/boot/",                 // iPXE fetched its per-machine script
			"Linux version",          // the kernel booted
			"installer: callback ok", // the installer reported back
			"fetched template user-data",
		} {
			if !strings.Contains(serial, want) {
				t.Errorf("%s: serial log lacks %q", name, want)
			}
		}
		// The kernel says whether EFI started it: the UEFI machine went
		// through OVMF and EFI iPXE, the BIOS one through SeaBIOS.
		firmware := e.firmware(name)
		if efi := strings.Contains(serial, "efi: EFI v"); efi != (firmware == lab.FirmwareUEFI) {
			t.Errorf("%s: firmware %s, but the kernel reports EFI: %v", name, firmware, efi)
		}
		t.Logf("%s: %s firmware, provisioned", name, firmware)
	}
	if e.firmware(names[0]) == e.firmware(names[1]) {
		t.Errorf("both machines boot %s; the lab runs --firmware mixed", e.firmware(names[0]))
	}
	if t.Failed() {
		t.FailNow()
	}
	cpDone := e.firstEvent(cp, isProvisioned)
	workerStart := e.firstEvent(worker, isRunStarted)
	if !workerStart.Time.After(cpDone.Time) {
		t.Errorf("worker run started at %s, before the control plane was provisioned at %s", workerStart.Time, cpDone.Time)
	}
	// The installer wrote its rendered user-data to the VM's disk: the
	// worker's names the control plane's reported address.
	cpMachine, err := e.client.GetMachine(context.Background(), cp)
	if err != nil {
		t.Fatal(err)
	}
	wantLine := fmt.Sprintf("control_plane_address: %q", cpMachine.Addresses[0])
	if disk := e.disk(worker); !strings.Contains(disk, wantLine) {
		t.Errorf("worker disk lacks %q; user-data written there:\n%s", wantLine, testenv.Tail(disk, 1500))
	}
	e.assertState(func(state map[string]any) {
		members := outputValue(t, state, "members")
		for _, name := range names {
			if phase := members[name].(map[string]any)["phase"]; phase != "provisioned" {
				t.Errorf("state: member %s phase %v", name, phase)
			}
		}
		endpoints := outputValue(t, state, "endpoints")
		if got := fmt.Sprint(endpoints["control-plane"]); !strings.Contains(got, cpMachine.Addresses[0]) {
			t.Errorf("state: control-plane endpoints %s lack %s", got, cpMachine.Addresses[0])
		}
	})

	// 2. Nothing to do on a second plan.
	if code := e.terraformCode("plan", "-detailed-exitcode", "-input=false"); code != 0 {
		t.Fatalf("second plan exit code %d, want 0 (empty plan)", code)
	}

	// 3. A new worker profile re-provisions the worker only.
	cpRuns, workerRuns := e.count(cp, isRunStarted), e.count(worker, isRunStarted)
	e.terraform("apply", "-auto-approve", "-input=false", "-var", "worker_release=2")
	if got := e.count(worker, isRunStarted); got != workerRuns+1 {
		t.Errorf("worker runs: %d after the profile change, want %d", got, workerRuns+1)
	}
	if got := e.count(worker, isScriptServed); got < 2 {
		t.Errorf("worker: %d boot scripts served, want a second boot", got)
	}
	if got := e.count(cp, isRunStarted); got != cpRuns {
		t.Errorf("control plane runs: %d after a worker-only change, want %d", got, cpRuns)
	}
	if code := e.terraformCode("plan", "-detailed-exitcode", "-input=false", "-var", "worker_release=2"); code != 0 {
		t.Errorf("plan after the rollout: exit code %d, want 0", code)
	}

	// 4. Destroy powers the VMs off and unregisters the machines.
	e.terraform("destroy", "-auto-approve", "-input=false", "-var", "worker_release=2")
	if left, _ := e.client.ListMachines(context.Background(), client.MachineFilter{}); len(left) != 0 {
		t.Errorf("%d machines still registered after destroy", len(left))
	}
	if pids := qemuProcesses(e.labState); len(pids) != 0 {
		t.Errorf("QEMU processes still running after destroy: %v", pids)
	}
}

// skipOrFailInCI skips a test whose environment is missing, except in CI,
// where the environment is part of what is tested.
func skipOrFailInCI(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

func isProvisioned(ev api.Event) bool {
	return ev.Type == api.EventPhaseChanged && ev.Phase == api.PhaseProvisioned
}
func isRunStarted(ev api.Event) bool   { return ev.Type == api.EventRunStarted }
func isScriptServed(ev api.Event) bool { return ev.Type == api.EventScriptServed }

func start(t *testing.T, root, image string) *env {
	bootAddr, bootPort := freeBoot(t)
	e := startSite(t, root, image, siteOpts{
		bootAddr: bootAddr, bootURL: lab.QEMUBootURL(bootPort),
		tftpAddr: testenv.FreeUDP(t).Release(),
		lab: []string{"--machines", fmt.Sprint(machines), "--boot-url", lab.QEMUBootURL(bootPort),
			"--firmware", lab.FirmwareMixed},
	})
	if len(e.inventory.Machines) != machines {
		t.Fatalf("lab inventory has %d machines, want %d", len(e.inventory.Machines), machines)
	}
	dir := e.dir

	// Terraform works in a copy of the examples, so the module's relative
	// source resolves and no state lands in the repository.
	examples := filepath.Join(dir, "examples")
	for _, sub := range []string{"quickstart", "modules/cluster"} {
		copyDir(t, filepath.Join(root, "examples", sub), filepath.Join(examples, sub))
	}
	e.workdir = filepath.Join(examples, "quickstart")
	rc := filepath.Join(dir, "terraformrc")
	rcText := fmt.Sprintf("provider_installation {\n  dev_overrides {\n    \"openbaremetal/baremetal\" = %q\n  }\n  direct {}\n}\n", filepath.Join(root, "bin"))
	if err := os.WriteFile(rc, []byte(rcText), 0o600); err != nil {
		t.Fatal(err)
	}
	e.tfEnv = append(os.Environ(),
		"TF_CLI_CONFIG_FILE="+rc, "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1",
		"BAREMETAL_ENDPOINT="+e.endpoint, "BAREMETAL_TOKEN="+e.token, "BAREMETAL_CA_CERT_PEM="+e.caPEM,
		"TF_VAR_inventory_file="+e.inventoryFile)
	e.terraform("get")
	return e
}

func (e *env) terraform(args ...string) {
	e.t.Helper()
	if code := e.terraformCode(args...); code != 0 {
		e.t.Fatalf("terraform %s: exit code %d", args[0], code)
	}
}

func (e *env) terraformCode(args ...string) int {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "terraform", append([]string{args[0], "-no-color"}, args[1:]...)...)
	if args[0] == "get" {
		cmd = exec.CommandContext(ctx, "terraform", args...)
	}
	cmd.Dir, cmd.Env = e.workdir, e.tfEnv
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	e.t.Logf("terraform %s: exit %d after %s", strings.Join(args, " "), code, time.Since(start).Round(time.Second))
	if err != nil && code != 2 {
		e.t.Logf("terraform output:\n%s", testenv.Tail(out.String(), 6000))
	}
	return code
}

func (e *env) assertState(check func(state map[string]any)) {
	data, err := os.ReadFile(filepath.Join(e.workdir, "terraform.tfstate"))
	if err != nil {
		e.t.Fatal(err)
	}
	var state map[string]any
	if err := json.Unmarshal(data, &state); err != nil {
		e.t.Fatal(err)
	}
	check(state)
}

func outputValue(t *testing.T, state map[string]any, name string) map[string]any {
	t.Helper()
	out, _ := state["outputs"].(map[string]any)[name].(map[string]any)
	v, ok := out["value"].(map[string]any)
	if !ok {
		t.Fatalf("state has no map output %q", name)
	}
	return v
}

func (e *env) events(name string) []api.Event {
	list, err := e.client.MachineEvents(context.Background(), name, 0, api.MaxEventLimit)
	if err != nil {
		e.t.Fatalf("events of %s: %v", name, err)
	}
	return list.Events
}

func (e *env) count(name string, match func(api.Event) bool) int {
	n := 0
	for _, ev := range e.events(name) {
		if match(ev) {
			n++
		}
	}
	return n
}

func (e *env) firstEvent(name string, match func(api.Event) bool) api.Event {
	for _, ev := range e.events(name) {
		if match(ev) {
			return ev
		}
	}
	e.t.Fatalf("%s: no matching event", name)
	return api.Event{}
}

// disk returns the text the lab installer wrote to a VM's disk (it leaves
// the first 4 KiB zero so firmware never takes it for a boot sector).
func (e *env) disk(name string) string {
	data, err := os.ReadFile(filepath.Join(e.labState, name+".disk"))
	if err != nil || len(data) < 4096 {
		return ""
	}
	return string(bytes.TrimRight(bytes.Trim(data[4096:], "\x00"), "\x00"))
}

func (e *env) firmware(name string) string {
	for _, m := range e.inventory.Machines {
		if m.Name == name {
			return m.Firmware
		}
	}
	e.t.Fatalf("%s is not in the lab inventory", name)
	return ""
}

func (e *env) serialLog(name string) string {
	data, _ := os.ReadFile(filepath.Join(e.labState, name+".serial.log"))
	return string(data)
}

// qemuProcesses lists the QEMU processes whose command line names the lab's
// state directory (their disks live there).
func qemuProcesses(stateDir string) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if strings.Contains(args[0], "qemu-system") && strings.Contains(string(cmdline), stateDir) {
			pids = append(pids, ent.Name())
		}
	}
	return pids
}

// freeBoot is a free loopback address for the agent's boot listener, and
// its port, which the lab's VMs reach through slirp's guest forward.
func freeBoot(t *testing.T) (addr, port string) {
	addr = testenv.FreeTCP(t).Release()
	_, port, _ = net.SplitHostPort(addr)
	return addr, port
}

func copyDir(t *testing.T, src, dst string) {
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			if d.Name() == ".terraform" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if strings.HasSuffix(p, ".tf") || strings.HasSuffix(p, ".md") {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
