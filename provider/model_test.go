package provider

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/stretchr/testify/assert"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

func TestObservedStateAndRepair(t *testing.T) {
	cases := []struct {
		name       string
		m          api.Machine
		wantState  api.DesiredState
		wantAction api.Action
	}{
		{"no drift", api.Machine{State: "provisioned", PowerState: "On"}, "provisioned", ""},
		{"powered off behind our back", api.Machine{State: "provisioned", PowerState: "Off", PowerDrift: true}, "off", api.ActionPowerOn},
		{"powered on behind our back", api.Machine{State: "off", PowerState: "On", PowerDrift: true}, "available", api.ActionPowerOff},
		// Off without the agent calling it drift (e.g. mid-provisioning reboot) is not drift.
		{"off without drift flag", api.Machine{State: "provisioned", PowerState: "Off"}, "provisioned", ""},
		{"available never drifts", api.Machine{State: "available", PowerState: "Off", PowerDrift: true}, "available", ""},
	}
	for _, tc := range cases {
		if got := observedState(&tc.m); got != tc.wantState {
			t.Errorf("%s: observedState = %q, want %q", tc.name, got, tc.wantState)
		}
		if got := repairAction(&tc.m); got != tc.wantAction {
			t.Errorf("%s: repairAction = %q, want %q", tc.name, got, tc.wantAction)
		}
	}
}

func TestFieldPath(t *testing.T) {
	cases := map[string]path.Path{
		"name":            path.Root("name"),
		"bmc.endpoint":    path.Root("bmc").AtName("endpoint"),
		"macs[1]":         path.Root("macs").AtListIndex(1),
		"members[0].role": path.Root("members").AtListIndex(0).AtName("role"),
	}
	for field, want := range cases {
		got, ok := fieldPath(field)
		if !ok || !got.Equal(want) {
			t.Errorf("fieldPath(%q) = %v, %v; want %v", field, got, ok, want)
		}
	}
	for _, bad := range []string{"", ".x", "macs[x]", "macs[-1]", "macs[1"} {
		if p, ok := fieldPath(bad); ok {
			t.Errorf("fieldPath(%q) = %v, want rejection", bad, p)
		}
	}
}

func TestValidators(t *testing.T) {
	ctx := context.Background()
	run := func(v validator.String, s string) bool {
		var resp validator.StringResponse
		v.ValidateString(ctx, validator.StringRequest{Path: path.Root("x"), ConfigValue: types.StringValue(s)}, &resp)
		return !resp.Diagnostics.HasError()
	}
	cases := []struct {
		name string
		v    validator.String
		in   string
		ok   bool
	}{
		{"name ok", validName(), "web-01", true},
		{"name dotted", validName(), "rack1.node2", true},
		{"name upper", validName(), "Web", false},
		{"name leading dash", validName(), "-web", false},
		{"name empty", validName(), "", false},
		{"mac ok", validMAC(), "52:54:00:12:34:56", true},
		{"mac upper", validMAC(), "52:54:00:AB:34:56", false},
		{"mac dashes", validMAC(), "52-54-00-12-34-56", false},
		{"mac eui64", validMAC(), "02:00:5e:10:00:00:00:01", false},
		{"url https", urlScheme("https", "http"), "https://10.0.0.5:443/redfish/v1/Systems/1", true},
		{"url http", urlScheme("https", "http"), "http://bmc", true},
		{"url https only", urlScheme("https"), "http://bmc", false},
		{"url no host", urlScheme("https"), "https:///x", false},
		{"url credentials", urlScheme("https"), "https://root:calvin@bmc", false},
		{"url relative", urlScheme("https"), "bmc.example.net", false},
		{"bmc host", bmcEndpoint(), "https://10.0.0.5:443", true},
		{"bmc system", bmcEndpoint(), "https://10.0.0.5:443/redfish/v1/Systems/1", true},
		{"bmc http", bmcEndpoint(), "http://bmc", true},
		{"bmc wrong path", bmcEndpoint(), "https://bmc/wrong/path", false},
		{"bmc port", bmcEndpoint(), "https://bmc:70000", false},
		{"bmc query", bmcEndpoint(), "https://bmc/?x=1", false},
		{"bmc credentials", bmcEndpoint(), "https://root:calvin@bmc", false},
		{"bmc ftp", bmcEndpoint(), "ftp://bmc", false},
	}
	for _, tc := range cases {
		if got := run(tc.v, tc.in); got != tc.ok {
			t.Errorf("%s: %q valid = %v, want %v", tc.name, tc.in, got, tc.ok)
		}
	}
	// Unknown and null values are left to Terraform.
	for _, v := range []validator.String{validName(), validMAC(), urlScheme("https"), bmcEndpoint()} {
		for _, val := range []types.String{types.StringNull(), types.StringUnknown()} {
			var resp validator.StringResponse
			v.ValidateString(ctx, validator.StringRequest{Path: path.Root("x"), ConfigValue: val}, &resp)
			if resp.Diagnostics.HasError() {
				t.Errorf("%T rejected %v", v, val)
			}
		}
	}
}

// TestMachineFromAPIKeepsSecretsOut: the write-only password never reaches
// the state model, the plain password stays what was configured (the API
// never returns it), and empty collections keep their configured form.
func TestMachineFromAPIKeepsSecretsOut(t *testing.T) {
	m := machineModel{
		BMC: &bmcModel{
			Password:          types.StringNull(),
			PasswordWO:        types.StringValue("wo-secret"),
			PasswordWOVersion: types.Int64Value(2),
		},
		Params: types.MapValueMust(types.StringType, nil),
		MACs:   types.ListUnknown(types.StringType),
	}
	m.fromAPI(&api.Machine{
		Name: "m1", State: "provisioned", Phase: "provisioned", PowerState: "On",
		BMC:       api.BMCInfo{Endpoint: "https://bmc", Username: "admin"},
		MACs:      []string{"52:54:00:00:00:01"},
		Addresses: []string{"10.0.0.9"},
		Inventory: &api.Inventory{Manufacturer: "QEMU", CPUs: 2, MemoryGiB: 4, NICs: []api.NIC{{Name: "eth0", MAC: "52:54:00:00:00:01"}}},
	})
	if !m.BMC.PasswordWO.IsNull() {
		t.Errorf("password_wo = %v, want null", m.BMC.PasswordWO)
	}
	if !m.BMC.Password.IsNull() || m.BMC.PasswordWOVersion.ValueInt64() != 2 {
		t.Errorf("password %v, version %v: configured values must be kept", m.BMC.Password, m.BMC.PasswordWOVersion)
	}
	if m.Params.IsNull() || len(m.Params.Elements()) != 0 {
		t.Errorf("params = %v, want the configured empty map", m.Params)
	}
	if got := m.MACs.Elements(); len(got) != 1 || as[types.String](t, got[0]).ValueString() != "52:54:00:00:00:01" {
		t.Errorf("macs = %v", m.MACs)
	}
	inv := m.Inventory.Attributes()
	if as[types.Int64](t, inv["cpus"]).ValueInt64() != 2 || as[types.String](t, inv["manufacturer"]).ValueString() != "QEMU" {
		t.Errorf("inventory = %v", m.Inventory)
	}
	if m.ID.ValueString() != "m1" || m.Phase.ValueString() != "provisioned" {
		t.Errorf("id %v phase %v", m.ID, m.Phase)
	}
}

func TestFilterHardware(t *testing.T) {
	list := []api.Machine{
		{Name: "c", Inventory: &api.Inventory{CPUs: 8, MemoryGiB: 64}},
		{Name: "a", Inventory: &api.Inventory{CPUs: 2, MemoryGiB: 4}},
		{Name: "b"}, // not inspected yet
	}
	names := func(ms []api.Machine) (out []string) {
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return out
	}
	if got := names(filterHardware(list, types.Float64Null(), types.Int64Null())); len(got) != 3 || got[0] != "a" || got[2] != "c" {
		t.Errorf("no filter: %v, want all sorted", got)
	}
	if got := names(filterHardware(list, types.Float64Value(16), types.Int64Null())); len(got) != 1 || got[0] != "c" {
		t.Errorf("min memory 16: %v", got)
	}
	if got := names(filterHardware(list, types.Float64Null(), types.Int64Value(2))); len(got) != 2 {
		t.Errorf("min cpus 2: %v, want a and c (b has no inventory)", got)
	}
}

// TestLeaseHolder: one configuration keeps one lease name across runs (the
// agent's lease outlives a run), a Terraform Cloud workspace is named by its
// slug, and the name stays within the agent's 200-character limit.
func TestLeaseHolder(t *testing.T) {
	t.Setenv("TFC_WORKSPACE_SLUG", "")
	a, b := leaseHolder(), leaseHolder()
	if a != b {
		t.Errorf("lease holder changed between calls: %q, %q", a, b)
	}
	other := t.TempDir()
	t.Chdir(other)
	if c := leaseHolder(); c == a {
		t.Errorf("another configuration directory got the same lease holder %q", c)
	}
	t.Setenv("TFC_WORKSPACE_SLUG", "acme/"+strings.Repeat("x", 300))
	tfc := leaseHolder()
	if !strings.HasPrefix(tfc, "terraform-cloud:acme/") || len(tfc) > 200 {
		t.Errorf("terraform cloud lease holder %q", tfc)
	}
}

func TestDescribeErrAdvice(t *testing.T) {
	lease := &client.APIError{StatusCode: 409, Code: api.CodeLeaseHeld, Field: api.HeaderLeaseHolder, Message: "machine \"m1\" is leased", LeaseDuration: 5 * time.Minute}
	stale := &client.APIError{StatusCode: 409, Code: api.CodeConflict, Field: "version", Message: "version 3 is stale"}
	got := describeErr(lease)
	assert.Contains(t, got, "holds its lease")
	assert.Contains(t, got, "5m0s after its last renewal", "the agent's lease duration, not a fixed one")
	lease.LeaseDuration = 0
	assert.Contains(t, describeErr(lease), "when the lease runs out", "an agent that does not say its lease duration")
	if got := describeErr(stale); strings.Contains(got, "lease") {
		t.Errorf("a stale-version conflict got lease advice: %q", got)
	}
	if got := describeErr(&client.APIError{StatusCode: 401, Code: api.CodeUnauthorized}); !strings.Contains(got, EnvToken) {
		t.Errorf("unauthorized advice should name %s: %q", EnvToken, got)
	}
}
