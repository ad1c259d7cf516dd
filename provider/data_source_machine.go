package provider

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

var (
	_ datasource.DataSource              = (*machineDataSource)(nil)
	_ datasource.DataSourceWithConfigure = (*machineDataSource)(nil)
)

// NewMachineDataSource is the baremetal_machine data source factory.
func NewMachineDataSource() datasource.DataSource { return &machineDataSource{} }

type machineDataSource struct {
	client *client.Client
}

// machineSummaryAttrTypes is one machine as both machine data sources
// return it: what a configuration selects on or wires into other resources.
// The BMC password is never part of it.
var machineSummaryAttrTypes = map[string]attr.Type{
	"name":         types.StringType,
	"bmc_endpoint": types.StringType,
	"macs":         types.ListType{ElemType: types.StringType},
	"boot_profile": types.StringType,
	"params":       types.MapType{ElemType: types.StringType},
	"state":        types.StringType,
	"boot_mode":    types.StringType,
	"phase":        types.StringType,
	"step":         types.StringType,
	"power_state":  types.StringType,
	"power_drift":  types.BoolType,
	"last_error":   types.StringType,
	"cluster":      types.StringType,
	"role":         types.StringType,
	"addresses":    types.ListType{ElemType: types.StringType},
	"inventory":    types.ObjectType{AttrTypes: inventoryAttrTypes},
}

func machineSummaryAttributes() map[string]schema.Attribute {
	str := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{MarkdownDescription: desc, Computed: true}
	}
	return map[string]schema.Attribute{
		"name":         str("Machine name."),
		"bmc_endpoint": str("The BMC's Redfish endpoint."),
		"macs": schema.ListAttribute{
			MarkdownDescription: "MAC addresses of the provisioning NICs.",
			ElementType:         types.StringType,
			Computed:            true,
		},
		"boot_profile": str("The machine's own boot profile, empty when its cluster role provides it."),
		"params": schema.MapAttribute{
			MarkdownDescription: "The machine's template parameters.",
			ElementType:         types.StringType,
			Computed:            true,
		},
		"state":       str("Desired state."),
		"boot_mode":   str("The boot mode asked of the BMC (`uefi` or `legacy`); empty when the machine keeps the mode its BMC reports."),
		"phase":       str("Observed phase."),
		"step":        str("Sub-step within provisioning or deprovisioning, if any."),
		"power_state": str("Power state the BMC reports."),
		"power_drift": schema.BoolAttribute{
			MarkdownDescription: "Whether the observed power differs from what the phase expects.",
			Computed:            true,
		},
		"last_error": str("The agent's last error for the machine."),
		"cluster":    str("The cluster the machine belongs to, if any."),
		"role":       str("The machine's role in its cluster, if any."),
		"addresses": schema.ListAttribute{
			MarkdownDescription: "Addresses the installer reported.",
			ElementType:         types.StringType,
			Computed:            true,
		},
		"inventory": inventoryDataSourceAttribute(),
	}
}

func machineSummaryValues(m *api.Machine) map[string]attr.Value {
	empty := types.ListValueMust(types.StringType, nil)
	return map[string]attr.Value{
		"name":         types.StringValue(m.Name),
		"bmc_endpoint": types.StringValue(m.BMC.Endpoint),
		"macs":         stringsToList(m.MACs, empty),
		"boot_profile": types.StringValue(m.BootProfile),
		"params":       stringsToMap(m.Params, types.MapValueMust(types.StringType, nil)),
		"state":        types.StringValue(string(m.State)),
		"boot_mode":    types.StringValue(string(m.BootMode)),
		"phase":        types.StringValue(string(m.Phase)),
		"step":         types.StringValue(string(m.Step)),
		"power_state":  types.StringValue(m.PowerState),
		"power_drift":  types.BoolValue(m.PowerDrift),
		"last_error":   types.StringValue(m.LastError),
		"cluster":      types.StringValue(m.Cluster),
		"role":         types.StringValue(m.Role),
		"addresses":    stringsToList(m.Addresses, empty),
		"inventory":    inventoryValue(m.Inventory),
	}
}

func (d *machineDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_machine"
}

func (d *machineDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	attrs := machineSummaryAttributes()
	attrs["name"] = schema.StringAttribute{
		MarkdownDescription: "Name of the machine.",
		Required:            true,
		Validators:          []validator.String{validName()},
	}
	attrs["id"] = schema.StringAttribute{MarkdownDescription: "Identifier of the machine; equal to `name`.", Computed: true}
	attrs["effective_params"] = schema.MapAttribute{
		MarkdownDescription: "The params the machine's templates see now: the site's (`baremetal_site_params`), overridden " +
			"by its boot profile's, by its cluster's and by its own (site < profile < cluster < machine).",
		ElementType: types.StringType,
		Computed:    true,
	}
	attrs["param_sources"] = schema.MapAttribute{
		MarkdownDescription: "For each of `effective_params`, the layer it comes from: `site`, `profile`, `cluster` or `machine`.",
		ElementType:         types.StringType,
		Computed:            true,
	}
	attrs["effective_secret_params"] = schema.ListAttribute{
		MarkdownDescription: "The names of the secret params the machine's templates can read with `{{ secret \"name\" }}`, " +
			"from the same four layers. Their values are never returned.",
		ElementType: types.StringType,
		Computed:    true,
	}
	attrs["generated_secrets"] = schema.ListAttribute{
		MarkdownDescription: "The names of the machine's generated secrets (`{{ generatedSecret \"name\" }}`); read a value " +
			"with the `baremetal_machine_secret` ephemeral resource.",
		ElementType: types.StringType,
		Computed:    true,
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "Reads one machine registered on the agent: its desired state, observed phase, power, addresses, " +
			"inventory, and the params its templates see.",
		Attributes: attrs,
	}
}

func (d *machineDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *machineDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var name types.String
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("name"), &name)...)
	if resp.Diagnostics.HasError() || !requireClient(d.client, &resp.Diagnostics) {
		return
	}
	m, err := d.client.GetMachine(ctx, name.ValueString())
	if err != nil {
		detail := describeErr(err)
		if errors.Is(err, client.ErrNotFound) {
			detail = fmt.Sprintf("The agent has no machine named %q.", name.ValueString())
		}
		resp.Diagnostics.AddAttributeError(path.Root("name"), fmt.Sprintf("Unable to Read Machine %q", name.ValueString()), detail)
		return
	}
	values := machineSummaryValues(m)
	for attrName, v := range values {
		resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root(attrName), v)...)
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), m.Name)...)
	emptyMap, emptyList := types.MapValueMust(types.StringType, nil), types.ListValueMust(types.StringType, nil)
	for attrName, v := range map[string]attr.Value{
		"effective_params":        stringsToMap(m.EffectiveParams, emptyMap),
		"param_sources":           stringsToMap(m.ParamSources, emptyMap),
		"effective_secret_params": stringsToList(m.EffectiveSecretParams, emptyList),
		"generated_secrets":       stringsToList(m.GeneratedSecrets, emptyList),
	} {
		resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root(attrName), v)...)
	}
}
