package provider

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	dsschema "github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	pschema "github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	rschema "github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	tfresource "github.com/hashicorp/terraform-plugin-testing/helper/resource"
)

// protoV6Factories serves the provider in-process to the terraform CLI.
var protoV6Factories = map[string]func() (tfprotov6.ProviderServer, error){
	"baremetal": providerserver.NewProtocol6WithError(New("test")()),
}

// TestSchemasValid runs the framework's own schema checks and ours: every
// attribute documented, so the generated docs have no blank rows.
func TestSchemasValid(t *testing.T) {
	ctx := context.Background()
	p := New("test")()

	var presp provider.SchemaResponse
	p.Schema(ctx, provider.SchemaRequest{}, &presp)
	if presp.Diagnostics.HasError() {
		t.Fatalf("provider schema: %v", presp.Diagnostics)
	}
	for name, a := range presp.Schema.Attributes {
		if a.GetMarkdownDescription() == "" {
			t.Errorf("provider attribute %q has no MarkdownDescription", name)
		}
	}
	_ = pschema.Schema{}

	var mresp provider.MetadataResponse
	p.Metadata(ctx, provider.MetadataRequest{}, &mresp)

	for _, f := range p.Resources(ctx) {
		r := f()
		var md resource.MetadataResponse
		r.Metadata(ctx, resource.MetadataRequest{ProviderTypeName: mresp.TypeName}, &md)
		var sr resource.SchemaResponse
		r.Schema(ctx, resource.SchemaRequest{}, &sr)
		if d := sr.Schema.ValidateImplementation(ctx); d.HasError() {
			t.Errorf("%s: %v", md.TypeName, d)
		}
		if sr.Schema.MarkdownDescription == "" {
			t.Errorf("%s has no MarkdownDescription", md.TypeName)
		}
		checkResourceAttrs(t, md.TypeName, sr.Schema.Attributes)
	}
	for _, f := range p.DataSources(ctx) {
		d := f()
		var md datasource.MetadataResponse
		d.Metadata(ctx, datasource.MetadataRequest{ProviderTypeName: mresp.TypeName}, &md)
		var sr datasource.SchemaResponse
		d.Schema(ctx, datasource.SchemaRequest{}, &sr)
		if diags := sr.Schema.ValidateImplementation(ctx); diags.HasError() {
			t.Errorf("%s: %v", md.TypeName, diags)
		}
		if sr.Schema.MarkdownDescription == "" {
			t.Errorf("%s has no MarkdownDescription", md.TypeName)
		}
		checkDataSourceAttrs(t, md.TypeName, sr.Schema.Attributes)
	}
}

func checkResourceAttrs(t *testing.T, prefix string, attrs map[string]rschema.Attribute) {
	t.Helper()
	for name, a := range attrs {
		if a.GetMarkdownDescription() == "" {
			t.Errorf("%s.%s has no MarkdownDescription", prefix, name)
		}
		switch n := a.(type) {
		case rschema.SingleNestedAttribute:
			checkResourceAttrs(t, prefix+"."+name, n.Attributes)
		case rschema.ListNestedAttribute:
			checkResourceAttrs(t, prefix+"."+name, n.NestedObject.Attributes)
		}
	}
}

func checkDataSourceAttrs(t *testing.T, prefix string, attrs map[string]dsschema.Attribute) {
	t.Helper()
	for name, a := range attrs {
		if a.GetMarkdownDescription() == "" {
			t.Errorf("%s.%s has no MarkdownDescription", prefix, name)
		}
		switch n := a.(type) {
		case dsschema.SingleNestedAttribute:
			checkDataSourceAttrs(t, prefix+"."+name, n.Attributes)
		case dsschema.ListNestedAttribute:
			checkDataSourceAttrs(t, prefix+"."+name, n.NestedObject.Attributes)
		}
	}
}

// TestStateDocsListTheValidatedValues keeps the printed allowed values and
// the validator on one list.
func TestStateDocsListTheValidatedValues(t *testing.T) {
	d := stateDescription()
	for _, s := range []string{"`provisioned`", "`available`", "`off`"} {
		if !strings.Contains(d, s) {
			t.Errorf("state description %q does not mention %s", d, s)
		}
	}
}

const unreachableProvider = `
provider "baremetal" {
  endpoint = "https://127.0.0.1:1"
  token    = "t0k3n"
}
`

// TestConfigValidation runs the real terraform CLI against the provider's
// schema: each bad configuration must fail at plan time, before the
// provider contacts any agent, naming the problem.
func TestConfigValidation(t *testing.T) {
	machine := func(body string) string {
		return unreachableProvider + `
resource "baremetal_machine" "m" {
` + body + `
}`
	}
	const bmcOK = `
  bmc = {
    endpoint = "https://10.0.0.5"
    username = "admin"
    password = "secret"
  }`
	cases := []struct {
		name, config, want string
	}{
		{"bad name", machine(`name = "Web_01!"` + bmcOK), `Invalid Name`},
		{"bad state", machine(`name = "m1"
  state = "running"` + bmcOK), `value must be one of: \["provisioned" "available" "off"\]`},
		{"bad mac", machine(`name = "m1"
  macs = ["52-54-00-12-34-56"]` + bmcOK), `(?s)lower-case colon form:\s+"52:54:00:12:34:56"`},
		{"not a mac", machine(`name = "m1"
  macs = ["zz"]` + bmcOK), `not a 48-bit MAC address`},
		{"bmc scheme", machine(`name = "m1"
  bmc = {
    endpoint = "ftp://10.0.0.5"
    username = "admin"
    password = "secret"
  }`), `(?s)Invalid BMC Endpoint.*must start with http:// or https://`},
		{"bmc path", machine(`name = "m1"
  bmc = {
    endpoint = "https://bmc/wrong/path"
    username = "admin"
    password = "secret"
  }`), `(?s)Invalid BMC Endpoint.*is not /redfish/v1/Systems/<id>`},
		{"no password", machine(`name = "m1"
  bmc = {
    endpoint = "https://10.0.0.5"
    username = "admin"
  }`), `(?s)Invalid Attribute Combination.*password_wo`},
		{"both passwords", machine(`name = "m1"
  bmc = {
    endpoint    = "https://10.0.0.5"
    username    = "admin"
    password    = "a"
    password_wo = "b"
  }`), `Invalid Attribute Combination`},
		{"profile without kernel or script", unreachableProvider + `
resource "baremetal_boot_profile" "p" {
  name = "p1"
}`, `(?s)Invalid Attribute Combination.*ipxe_script`},
		{"cluster unknown role", unreachableProvider + `
resource "baremetal_cluster" "c" {
  name    = "c1"
  roles   = [{ name = "control-plane", boot_profile = "p1" }]
  members = [{ machine = "m1", role = "worker" }]
}`, `(?s)Unknown Cluster Role.*"worker" is not one of the cluster's roles`},
		{"cluster duplicate member", unreachableProvider + `
resource "baremetal_cluster" "c" {
  name  = "c1"
  roles = [{ name = "worker", boot_profile = "p1" }]
  members = [
    { machine = "m1", role = "worker" },
    { machine = "m1", role = "worker" },
  ]
}`, `Duplicate Cluster Member`},
		{"rollout zero", unreachableProvider + `
resource "baremetal_cluster" "c" {
  name    = "c1"
  roles   = [{ name = "worker", boot_profile = "p1" }]
  members = [{ machine = "m1", role = "worker" }]
  rollout = { max_unavailable = 0 }
}`, `must be at least 1`},
		{"machines filter phase", unreachableProvider + `
data "baremetal_machines" "x" {
  phase = "booting"
}`, `value must be one of`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tfresource.UnitTest(t, tfresource.TestCase{
				ProtoV6ProviderFactories: protoV6Factories,
				Steps: []tfresource.TestStep{{
					Config:      tc.config,
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(tc.want),
				}},
			})
		})
	}
}

// TestProviderConfigureErrors: a missing endpoint names the attribute and
// the environment variable; an agent that does not answer is reported as such.
func TestProviderConfigureErrors(t *testing.T) {
	t.Setenv(EnvEndpoint, "")
	t.Setenv(EnvToken, "")
	t.Setenv(EnvInsecure, "")
	cases := []struct {
		name, config, want string
		env                map[string]string
	}{
		{"missing endpoint", `provider "baremetal" {}
data "baremetal_agent" "a" {}`, `(?s)Missing Baremetal Agent Endpoint.*BAREMETAL_ENDPOINT`, nil},
		{"bad insecure env", `provider "baremetal" {}
data "baremetal_agent" "a" {}`, `(?s)Invalid BAREMETAL_INSECURE Environment Variable.*"maybe"`,
			map[string]string{EnvInsecure: "maybe", EnvEndpoint: "https://127.0.0.1:1", EnvToken: "x"}},
		{"unreachable", unreachableProvider + `
data "baremetal_agent" "a" {}`, `(?s)Unable to Reach Baremetal Agent.*127\.0\.0\.1:1`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			tfresource.UnitTest(t, tfresource.TestCase{
				ProtoV6ProviderFactories: protoV6Factories,
				Steps: []tfresource.TestStep{{
					Config:      tc.config,
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(tc.want),
				}},
			})
		})
	}
}
