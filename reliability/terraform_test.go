package reliability

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// providerDir holds the provider binary built for the terraform CLI's
// dev_overrides (BAREMETAL_PROVIDER_BIN, or built from this tree).
func providerDir(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("BAREMETAL_PROVIDER_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Dir(abs)
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "terraform-provider-baremetal"), ".")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build (provider): %v\n%s", err, out)
	}
	return dir
}

// TestConcurrentTerraformApplies starts two `terraform apply` runs at the
// same moment, from two configurations that manage the same machine with
// different parameters. Exactly one may succeed; the other must fail with a
// conflict diagnostic that names the other run, and the machine's history
// must show one run and no interleaved power actions.
func TestConcurrentTerraformApplies(t *testing.T) {
	if _, err := exec.LookPath("terraform"); err != nil {
		t.Skip("needs the terraform CLI")
	}
	// Slow BMCs keep the winner inside its provisioning wait, holding the
	// machine's lease, for seconds: however the two terraform processes are
	// scheduled, the loser's create arrives while the lease is live (once
	// the winner is done it releases the lease, and a late create is told
	// the machine exists instead).
	s := newSite(t, siteOpts{machines: 1, labArgs: []string{"--latency", "700ms"}})
	provDir := providerDir(t)
	ctx := context.Background()
	s.profile("tf")
	lm := s.inventory[0]
	caPEM := s.agent.CAPEM
	rc := filepath.Join(s.dir, "terraformrc")
	if err := os.WriteFile(rc, []byte(fmt.Sprintf("provider_installation {\n  dev_overrides {\n    \"openbaremetal/baremetal\" = %q\n  }\n  direct {}\n}\n", provDir)), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1",
		"BAREMETAL_ENDPOINT=https://"+s.apiAddr, "BAREMETAL_TOKEN="+s.token, "BAREMETAL_CA_CERT_PEM="+caPEM,
		"TF_VAR_bmc_password="+lm.Password)
	config := func(note string) string {
		return fmt.Sprintf(`
terraform {
  required_providers {
    baremetal = { source = "openbaremetal/baremetal" }
  }
}
provider "baremetal" {}
variable "bmc_password" {
  type      = string
  sensitive = true
}
resource "baremetal_machine" "m" {
  name         = %q
  boot_profile = "tf"
  params       = { note = %q }
  bmc = {
    endpoint = %q
    username = %q
    password = var.bmc_password
  }
  timeouts {
    create = "2m"
  }
}
`, lm.Name, note, lm.Endpoint, lm.Username)
	}
	type result struct {
		dir  string
		code int
		out  string
	}
	results := make([]result, 2)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, name := range []string{"alpha", "beta"} {
		dir := filepath.Join(s.dir, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(config(name)), 0o644); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			cctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(cctx, "terraform", "apply", "-auto-approve", "-no-color", "-input=false")
			cmd.Dir, cmd.Env = dir, env
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			_ = cmd.Run()
			results[i] = result{dir: name, code: cmd.ProcessState.ExitCode(), out: out.String()}
		}()
	}
	close(start)
	wg.Wait()

	var won, lost []result
	for _, r := range results {
		if r.code == 0 {
			won = append(won, r)
		} else {
			lost = append(lost, r)
		}
	}
	if len(won) != 1 || len(lost) != 1 {
		for _, r := range results {
			t.Logf("--- %s: exit %d\n%s", r.dir, r.code, tail(r.out))
		}
		t.Fatalf("%d applies succeeded and %d failed; want exactly one of each", len(won), len(lost))
	}
	t.Logf("%s won; %s got:\n%s", won[0].dir, lost[0].dir, tail(lost[0].out))
	diag := lost[0].out
	if !strings.Contains(diag, "Error:") || !strings.Contains(diag, lm.Name) {
		t.Errorf("the losing run's diagnostic does not name the machine:\n%s", diag)
	}
	if !strings.Contains(diag, "terraform@") || !strings.Contains(diag, won[0].dir) {
		t.Errorf("the losing run's diagnostic does not name the run holding the machine (%s):\n%s", won[0].dir, diag)
	}
	if strings.Contains(diag, lm.Password) || strings.Contains(won[0].out, lm.Password) {
		t.Error("terraform output shows the BMC password")
	}

	m, err := s.client.GetMachine(ctx, lm.Name)
	if err != nil {
		t.Fatal(err)
	}
	if m.Phase != api.PhaseProvisioned || m.Params["note"] != won[0].dir {
		t.Errorf("machine %s/%s with note %q; want provisioned with the winner's %q", m.Phase, m.Step, m.Params["note"], won[0].dir)
	}
	var runs []string
	evs := s.events(ctx, lm.Name)
	for _, e := range evs {
		if e.Type == api.EventRunStarted {
			runs = append(runs, e.Data["run"])
		}
	}
	if len(runs) != 1 {
		t.Fatalf("%d runs started, want 1: %v", len(runs), runs)
	}
	for _, e := range evs {
		if e.Type == api.EventPowerAction && e.Data["run"] != "" && e.Data["run"] != runs[0] {
			t.Errorf("power action %s of run %s interleaved with run %s", e.Data["action"], e.Data["run"], runs[0])
		}
	}
}
