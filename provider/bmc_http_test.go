package provider

import (
	"context"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
	"github.com/stretchr/testify/require"
)

// TestMachinePlainHTTPBMCWarns: a plain-http BMC endpoint is accepted with
// a warning at plan (validation) naming what it exposes; https is quiet.
func TestMachinePlainHTTPBMCWarns(t *testing.T) {
	ctx := context.Background()
	r := &machineResource{}
	var sresp resource.SchemaResponse
	r.Schema(ctx, resource.SchemaRequest{}, &sresp)
	for _, tc := range []struct {
		endpoint string
		warn     bool
	}{
		{"http://10.0.0.5", true},
		{"HTTP://bmc.lab:8000/redfish/v1/Systems/1", true},
		{"https://10.0.0.5", false},
	} {
		t.Run(tc.endpoint, func(t *testing.T) {
			st := tfsdk.State{Schema: sresp.Schema, Raw: tftypes.NewValue(sresp.Schema.Type().TerraformType(ctx), nil)}
			require.False(t, st.SetAttribute(ctx, path.Root("bmc"), bmcModel{
				Endpoint: types.StringValue(tc.endpoint), Username: types.StringValue("admin"), Password: types.StringValue("pw"),
				PasswordWO: types.StringNull(), PasswordWOVersion: types.Int64Null(), Insecure: types.BoolNull(), CACertPEM: types.StringNull(),
			}).HasError())
			var resp resource.ValidateConfigResponse
			r.ValidateConfig(ctx, resource.ValidateConfigRequest{Config: tfsdk.Config{Schema: sresp.Schema, Raw: st.Raw}}, &resp)
			require.False(t, resp.Diagnostics.HasError(), "%v", resp.Diagnostics)
			if !tc.warn {
				require.Empty(t, resp.Diagnostics.Warnings())
				return
			}
			require.Len(t, resp.Diagnostics.Warnings(), 1)
			w := resp.Diagnostics.Warnings()[0]
			require.Equal(t, "Plain-HTTP BMC Endpoint", w.Summary())
			require.Contains(t, w.Detail(), "password in the clear")
		})
	}
}
