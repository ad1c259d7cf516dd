package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/bench/internal/peers"
	"github.com/openbaremetal/terraform-provider-baremetal/bench/internal/report"
)

// Both configurations read the same machines file, so they differ only in
// the resource type.
const tfLocals = `locals {
  machines = jsondecode(file("${path.module}/machines.json"))
}
`

const tfMachines = `terraform {
  required_providers {
    baremetal = {
      source = "openbaremetal/baremetal"
    }
  }
}

provider "baremetal" {
  endpoint    = %q
  token       = %q
  ca_cert_pem = <<-PEM
%s
PEM
}

resource "baremetal_machine" "m" {
  count = length(local.machines)
  name  = local.machines[count.index].name
  bmc = {
    endpoint = local.machines[count.index].endpoint
    username = local.machines[count.index].username
    password = local.machines[count.index].password
  }
  macs         = [local.machines[count.index].mac]
  boot_profile = "bench"
  state        = %q
}
`

const tfData = `resource "terraform_data" "m" {
  count = length(local.machines)
  input = {
    name     = local.machines[count.index].name
    endpoint = local.machines[count.index].endpoint
    mac      = local.machines[count.index].mac
  }
}
`

type tfResult struct {
	wall        time.Duration
	providerRSS int64 // the largest VmHWM of any provider process the apply started
	launches    int   // provider processes seen
	// cpu is the user+system time of terraform and the provider processes
	// it started and waited for (wait4's rusage of the terraform process).
	cpu time.Duration
}

func benchTerraform(o options) (string, error) {
	if _, err := exec.LookPath(o.terraformBin); err != nil {
		return "", fmt.Errorf("terraform CLI: %w", err)
	}
	providerDir, err := filepath.Abs(o.providerDir)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(providerDir, "terraform-provider-baremetal")); err != nil {
		return "", fmt.Errorf("provider binary: %w (run make build)", err)
	}
	var data, machines, wide, avail []tfResult
	var api []provisionResult
	for rep := range o.reps {
		logf("terraform rep %d/%d: %d terraform_data", rep+1, o.reps, o.tfResources)
		d, err := tfApplyData(o, providerDir)
		if err != nil {
			return "", fmt.Errorf("terraform_data: %w", err)
		}
		logf("terraform: %d terraform_data in %s", o.tfResources, d.wall.Round(time.Millisecond))
		data = append(data, d)

		logf("terraform rep %d/%d: %d baremetal_machine", rep+1, o.reps, o.tfResources)
		m, err := tfApplyMachines(o, providerDir, "provisioned")
		if err != nil {
			return "", fmt.Errorf("baremetal_machine: %w", err)
		}
		logf("terraform: %d baremetal_machine in %s, provider peak RSS %.0f MiB", o.tfResources, m.wall.Round(time.Millisecond), mib(m.providerRSS))
		machines = append(machines, m)

		w, err := tfApplyMachines(o, providerDir, "provisioned", fmt.Sprintf("-parallelism=%d", o.tfResources))
		if err != nil {
			return "", fmt.Errorf("baremetal_machine, -parallelism=%d: %w", o.tfResources, err)
		}
		logf("terraform: %d baremetal_machine with -parallelism=%d in %s", o.tfResources, o.tfResources, w.wall.Round(time.Millisecond))
		wide = append(wide, w)

		v, err := tfApplyMachines(o, providerDir, "available")
		if err != nil {
			return "", fmt.Errorf("baremetal_machine, state available: %w", err)
		}
		logf("terraform: %d baremetal_machine registered (state available) in %s", o.tfResources, v.wall.Round(time.Millisecond))
		avail = append(avail, v)

		a, err := oneProvision(o, o.tfResources)
		if err != nil {
			return "", fmt.Errorf("API client: %w", err)
		}
		logf("terraform: the same %d machines through the API in %s", o.tfResources, a.wall.Round(time.Millisecond))
		api = append(api, a)
	}
	dWall := report.Median(walls(data))
	mWall := report.Median(walls(machines))
	wWall := report.Median(walls(wide))
	vWall := report.Median(walls(avail))
	var aw []float64
	for _, a := range api {
		aw = append(aw, secs(a.wall))
	}
	aWall := report.Median(aw)
	var rss []float64
	launches := 0
	var wideRSS, availRSS []float64
	for _, m := range machines {
		rss = append(rss, mib(m.providerRSS))
		launches = max(launches, m.launches)
	}
	for _, w := range wide {
		wideRSS = append(wideRSS, mib(w.providerRSS))
	}
	for _, v := range avail {
		availRSS = append(availRSS, mib(v.providerRSS))
	}

	var b strings.Builder
	fmt.Fprintf(&b, "## Terraform overhead\n\n")
	fmt.Fprintf(&b, "`terraform apply -auto-approve` (Terraform's default parallelism of 10) of %d `baremetal_machine` resources "+
		"(one per memory-lab machine, the provider from bin/ through `dev_overrides`, each create waiting until its machine is provisioned; "+
		"agent `--provisioning-limit %d --bmc-max-concurrent %d`) against %d `terraform_data` resources reading the same machines file; "+
		"a fresh agent, lab and state per run. The second baremetal_machine row lifts Terraform's parallelism to the resource count. The third sets `state = \"available\"`: the agent registers each machine and reads its inventory through the BMC, and the create returns without installing it (how a fleet is enrolled before it is assigned), so little agent work hides the provider's own cost. The last row registers the same machines through the API with the benchmark's own client "+
		"(%d in flight) and waits for them, the work the agent has to do anyway. Terraform + provider CPU is the user+system time of the terraform process and the provider processes it started and waited for (its rusage at exit). Provider peak RSS is the largest VmHWM of any "+
		"terraform-provider-baremetal process the apply started (Terraform started %d), sampled every 20 ms. Medians of %d run(s).\n\n",
		o.tfResources, o.provLimit, o.bmcMax, o.tfResources, apiWorkers, launches, o.reps)
	b.WriteString("| apply | resources | wall s | ÷ terraform_data | Terraform + provider CPU s | provider peak RSS MiB |\n|---|--:|--:|--:|--:|--:|\n")
	fmt.Fprintf(&b, "| terraform_data | %d | %s | 1.00 | %s | – |\n", o.tfResources, report.F(dWall, 1), report.F(report.Median(cpus(data)), 2))
	fmt.Fprintf(&b, "| baremetal_machine | %d | %s | %s | %s | %s |\n", o.tfResources, report.F(mWall, 1), report.F(report.Ratio(mWall, dWall), 2), report.F(report.Median(cpus(machines)), 2), report.F(report.Median(rss), 0))
	fmt.Fprintf(&b, "| baremetal_machine, `-parallelism=%d` | %d | %s | %s | %s | %s |\n", o.tfResources, o.tfResources, report.F(wWall, 1), report.F(report.Ratio(wWall, dWall), 2), report.F(report.Median(cpus(wide)), 2), report.F(report.Median(wideRSS), 0))
	fmt.Fprintf(&b, "| baremetal_machine, `state = \"available\"` | %d | %s | %s | %s | %s |\n", o.tfResources, report.F(vWall, 1), report.F(report.Ratio(vWall, dWall), 2), report.F(report.Median(cpus(avail)), 2), report.F(report.Median(availRSS), 0))
	fmt.Fprintf(&b, "| API client, no Terraform | %d | %s | %s | – | – |\n", o.tfResources, report.F(aWall, 1), report.F(report.Ratio(aWall, dWall), 2))
	ratio := report.Ratio(mWall, dWall)
	fmt.Fprintf(&b, "\nTarget (issue 9): provider overhead at most 2× `terraform_data` at %d resources. Provisioning each machine: **%s** (%.2f×; %.2f× with `-parallelism=%d`). "+
		"A provisioning create returns only once its machine is installed, so its wall time holds the provisioning itself, which no Terraform resource can skip: "+
		"against the API client doing the same work, Terraform and the provider add %.2f× (%.2f× with `-parallelism=%d`). "+
		"Registering without installing (`state = \"available\"`), where the agent's share is small: **%s** (%.2f×).\n",
		o.tfResources, metMissed(ratio <= 2), ratio, report.Ratio(wWall, dWall), o.tfResources,
		report.Ratio(mWall, aWall), report.Ratio(wWall, aWall), o.tfResources,
		metMissed(report.Ratio(vWall, dWall) <= 2), report.Ratio(vWall, dWall))
	return b.String(), nil
}

func cpus(rs []tfResult) []float64 {
	var out []float64
	for _, r := range rs {
		out = append(out, secs(r.cpu))
	}
	return out
}

func walls(rs []tfResult) []float64 {
	var out []float64
	for _, r := range rs {
		out = append(out, secs(r.wall))
	}
	return out
}

// tfWorkspace writes a configuration and the machines file into a new
// directory, plus a CLI configuration that points openbaremetal/baremetal
// at providerDir.
func tfWorkspace(providerDir, config string, machines any) (dir string, env []string, err error) {
	dir, err = os.MkdirTemp("", "provbench-tf-")
	if err != nil {
		return "", nil, err
	}
	raw, err := json.Marshal(machines)
	if err != nil {
		return dir, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "machines.json"), raw, 0o600); err != nil {
		return dir, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(tfLocals+config), 0o600); err != nil {
		return dir, nil, err
	}
	rc := filepath.Join(dir, "terraformrc")
	rcText := fmt.Sprintf("provider_installation {\n  dev_overrides {\n    \"openbaremetal/baremetal\" = %q\n  }\n  direct {}\n}\n", providerDir)
	if err := os.WriteFile(rc, []byte(rcText), 0o600); err != nil {
		return dir, nil, err
	}
	env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1", "TF_LOG=")
	return dir, env, nil
}

type tfMachine struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"`
	Username string `json:"username"`
	Password string `json:"password"`
	MAC      string `json:"mac"`
}

func tfApplyData(o options, providerDir string) (tfResult, error) {
	ms := make([]tfMachine, o.tfResources)
	for i := range ms {
		ms[i] = tfMachine{Name: fmt.Sprintf("m-%d", i+1), Endpoint: fmt.Sprintf("http://127.0.0.1:1/redfish/v1/Systems/m-%d", i+1), MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", (i+1)>>8, (i+1)&0xff)}
	}
	dir, env, err := tfWorkspace(providerDir, tfData, ms)
	defer removeAll(dir)
	if err != nil {
		return tfResult{}, err
	}
	return tfApply(o, dir, env)
}

func tfApplyMachines(o options, providerDir, state string, applyArgs ...string) (tfResult, error) {
	f, err := startFleet(o.agentBin, fleetConfig{machines: o.tfResources, provLimit: o.provLimit, bmcMax: o.bmcMax})
	if err != nil {
		return tfResult{}, err
	}
	defer f.stop()
	ms := make([]tfMachine, len(f.inventory))
	for i, e := range f.inventory {
		ms[i] = tfMachine{Name: e.Name, Endpoint: e.Endpoint, Username: e.Username, Password: e.Password, MAC: e.MAC}
	}
	dir, env, err := tfWorkspace(providerDir, fmt.Sprintf(tfMachines, f.endpoint, f.token, strings.TrimSpace(f.caPEM), state), ms)
	defer removeAll(dir)
	if err != nil {
		return tfResult{}, err
	}
	r, err := tfApply(o, dir, env, applyArgs...)
	if err != nil {
		return r, err
	}
	return r, f.alive()
}

// tfApply runs terraform apply in dir while sampling the peak RSS of the
// provider processes it starts. No `terraform init`: dev_overrides and the
// built-in terraform_data need none, so both applies skip the same step.
func tfApply(o options, dir string, env []string, extra ...string) (tfResult, error) {
	cmd := exec.Command(o.terraformBin, append([]string{"apply", "-auto-approve", "-input=false", "-no-color"}, extra...)...)
	cmd.Dir = dir
	cmd.Env = env
	logFile, err := os.Create(filepath.Join(dir, "apply.log"))
	if err != nil {
		return tfResult{}, err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	var r tfResult
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		seen := map[int]bool{}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, pid := range peers.Descendants(cmd.Process.Pid) {
				comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				if err != nil || !strings.HasPrefix(string(comm), "terraform-provi") {
					continue
				}
				seen[pid] = true
				if rss, err := peers.PeakRSS(pid); err == nil {
					r.providerRSS = max(r.providerRSS, rss)
				}
			}
			select {
			case <-stop:
				r.launches = len(seen)
				return
			case <-tick.C:
			}
		}
	}()
	err = cmd.Wait()
	r.wall = time.Since(start)
	if ps := cmd.ProcessState; ps != nil {
		r.cpu = ps.UserTime() + ps.SystemTime()
	}
	close(stop)
	wg.Wait()
	if err != nil {
		out, _ := os.ReadFile(logFile.Name())
		if len(out) > 4000 {
			out = out[len(out)-4000:]
		}
		return r, fmt.Errorf("terraform apply: %v\n%s", err, out)
	}
	return r, nil
}
