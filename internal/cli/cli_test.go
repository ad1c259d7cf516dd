package cli

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/testenv"
)

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal([]byte(s), &v), "output: %s", s)
	return v
}

func TestMachinesList(t *testing.T) {
	e := testEnv(t)
	e.profile(t, "list-p", bootOK)
	e.machine(t, "list-a", "list-p", "available")
	e.waitPhase(t, "list-a", "available")

	r := e.run(t, "machines", "list")
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^NAME\s+PHASE\s+STEP\s+POWER`, r.stdout)
	assert.Regexp(t, `(?m)^list-a\s+available\s+`, r.stdout)

	r = e.run(t, "machines", "list", "-o", "json", "--state", "available")
	require.Equal(t, ExitOK, r.code, r.stderr)
	names := []string{}
	for _, m := range decode[api.MachineList](t, r.stdout).Items {
		names = append(names, m.Name)
		assert.Equal(t, api.StateAvailable, m.State, "the --state filter reaches the agent")
	}
	assert.Contains(t, names, "list-a")

	r = e.run(t, "machines", "list", "--cluster", "no-such-cluster", "-o", "json")
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Empty(t, decode[api.MachineList](t, r.stdout).Items)
}

func TestMachinesShow(t *testing.T) {
	e := testEnv(t)
	e.profile(t, "show-p", bootOK)
	e.machine(t, "show-a", "show-p", "available")
	e.waitPhase(t, "show-a", "available")

	r := e.run(t, "machines", "show", "show-a")
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^Name:\s+show-a$`, r.stdout)
	assert.Regexp(t, `(?m)^Boot profile:\s+show-p$`, r.stdout)
	assert.NotContains(t, r.stdout, e.inv["lab-1"].Password, "no BMC password is ever shown")

	// Flags may follow the name.
	r = e.run(t, "machines", "show", "show-a", "-o", "json")
	require.Equal(t, ExitOK, r.code, r.stderr)
	m := decode[api.Machine](t, r.stdout)
	assert.Equal(t, "show-a", m.Name)
	assert.Equal(t, api.PhaseAvailable, m.Phase)

	r = e.run(t, "machines", "show", "no-such-machine")
	assert.Equal(t, ExitNotFound, r.code)
	assert.Contains(t, r.stderr, "not found")
}

func TestMachinesEvents(t *testing.T) {
	e := testEnv(t)
	e.profile(t, "events-p", bootOK)
	e.machine(t, "events-a", "events-p", "available")
	e.waitPhase(t, "events-a", "available")

	r := e.run(t, "machines", "events", "events-a")
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^SEQ\s+TIME\s+TYPE`, r.stdout)
	assert.Contains(t, r.stdout, api.EventPhaseChanged)

	r = e.run(t, "machines", "events", "events-a", "-o", "json", "--limit", "1")
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Len(t, decode[[]api.Event](t, r.stdout), 1)

	t.Run("follow", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out testenv.Log
		done := make(chan int, 1)
		go func() {
			done <- Run(ctx, []string{"machines", "events", "events-a", "--follow", "-o", "json"}, e.env(), &out, &out)
		}()
		// Once the history is out, an action's event must arrive live.
		require.Eventually(t, func() bool { return strings.Contains(out.String(), api.EventPhaseChanged) }, 30*time.Second, 20*time.Millisecond)
		_, err := e.client.MachineAction(context.Background(), "events-a", api.ActionPowerOff)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return strings.Contains(out.String(), "operator action power_off") }, 60*time.Second, 20*time.Millisecond)
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			decode[api.Event](t, line) // a stream of JSON lines
		}
		cancel()
		select {
		case code := <-done:
			assert.Equal(t, ExitOK, code, "interrupting --follow is the normal way out")
		case <-time.After(30 * time.Second):
			t.Fatal("--follow did not stop when interrupted")
		}
	})

	t.Run("follow ends when the machine is deleted", func(t *testing.T) {
		e.machine(t, "events-b", "events-p", "available")
		var out testenv.Log
		done := make(chan int, 1)
		go func() {
			done <- Run(context.Background(), []string{"machines", "events", "events-b", "-f"}, e.env(), &out, &out)
		}()
		require.Eventually(t, func() bool { return strings.Contains(out.String(), "SEQ") }, 30*time.Second, 20*time.Millisecond)
		require.NoError(t, e.client.DeleteMachine(context.Background(), "events-b", true))
		select {
		case code := <-done:
			assert.Equal(t, ExitOK, code)
			assert.Contains(t, out.String(), "machine events-b is gone")
		case <-time.After(90 * time.Second):
			t.Fatal("--follow did not end after the machine was deleted")
		}
	})
}

func TestProvisionAndReprovision(t *testing.T) {
	e := testEnv(t)
	e.profile(t, "prov-p", bootOK)
	e.machine(t, "prov-a", "prov-p", "available")
	e.waitPhase(t, "prov-a", "available")

	r := e.run(t, "provision", "prov-a", "--wait", "--timeout", "90s")
	require.Equal(t, ExitOK, r.code, r.stderr+e.logs())
	assert.Contains(t, r.stdout, "prov-a: machine provisioned")
	first := e.waitPhase(t, "prov-a", "provisioned")

	// A second provision would wipe an installed machine: refused.
	r = e.run(t, "provision", "prov-a")
	assert.Equal(t, ExitRejected, r.code)
	assert.Contains(t, r.stderr, "use reprovision")

	r = e.run(t, "reprovision", "prov-a", "--wait", "-o", "json", "--timeout", "90s")
	require.Equal(t, ExitOK, r.code, r.stderr)
	m := decode[api.Machine](t, r.stdout)
	assert.Equal(t, api.PhaseProvisioned, m.Phase)
	assert.True(t, m.ProvisionedAt.After(first.ProvisionedAt), "a new run installed it again")

	t.Run("a failed install exits 7", func(t *testing.T) {
		e.profile(t, "prov-failing", bootFailing)
		e.machine(t, "prov-b", "prov-failing", "available")
		e.waitPhase(t, "prov-b", "available")
		r := e.run(t, "provision", "prov-b", "--wait", "--timeout", "90s")
		assert.Equal(t, ExitFailed, r.code, r.stdout+r.stderr)
		assert.Contains(t, r.stderr, "machine prov-b failed")
	})

	t.Run("--timeout while waiting exits 8", func(t *testing.T) {
		e.profile(t, "prov-stuck", bootStuck)
		e.machine(t, "prov-c", "prov-stuck", "available")
		e.waitPhase(t, "prov-c", "available")
		r := e.run(t, "provision", "prov-c", "--wait", "--timeout", "2s")
		assert.Equal(t, ExitPending, r.code, r.stdout+r.stderr)
	})
}

func TestPowerAndReboot(t *testing.T) {
	e := testEnv(t)
	e.profile(t, "power-p", bootOK)
	e.machine(t, "power-a", "power-p", "available")
	e.waitPhase(t, "power-a", "available")

	for _, tc := range []struct {
		args      []string
		power     string
		said      string
		bmcAction string // the power action the agent recorded last
	}{
		{[]string{"power", "off", "power-a"}, "Off", "powered off", "GracefulShutdown"},
		{[]string{"power", "on", "power-a"}, "On", "powered on", "On"},
		{[]string{"power", "cycle", "power-a"}, "On", "power cycled", "On"},
		{[]string{"reboot", "power-a"}, "On", "reset", "ForceRestart"},
	} {
		t.Run(strings.Join(tc.args[:len(tc.args)-1], " "), func(t *testing.T) {
			before, err := e.client.MachineEvents(context.Background(), "power-a", 0, api.MaxEventLimit)
			require.NoError(t, err)
			r := e.run(t, tc.args...)
			require.Equal(t, ExitOK, r.code, r.stderr)
			assert.Contains(t, r.stdout, "power-a: "+tc.said)
			m, err := e.client.GetMachine(context.Background(), "power-a")
			require.NoError(t, err)
			assert.Equal(t, tc.power, m.PowerState)
			evs, err := e.client.MachineEvents(context.Background(), "power-a", before.Next, api.MaxEventLimit)
			require.NoError(t, err)
			var actions []string
			for _, ev := range evs.Events {
				if ev.Type == api.EventPowerAction {
					actions = append(actions, ev.Data["action"])
				}
			}
			require.NotEmpty(t, actions)
			assert.Equal(t, tc.bmcAction, actions[len(actions)-1])
			if tc.said == "power cycled" {
				assert.Equal(t, []string{"GracefulShutdown", "On"}, actions, "a cycle is an off, then an on")
			}
		})
	}

	t.Run("a machine mid-install refuses power actions", func(t *testing.T) {
		e.profile(t, "power-stuck", bootStuck)
		e.machine(t, "power-b", "power-stuck", "provisioned")
		e.waitPhase(t, "power-b", "provisioning")
		r := e.run(t, "power", "off", "power-b")
		assert.Equal(t, ExitRejected, r.code, r.stdout+r.stderr)
	})
}

func TestDelete(t *testing.T) {
	e := testEnv(t)
	e.profile(t, "del-p", bootOK)

	t.Run("asks the agent and waits until it is gone", func(t *testing.T) {
		e.machine(t, "del-a", "del-p", "available")
		e.waitPhase(t, "del-a", "available")
		r := e.run(t, "delete", "del-a", "--wait", "--timeout", "60s")
		require.Equal(t, ExitOK, r.code, r.stderr)
		assert.Equal(t, "del-a: deleted\n", r.stdout)
		_, err := e.client.GetMachine(context.Background(), "del-a")
		assert.ErrorIs(t, err, client.ErrNotFound)
	})

	t.Run("--force frees a machine whose BMC is gone", func(t *testing.T) {
		// A BMC nobody answers at: an ordinary delete would wait on the
		// power-off forever; --force is the way out.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		dead := "http://" + ln.Addr().String() + "/redfish/v1/Systems/1"
		require.NoError(t, ln.Close())
		_, err = e.client.CreateMachine(context.Background(), api.MachineRequest{
			Name: "del-b", BMC: api.BMCRequest{Endpoint: dead, Username: "u", Password: "p"}, State: "available",
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = e.client.DeleteMachine(context.Background(), "del-b", true) })

		r := e.run(t, "delete", "del-b")
		require.Equal(t, ExitOK, r.code, r.stderr)
		assert.Equal(t, "del-b: deletion requested\n", r.stdout)
		_, err = e.client.GetMachine(context.Background(), "del-b")
		require.NoError(t, err, "without --force the machine waits for its power-off")

		r = e.run(t, "delete", "del-b", "--force", "-o", "json")
		require.Equal(t, ExitOK, r.code, r.stderr)
		assert.Equal(t, map[string]any{"name": "del-b", "deleted": true, "force": true}, decode[map[string]any](t, r.stdout))
		_, err = e.client.GetMachine(context.Background(), "del-b")
		assert.ErrorIs(t, err, client.ErrNotFound, "--force removes it at once")
	})

	t.Run("a missing machine exits 3", func(t *testing.T) {
		r := e.run(t, "delete", "no-such-machine", "--force")
		assert.Equal(t, ExitNotFound, r.code)
	})
}

func TestProfilesAndTemplates(t *testing.T) {
	e := testEnv(t)
	p := e.profile(t, "tpl-p", bootOK)

	r := e.run(t, "profiles", "list")
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^tpl-p\s+1\s+http://\S+/vmlinuz\s+user-data\s`, r.stdout)

	r = e.run(t, "profiles", "show", "tpl-p", "-o", "json")
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Equal(t, p.Kernel, decode[api.BootProfile](t, r.stdout).Kernel)

	r = e.run(t, "profiles", "show", "tpl-p")
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^Templates:\s+user-data$`, r.stdout)

	r = e.run(t, "templates", "list", "tpl-p")
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^tpl-p\s+user-data\s+\d+\s+/machines/\{id\}/templates/user-data$`, r.stdout)

	r = e.run(t, "templates", "show", "tpl-p", "user-data")
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Equal(t, p.Templates["user-data"], r.stdout, "the source as stored, ready to redirect into a file")

	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"unknown profile", []string{"profiles", "show", "nope"}, ExitNotFound},
		{"templates of an unknown profile", []string{"templates", "list", "nope"}, ExitNotFound},
		{"unknown template", []string{"templates", "show", "tpl-p", "nope"}, ExitNotFound},
		{"unknown snippet", []string{"templates", "show", "nope"}, ExitNotFound},
		{"too many arguments", []string{"templates", "show", "tpl-p", "user-data", "more"}, ExitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.code, e.run(t, tc.args...).code)
		})
	}
}

// TestSnippets: templates list and show without a profile are about the
// site's snippets (/v1/templates), and a profile's listing names the
// snippets it includes.
func TestSnippets(t *testing.T) {
	e := testEnv(t)
	ctx := context.Background()
	content := "# site NTP\ntimesource --ntp-server={{ ksQuote .Params.ntp }}"
	_, err := e.client.CreateTemplate(ctx, api.TemplateRequest{Name: "site-ntp", Content: content, Description: "the site's NTP servers"})
	require.NoError(t, err)
	_, err = e.client.CreateBootProfile(ctx, api.BootProfileRequest{Name: "snip-p", Kernel: e.assets.URL + "/vmlinuz",
		Templates: map[string]string{"kickstart": "text\n{{ template \"site-ntp\" . }}\n"}})
	require.NoError(t, err)

	r := e.run(t, "templates", "list")
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^SNIPPET\s+VERSION\s+USED BY\s+DESCRIPTION\s+UPDATED$`, r.stdout)
	assert.Regexp(t, `(?m)^site-ntp\s+1\s+snip-p\s+the site's NTP servers\s+\d{4}-`, r.stdout)

	r = e.run(t, "templates", "list", "-o", "json")
	require.Equal(t, ExitOK, r.code, r.stderr)
	list := decode[api.TemplateList](t, r.stdout)
	require.Len(t, list.Items, 1)
	assert.Equal(t, []string{"snip-p"}, list.Items[0].UsedBy)

	r = e.run(t, "templates", "show", "site-ntp")
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Equal(t, content+"\n", r.stdout, "the source as stored, ready to redirect into a file")

	r = e.run(t, "templates", "show", "site-ntp", "-o", "json")
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Equal(t, content, decode[api.Template](t, r.stdout).Content)

	r = e.run(t, "templates", "list", "snip-p")
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^snip-p\s+kickstart\s+\d+\s+/machines/\{id\}/templates/kickstart$`, r.stdout)
	assert.Contains(t, r.stdout, "Snippets included: site-ntp\n")
}

// cluster makes a cluster of two freshly registered machines, one per role.
func (e *agentEnv) cluster(t *testing.T, name, profile string) {
	t.Helper()
	e.machine(t, name+"-cp", "", "provisioned")
	e.machine(t, name+"-w", "", "provisioned")
	_, err := e.client.CreateCluster(context.Background(), api.ClusterRequest{
		Name:    name,
		Members: []api.ClusterMember{{Machine: name + "-cp", Role: "control-plane"}, {Machine: name + "-w", Role: "worker"}},
		Roles:   []api.ClusterRole{{Name: "control-plane", BootProfile: profile}, {Name: "worker", BootProfile: profile}},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.client.DeleteCluster(context.Background(), name) })
}

func TestClustersAndRollout(t *testing.T) {
	e := testEnv(t)
	e.profile(t, "ro-p", bootOK)
	e.cluster(t, "ro", "ro-p")

	t.Run("rollout status --watch follows the cluster until ready", func(t *testing.T) {
		r := e.run(t, "rollout", "status", "ro", "--watch", "--interval", "200ms", "--timeout", "120s")
		require.Equal(t, ExitOK, r.code, r.stdout+r.stderr+e.logs())
		frames := strings.Split(strings.TrimSpace(r.stdout), "\n\n")
		last := frames[len(frames)-1]
		assert.Regexp(t, `^cluster ro: ready \[#{20}\] 2/2 ready`, last)
		assert.Regexp(t, `(?m)^ro-cp\s+control-plane\s+provisioned\s+-\s+yes`, last)
		if len(frames) > 1 {
			assert.NotRegexp(t, `: ready `, frames[0], "earlier frames show the rollout in progress")
		}
	})

	t.Run("rollout status of a ready cluster exits 0 at once", func(t *testing.T) {
		r := e.run(t, "rollout", "status", "ro", "-o", "json")
		require.Equal(t, ExitOK, r.code, r.stderr)
		ro := decode[rollout](t, r.stdout)
		assert.True(t, ro.Done)
		assert.Equal(t, 2, ro.Ready)
	})

	t.Run("rollout status of a profile counts the machines installed with it", func(t *testing.T) {
		r := e.run(t, "rollout", "status", "ro-p", "-o", "json")
		require.Equal(t, ExitOK, r.code, r.stderr)
		ro := decode[rollout](t, r.stdout)
		assert.Equal(t, "boot_profile", ro.Kind)
		assert.Equal(t, 2, ro.Total, "members use it through their roles")
		assert.True(t, ro.Done)
	})

	t.Run("clusters list and show", func(t *testing.T) {
		r := e.run(t, "clusters", "list")
		require.Equal(t, ExitOK, r.code, r.stderr)
		assert.Regexp(t, `(?m)^ro\s+ready\s+2\s+2\s+control-plane,worker\s`, r.stdout)
		r = e.run(t, "clusters", "show", "ro")
		require.Equal(t, ExitOK, r.code, r.stderr)
		assert.Regexp(t, `(?m)^Role control-plane:\s+boot profile ro-p, endpoints 10\.77\.`, r.stdout)
		assert.Regexp(t, `(?m)^ro-w\s+worker\s+provisioned\s+10\.77\.`, r.stdout)
		r = e.run(t, "clusters", "show", "ro", "-o", "json")
		require.Equal(t, ExitOK, r.code, r.stderr)
		assert.Equal(t, api.ClusterReady, decode[api.Cluster](t, r.stdout).Phase)
		assert.Equal(t, ExitNotFound, e.run(t, "clusters", "show", "nope").code)
	})

	t.Run("an unfinished rollout exits 8", func(t *testing.T) {
		e.profile(t, "ro-stuck", bootStuck)
		e.cluster(t, "ro-s", "ro-stuck")
		r := e.run(t, "rollout", "status", "ro-s")
		assert.Equal(t, ExitPending, r.code, r.stdout+r.stderr)
		assert.Regexp(t, `^cluster ro-s: (pending|converging) \[\.{20}\] 0/2 ready`, r.stdout)
		r = e.run(t, "rollout", "status", "ro-s", "--watch", "--interval", "100ms", "--timeout", "1s")
		assert.Equal(t, ExitPending, r.code, r.stdout+r.stderr)
		assert.Contains(t, r.stderr, "still converging when the watch ended")
	})

	t.Run("a failed member stops the watch with exit 7", func(t *testing.T) {
		e.profile(t, "ro-failing", bootFailing)
		e.cluster(t, "ro-f", "ro-failing")
		r := e.run(t, "rollout", "status", "ro-f", "-w", "--interval", "200ms", "--timeout", "120s", "-o", "json")
		require.Equal(t, ExitFailed, r.code, r.stdout+r.stderr)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		ro := decode[rollout](t, lines[len(lines)-1])
		assert.True(t, ro.Failed)
		assert.Equal(t, "paused", ro.Phase)
	})

	t.Run("neither a cluster nor a profile exits 3", func(t *testing.T) {
		r := e.run(t, "rollout", "status", "nothing-by-that-name")
		assert.Equal(t, ExitNotFound, r.code)
		assert.Contains(t, r.stderr, "no cluster or boot profile")
	})
}

// TestConfigAndExitCodes covers how the CLI finds and authenticates to the
// agent, and what it exits with when it cannot.
func TestConfigAndExitCodes(t *testing.T) {
	e := testEnv(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "tokens")
	// The agent's own token file format: comments, a read-only marker.
	require.NoError(t, os.WriteFile(tokenFile, []byte("# site tokens\n\n"+e.token+"\n"), 0o600))
	roFile := filepath.Join(dir, "ro")
	require.NoError(t, os.WriteFile(roFile, []byte("readonly:"+e.roToken+"\n"), 0o600))
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, []byte(e.caPEM), 0o600))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "https://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	e.profile(t, "cfg-p", bootOK)
	e.machine(t, "cfg-a", "cfg-p", "available")

	none := func(string) string { return "" }
	for _, tc := range []struct {
		name   string
		env    Env
		args   []string
		code   int
		stderr string
	}{
		{"flags alone, before the command", none, []string{"--endpoint", e.endpoint, "--token-file", tokenFile, "--ca-cert", caFile, "profiles", "list"}, ExitOK, ""},
		{"flags after the command", none, []string{"profiles", "list", "--endpoint", e.endpoint, "--token-file", tokenFile, "--ca-cert", caFile}, ExitOK, ""},
		{"a read-only token reads", none, []string{"machines", "show", "cfg-a", "--endpoint", e.endpoint, "--token-file", roFile, "--ca-cert", caFile}, ExitOK, ""},
		{"a read-only token cannot write", none, []string{"power", "on", "cfg-a", "--endpoint", e.endpoint, "--token-file", roFile, "--ca-cert", caFile}, ExitAuth, "read-only"},
		{"wrong token", e.env(EnvToken, "not-the-token"), []string{"profiles", "list"}, ExitAuth, "check the API token"},
		{"no endpoint", none, []string{"profiles", "list"}, ExitUsage, EnvEndpoint},
		{"no token", e.env(EnvToken, ""), []string{"profiles", "list"}, ExitUsage, EnvToken},
		{"untrusted certificate", e.env(EnvCACertPEM, ""), []string{"profiles", "list"}, ExitUnavailable, "certificate"},
		{"--insecure skips verification", e.env(EnvCACertPEM, ""), []string{"profiles", "list", "--insecure"}, ExitOK, ""},
		{"agent down", e.env(EnvEndpoint, closed), []string{"profiles", "list"}, ExitUnavailable, "reachable"},
		{"unknown command", e.env(), []string{"frobnicate"}, ExitUsage, "unknown command"},
		{"missing argument", e.env(), []string{"machines", "show"}, ExitUsage, "usage: baremetalctl machines show NAME"},
		{"bad output format", e.env(), []string{"profiles", "list", "-o", "yaml"}, ExitUsage, "table or json"},
		{"unknown flag", e.env(), []string{"profiles", "list", "--bogus"}, ExitUsage, "bogus"},
		{"missing token file", e.env(), []string{"profiles", "list", "--token-file", filepath.Join(dir, "nope")}, ExitUsage, "--token-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.runCtx(t, context.Background(), tc.env, tc.args...)
			assert.Equal(t, tc.code, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
			assert.Contains(t, r.stderr, tc.stderr)
		})
	}

	t.Run("help", func(t *testing.T) {
		r := e.runCtx(t, context.Background(), none, "help")
		assert.Equal(t, ExitOK, r.code)
		assert.Contains(t, r.stdout, "rollout status CLUSTER|PROFILE")
		assert.Equal(t, ExitUsage, e.runCtx(t, context.Background(), none).code, "no command is a usage error")
	})
}

// TestSafe keeps agent-supplied text from driving the terminal.
func TestSafe(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"red \x1b[31mtext", "red  [31mtext"},
		{"two\nlines\r", "two lines "},
		{"sep\u2028x", "sep x"},
	} {
		assert.Equal(t, tc.want, safe(tc.in))
	}
}
