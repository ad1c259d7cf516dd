package boot

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// The validators check the documents' syntax, not the shell inside them. So
// each stock template's callback is run here the way its installer or OS
// runs it: by /bin/sh (dash, as on Debian and Ubuntu) with the real curl,
// against a stand-in agent, with stand-ins for the commands that only the
// target has (ip and hostname report fixed addresses; in-target and curtin
// run their command here).

var fakeCommands = map[string]string{
	"ip": `#!/bin/sh
case "$*" in
*-4*) echo '2: eth0    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic eth0\       valid_lft 86243sec preferred_lft 86243sec' ;;
*-6*) echo '2: eth0    inet6 fd00::15/64 scope global dynamic mngtmpaddr \       valid_lft 86243sec preferred_lft 14243sec' ;;
esac
`,
	"hostname":  "#!/bin/sh\nif [ \"$1\" = -I ]; then echo '10.0.2.15 fd00::15 '; else echo m1; fi\n",
	"in-target": "#!/bin/sh\nexec \"$@\"\n",
	"curtin":    "#!/bin/sh\n[ \"$1\" = in-target ] && shift\n[ \"$1\" = -- ] && shift\nexec \"$@\"\n",
}

// agentStandIn records the callbacks it gets and answers with status.
type agentStandIn struct {
	srv    *httptest.Server
	status atomic.Int32
	mu     sync.Mutex
	got    []map[string]any
	urls   []string
}

func newAgentStandIn(t *testing.T) *agentStandIn {
	a := &agentStandIn{}
	a.status.Store(http.StatusNoContent)
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var report map[string]any
		err := json.NewDecoder(r.Body).Decode(&report)
		a.mu.Lock()
		a.urls = append(a.urls, r.Method+" "+r.URL.String())
		if err == nil {
			a.got = append(a.got, report)
		} else {
			a.got = append(a.got, map[string]any{"undecodable": err.Error()})
		}
		a.mu.Unlock()
		w.WriteHeader(int(a.status.Load()))
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// callbackScript extracts the callback from a rendered template: a shell
// command line, or a script file (the OS-up scripts), with the paths the
// OS would hold moved into dir.
type callbackScript func(t *testing.T, doc, dir string) (cmdline string)

func kickstartPost(t *testing.T, doc, _ string) string {
	_, rest, ok := strings.Cut(doc, "%post --log=/root/baremetal-post.log\n")
	require.True(t, ok, "no %%post section")
	post, _, ok := strings.Cut(rest, "\n%end")
	require.True(t, ok)
	return post
}

func preseedLateCommand(t *testing.T, doc, _ string) string {
	for _, line := range strings.Split(doc, "\n") {
		if cmd, ok := strings.CutPrefix(line, "d-i preseed/late_command string "); ok {
			return cmd
		}
	}
	t.Fatal("no late_command")
	return ""
}

func autoinstallLateCommand(t *testing.T, doc, _ string) string {
	var ud struct {
		Autoinstall struct {
			LateCommands []string `yaml:"late-commands"`
		}
	}
	require.NoError(t, yaml.Unmarshal([]byte(doc), &ud))
	// The callback snippet comes last, after the post-install hook.
	require.NotEmpty(t, ud.Autoinstall.LateCommands)
	return ud.Autoinstall.LateCommands[len(ud.Autoinstall.LateCommands)-1]
}

func cloudInitOSUp(t *testing.T, doc, dir string) string {
	var ud struct {
		WriteFiles []struct{ Path, Content, Permissions string } `yaml:"write_files"`
		Runcmd     [][]string
	}
	require.NoError(t, yaml.Unmarshal([]byte(doc), &ud))
	require.Len(t, ud.WriteFiles, 1)
	require.Equal(t, [][]string{{"/bin/sh", ud.WriteFiles[0].Path}}, ud.Runcmd, "runcmd runs the written script")
	p := filepath.Join(dir, "os-up")
	require.NoError(t, os.WriteFile(p, []byte(ud.WriteFiles[0].Content), 0o700))
	return "/bin/sh " + p
}

func ignitionOSUp(t *testing.T, doc, dir string) string {
	var cfg struct {
		Storage struct {
			Files []struct {
				Path     string
				Contents struct{ Source string }
			}
		}
		Systemd struct {
			Units []struct{ Name, Contents string }
		}
	}
	require.NoError(t, json.Unmarshal([]byte(doc), &cfg))
	files := map[string]string{}
	for _, f := range cfg.Storage.Files {
		src := f.Contents.Source
		if b64, ok := strings.CutPrefix(src, "data:;base64,"); ok {
			b, err := base64.StdEncoding.DecodeString(b64)
			require.NoError(t, err)
			files[f.Path] = string(b)
		} else {
			plain, ok := strings.CutPrefix(src, "data:,")
			require.True(t, ok, "source %q", src)
			files[f.Path] = plain
		}
	}
	require.Contains(t, cfg.Systemd.Units[0].Contents, "ExecStart=/bin/sh /etc/baremetal/os-up\n")
	move := strings.NewReplacer("/etc/baremetal/", dir+"/", "/etc/hostname", dir+"/hostname", "/var/lib/baremetal", dir+"/state")
	for p, content := range files {
		require.NoError(t, os.WriteFile(move.Replace(p), []byte(move.Replace(content)), 0o700))
	}
	return "/bin/sh " + move.Replace("/etc/baremetal/os-up")
}

func runCallback(t *testing.T, cmdline string, env []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", cmdline)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	t.Logf("callback output:\n%s", out)
	return err
}

func TestStockCallbackScripts(t *testing.T) {
	for _, tool := range []string{"/bin/sh", "curl", "awk"} {
		if _, err := exec.LookPath(tool); err != nil {
			missingValidator(t, "%s, to run the templates' callbacks", tool)
		}
	}
	bin := t.TempDir()
	for name, text := range fakeCommands {
		require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte(text), 0o755))
	}
	env := append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	byName := map[string]stockCase{}
	for _, c := range stockCases {
		byName[c.name] = c
	}
	tests := []struct {
		name    string
		extract callbackScript
		stage   string // the report's stage: the OS-up callbacks name theirs
	}{
		{"kickstart", kickstartPost, ""},
		{"preseed", preseedLateCommand, ""},
		{"ubuntu-autoinstall", autoinstallLateCommand, ""},
		{"cloud-init-image", cloudInitOSUp, "os_up"},
		{"ignition/fedora-coreos", ignitionOSUp, "os_up"},
		{"ignition/flatcar-install", ignitionOSUp, "os_up"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent := newAgentStandIn(t)
			c := byName[tt.name]
			doc := renderStockWith(t, &Server{bootURL: agent.srv.URL}, c.template, c.params)
			cmdline := tt.extract(t, doc, t.TempDir())
			require.NoError(t, runCallback(t, cmdline, env, time.Minute))
			require.Equal(t, []string{"POST /machines/m1/callback?token=" + testToken}, agent.urls)
			want := map[string]any{"addresses": []any{"10.0.2.15", "fd00::15"}, "hostname": "m1", "status": "ok"}
			if tt.stage != "" {
				want["stage"] = tt.stage
			}
			assert.Equal(t, want, agent.got[0])
			if tt.stage == "" {
				return
			}
			// A refused report (the token was used or the run ended) is
			// final: the OS-up script stops at once instead of retrying
			// for ten minutes.
			agent.status.Store(http.StatusForbidden)
			start := time.Now()
			cmdline = tt.extract(t, doc, t.TempDir())
			assert.Error(t, runCallback(t, cmdline, env, time.Minute))
			assert.Less(t, time.Since(start), 30*time.Second)
			assert.Len(t, agent.urls, 2)
		})
	}
}

// nocloudScript is what cloud-init does with a ds=nocloud-net kernel
// argument, with cloud-init's own functions: parse the command line, then
// fetch meta-data and user-data from the seed URL.
const nocloudScript = `
import json, sys
from cloudinit import util
from cloudinit.sources.DataSourceNoCloud import load_cmdline_data
fill = {}
if not load_cmdline_data(fill, cmdline=sys.argv[1]):
    sys.exit("no NoCloud datasource on the command line")
md, ud, vd = util.read_seeded(fill["seedfrom"], timeout=10, retries=0)
print(json.dumps({"fill": fill, "md": md, "ud": ud.decode() if ud else None}))
`

// TestNoCloudCmdlineWithCloudInit: the ds=nocloud-net argument the
// ubuntu-autoinstall and cloud-init-image headers document, served in a
// real iPXE script by the agent, leads cloud-init to the machine's
// user-data and meta-data, with the run's token.
func TestNoCloudCmdlineWithCloudInit(t *testing.T) {
	_, env := cloudInitEnv(t)
	py := python(t)
	for _, tmpl := range []string{"ubuntu-autoinstall", "cloud-init-image"} {
		t.Run(tmpl, func(t *testing.T) {
			st := openTestStore(t)
			ts := httptest.NewUnstartedServer(nil)
			srv, err := New(Config{BootURL: "http://" + ts.Listener.Addr().String(), AssetsDir: t.TempDir(), TFTPRoot: t.TempDir(), Logger: quietLogger()},
				st, StoreSecrets(st), newRecordingLifecycle(st))
			require.NoError(t, err)
			ts.Config.Handler = srv.HTTPHandler()
			ts.Start()
			t.Cleanup(ts.Close)
			cmdlines := headerCmdlines(t, tmpl)
			require.NotEmpty(t, cmdlines)
			mustCreateProfile(t, st, &model.BootProfile{Name: "p1", Kernel: "casper/vmlinuz", Initrds: []string{"casper/initrd"},
				Cmdline: cmdlines[0], Params: map[string]string{"iso_url": "http://mirror.example/ubuntu.iso", "password_hash": sha512pw},
				Templates: map[string]string{"user-data": StockPrefix + tmpl, "meta-data": StockPrefix + "cloud-init-meta-data"}})
			mustCreateMachine(t, st, &model.Machine{Name: "m1", MACs: []string{"52:54:00:12:34:56"}, BootProfile: "p1", State: model.StateProvisioned,
				BMC: model.BMC{Endpoint: "http://127.0.0.1:1", Username: "u", Password: "p"}, Run: &model.Run{ID: "run-7", Token: testToken, Profile: "p1"}})

			resp, err := http.Get(ts.URL + "/boot/52-54-00-12-34-56")
			require.NoError(t, err)
			script, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			var kernel string
			for _, line := range strings.Split(string(script), "\n") {
				if k, ok := strings.CutPrefix(line, "kernel "); ok {
					kernel = strings.TrimSuffix(k, " ${bm-initrds}")
				}
			}
			require.NotEmpty(t, kernel, "no kernel line in:\n%s", script)

			cmd := exec.Command(py, "-c", nocloudScript, kernel)
			cmd.Env = env
			out, err := cmd.Output()
			require.NoError(t, err, "cloud-init on %q: %s", kernel, out)
			var got struct {
				Fill map[string]any
				MD   map[string]any
				UD   string
			}
			require.NoError(t, json.Unmarshal(out, &got), "%s", out)
			assert.Equal(t, "net", got.Fill["dsmode"])
			assert.Equal(t, map[string]any{"instance-id": "m1-run-7", "local-hostname": "m1"}, got.MD)
			assert.Equal(t, renderStockWith(t, srv, tmpl, map[string]string{"iso_url": "http://mirror.example/ubuntu.iso", "password_hash": sha512pw}), got.UD)
		})
	}
}

// etcdFakes stand in for what only the deployed OS has: etcdctl, which logs
// its arguments and fails its first $ETCD_FAILS calls (all of them when
// that is "always"), systemctl, which logs, and sleep, which returns at once
// so that the retries take no time.
var etcdFakes = map[string]string{
	"etcdctl": `#!/bin/sh
echo "$*" >>"$FAKE_LOG.etcdctl"
n=$(wc -l <"$FAKE_LOG.etcdctl")
if [ "$ETCD_FAILS" = always ] || [ "$n" -le "$ETCD_FAILS" ]; then
  echo 'Error: context deadline exceeded "dial tcp 10.0.2.15:2379"' >&2
  exit 1
fi
echo OK
`,
	"systemctl": "#!/bin/sh\necho \"$*\" >>\"$FAKE_LOG.systemctl\"\n",
	"sleep":     "#!/bin/sh\nexit 0\n",
}

// renderEtcdMember renders cloud-init-etcd for m1 as a member of role in a
// cluster whose control plane cp1 reported cpAddrs.
func renderEtcdMember(t *testing.T, bootURL, role string, cpAddrs []string) (string, error) {
	t.Helper()
	m := provisioningMachine(nil)
	m.Run.ID, m.Run.Token = "run-7", testToken
	m.Cluster, m.Role = "c1", role
	cluster := &model.Cluster{Name: "c1", Roles: []model.ClusterRole{{Name: "control-plane", BootProfile: "p1"}, {Name: "worker", BootProfile: "p1"}},
		Members: []model.ClusterMember{{Machine: "cp1", Role: "control-plane"}, {Machine: "m1", Role: role}}}
	if role == "control-plane" {
		cluster.Members = cluster.Members[1:]
	}
	members := map[string]*model.Machine{"cp1": {Name: "cp1", Status: model.Status{Addresses: cpAddrs}}, "m1": m}
	p := &model.BootProfile{Name: "p1", Kernel: "vmlinuz", Templates: map[string]string{"user-data": StockPrefix + "cloud-init-etcd"}}
	out, _, err := (&Server{bootURL: bootURL}).renderTemplate(renderInput{machine: m, profile: p, cluster: cluster, members: members, token: testToken}, "user-data")
	return out, err
}

// TestEtcdTemplateRegistersBeforeOSUp runs cloud-init-etcd's script as the
// deployed OS would: a worker registers in the control plane's etcd, by
// the address the control plane reported, and only then reports OS up; a
// registration that keeps failing reports the failure instead; the control
// plane configures and starts its own etcd and registers there.
func TestEtcdTemplateRegistersBeforeOSUp(t *testing.T) {
	for _, tool := range []string{"/bin/sh", "curl", "awk", "sed", "tr", "wc"} {
		if _, err := exec.LookPath(tool); err != nil {
			missingValidator(t, "%s, to run the template's script", tool)
		}
	}
	bin := t.TempDir()
	for name, text := range fakeCommands {
		require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte(text), 0o755))
	}
	for name, text := range etcdFakes {
		require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte(text), 0o755))
	}
	run := func(t *testing.T, doc, fails string) (logs string, err error) {
		dir := t.TempDir()
		logs = filepath.Join(dir, "log")
		doc = strings.ReplaceAll(doc, ">/etc/default/etcd", ">"+filepath.Join(dir, "etcd.env"))
		env := append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FAKE_LOG="+logs, "ETCD_FAILS="+fails)
		return logs, runCallback(t, cloudInitOSUp(t, doc, dir), env, time.Minute)
	}
	read := func(path string) string {
		b, _ := os.ReadFile(path)
		return string(b)
	}
	okReport := map[string]any{"addresses": []any{"10.0.2.15", "fd00::15"}, "hostname": "m1", "status": "ok", "stage": "os_up"}
	put := "--endpoints=%s --dial-timeout=5s --command-timeout=10s put /members/m1 10.0.2.15\n"

	t.Run("worker", func(t *testing.T) {
		agent := newAgentStandIn(t)
		doc, err := renderEtcdMember(t, agent.srv.URL, "worker", []string{"10.0.2.17"})
		require.NoError(t, err)
		// Two refusals while the control plane's etcd is not there yet,
		// then the put.
		logs, err := run(t, doc, "2")
		require.NoError(t, err)
		assert.Equal(t, strings.Repeat(fmt.Sprintf(put, "http://10.0.2.17:2379"), 3), read(logs+".etcdctl"))
		assert.Empty(t, read(logs+".systemctl"), "a worker starts no etcd")
		assert.Equal(t, []map[string]any{okReport}, agent.got)
	})

	t.Run("registration fails", func(t *testing.T) {
		agent := newAgentStandIn(t)
		doc, err := renderEtcdMember(t, agent.srv.URL, "worker", []string{"10.0.2.17"})
		require.NoError(t, err)
		logs, err := run(t, doc, "always")
		require.Error(t, err)
		assert.Equal(t, 120, strings.Count(read(logs+".etcdctl"), "put /members/m1"), "ten minutes of tries")
		require.Len(t, agent.got, 1, "one report, and not OS up")
		assert.Equal(t, map[string]any{"addresses": []any{"10.0.2.15", "fd00::15"}, "hostname": "m1", "status": "failed", "stage": "os_up",
			"log_tail": `etcd registration of m1 at http://10.0.2.17:2379 failed: Error: context deadline exceeded "dial tcp 10.0.2.15:2379"`}, agent.got[0])
	})

	t.Run("control plane", func(t *testing.T) {
		agent := newAgentStandIn(t)
		doc, err := renderEtcdMember(t, agent.srv.URL, "control-plane", nil)
		require.NoError(t, err)
		logs, err := run(t, doc, "1")
		require.NoError(t, err)
		assert.Equal(t, "ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379\nETCD_ADVERTISE_CLIENT_URLS=http://10.0.2.15:2379\n",
			read(filepath.Join(filepath.Dir(logs), "etcd.env")))
		assert.Equal(t, "enable etcd.service\nrestart --no-block etcd.service\n", read(logs+".systemctl"))
		assert.Equal(t, strings.Repeat(fmt.Sprintf(put, "http://127.0.0.1:2379"), 2), read(logs+".etcdctl"))
		assert.Equal(t, []map[string]any{okReport}, agent.got)
	})

	t.Run("control plane not up yet", func(t *testing.T) {
		_, err := renderEtcdMember(t, "http://10.0.2.2:8081", "worker", nil)
		require.ErrorContains(t, err, "the control plane's address (it has not reported one yet")
	})
}
