package provider

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
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
)

// TestAccClusterModuleKeepsPasswordsOut (D6): the registry module, used the
// way its README shows, takes the BMC passwords as an ephemeral variable.
// Real terraform plans to a saved plan file, applies it and destroys; the
// passwords reach the BMCs (the machines install) and appear in no plan
// file, no plan JSON and no state.
//
// terraform-plugin-testing installs providers but not modules, so this test
// drives the terraform CLI itself with the provider as a dev override.
func TestAccClusterModuleKeepsPasswordsOut(t *testing.T) {
	a := testAgent(t)
	f := recoveryLab(t, a)
	cp, wk := f.machine(t, 23), f.machine(t, 24)
	passwords := map[string]lab.InventoryEntry{"rec-mod-cp": cp, "rec-mod-wk": wk}

	dir := t.TempDir()
	copyTree(t, filepath.Join("..", "examples", "modules", "cluster"), filepath.Join(dir, "modules", "cluster"))
	root := filepath.Join(dir, "root")
	require.NoError(t, os.MkdirAll(root, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "main.tf"), []byte(moduleRootConfig(a, cp, wk)), 0o644))

	tf := newTerraformCLI(t, a, root)
	pwJSON, err := json.Marshal(map[string]string{"rec-mod-cp": cp.Password, "rec-mod-wk": wk.Password})
	require.NoError(t, err)
	tf.env = append(tf.env, "TF_VAR_bmc_passwords="+string(pwJSON))
	t.Cleanup(func() {
		// A failed test still removes the machines from the shared agent.
		if _, err := os.Stat(filepath.Join(root, "terraform.tfstate")); err == nil {
			tf.run("destroy", "-auto-approve", "-input=false")
		}
	})

	tf.mustRun("get")
	tf.mustRun("plan", "-input=false", "-out=tfplan")
	planFile, err := os.ReadFile(filepath.Join(root, "tfplan"))
	require.NoError(t, err)
	assertNoPassword(t, "the saved plan file", zipContents(t, planFile), passwords)
	assertNoPassword(t, "terraform show -json tfplan", tf.mustRun("show", "-json", "tfplan"), passwords)

	// The ephemeral variable is given again at apply (TF_VAR_), as Terraform
	// requires for a saved plan.
	tf.mustRun("apply", "-input=false", "tfplan")
	for name := range passwords {
		m, err := a.client.GetMachine(testCtx(t), name)
		require.NoError(t, err)
		require.Equal(t, api.PhaseProvisioned, m.Phase, "machine %s (last_error %q)", name, m.LastError)
		require.Equal(t, api.BMCStatusOK, m.BMCStatus, "machine %s: the BMC must have accepted the password", name)
	}
	state, err := os.ReadFile(filepath.Join(root, "terraform.tfstate"))
	require.NoError(t, err)
	assertNoPassword(t, "the state file", state, passwords)
	assertNoPassword(t, "terraform show -json", tf.mustRun("show", "-json"), passwords)

	// Nothing left to do: the module's plan is empty with the same inputs.
	out := tf.mustRun("plan", "-input=false", "-detailed-exitcode")
	require.Contains(t, string(out), "No changes")

	tf.mustRun("destroy", "-auto-approve", "-input=false")
	for name := range passwords {
		_, err := a.client.GetMachine(testCtx(t), name)
		require.ErrorIs(t, err, client.ErrNotFound, "machine %s after destroy", name)
	}
}

func moduleRootConfig(a *accAgent, cp, wk lab.InventoryEntry) string {
	return fmt.Sprintf(`
terraform {
  required_providers {
    baremetal = {
      source = "openbaremetal/baremetal"
    }
  }
}

variable "bmc_passwords" {
  type      = map(string)
  sensitive = true
  ephemeral = true
}

module "cluster" {
  source = "../modules/cluster"

  name = "rec-mod"
  nodes = {
    rec-mod-cp = { role = "control-plane", bmc_endpoint = %[2]q, bmc_username = %[3]q }
    rec-mod-wk = { role = "worker", bmc_endpoint = %[4]q, bmc_username = %[5]q }
  }
  bmc_passwords = var.bmc_passwords
  roles = [
    for role in ["control-plane", "worker"] : {
      name      = role
      kernel    = "%[1]s/vmlinuz"
      initrds   = ["%[1]s/initrd.img"]
      cmdline   = "console=ttyS0 baremetal.templates=user-data"
      templates = { user-data = "#cloud-config\nhostname: {{ .Machine.Name }}\n" }
    }
  ]
  timeouts = "5m"
}
`, a.assets.URL, cp.Endpoint, cp.Username, wk.Endpoint, wk.Username)
}

// terraformCLI runs the real terraform in one working directory, against the
// shared agent, with the provider under test as a dev override.
type terraformCLI struct {
	t   *testing.T
	dir string
	env []string
}

func newTerraformCLI(t *testing.T, a *accAgent, dir string) *terraformCLI {
	t.Helper()
	bin := os.Getenv("BAREMETAL_PROVIDER_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "terraform-provider-baremetal")
		build := exec.Command("go", "build", "-o", bin, ".")
		build.Dir = ".."
		out, err := build.CombinedOutput()
		require.NoError(t, err, "go build of the provider: %s", out)
	}
	rc := filepath.Join(t.TempDir(), "terraformrc")
	require.NoError(t, os.WriteFile(rc, []byte(fmt.Sprintf(
		"provider_installation {\n  dev_overrides {\n    \"openbaremetal/baremetal\" = %q\n  }\n  direct {}\n}\n", filepath.Dir(bin))), 0o600))
	env := append(os.Environ(), "TF_CLI_CONFIG_FILE="+rc, "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1",
		"BAREMETAL_ENDPOINT="+a.endpoint, "BAREMETAL_TOKEN="+a.token)
	if a.caPEM != "" {
		env = append(env, "BAREMETAL_CA_CERT_PEM="+a.caPEM)
	} else {
		env = append(env, "BAREMETAL_INSECURE=true")
	}
	return &terraformCLI{t: t, dir: dir, env: env}
}

// run returns terraform's combined output and exit code.
func (c *terraformCLI) run(args ...string) ([]byte, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if args[0] != "get" {
		args = append([]string{args[0], "-no-color"}, args[1:]...)
	}
	cmd := exec.CommandContext(ctx, "terraform", args...)
	cmd.Dir, cmd.Env = c.dir, c.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run()
	return out.Bytes(), cmd.ProcessState.ExitCode()
}

func (c *terraformCLI) mustRun(args ...string) []byte {
	c.t.Helper()
	out, code := c.run(args...)
	require.Zero(c.t, code, "terraform %s:\n%s", strings.Join(args, " "), out)
	return out
}

// assertNoPassword fails when any lab machine's BMC password occurs in what.
func assertNoPassword(t *testing.T, where string, what []byte, machines map[string]lab.InventoryEntry) {
	t.Helper()
	for name, m := range machines {
		require.NotEmpty(t, m.Password)
		require.False(t, bytes.Contains(what, []byte(m.Password)), "%s holds the BMC password of %s", where, name)
	}
}

// zipContents concatenates every file of a zip archive (a saved plan).
func zipContents(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	var all bytes.Buffer
	for _, f := range zr.File {
		rc, err := f.Open()
		require.NoError(t, err)
		_, err = io.Copy(&all, rc)
		rc.Close()
		require.NoError(t, err)
	}
	require.NotZero(t, all.Len())
	return all.Bytes()
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	require.NoError(t, err)
}
