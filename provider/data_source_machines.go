package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework-validators/float64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

var (
	_ datasource.DataSource              = (*machinesDataSource)(nil)
	_ datasource.DataSourceWithConfigure = (*machinesDataSource)(nil)
)

// NewMachinesDataSource is the baremetal_machines data source factory.
func NewMachinesDataSource() datasource.DataSource { return &machinesDataSource{} }

type machinesDataSource struct {
	client *client.Client
}

type machinesModel struct {
	ID           types.String  `tfsdk:"id"`
	State        types.String  `tfsdk:"state"`
	Phase        types.String  `tfsdk:"phase"`
	Cluster      types.String  `tfsdk:"cluster"`
	Role         types.String  `tfsdk:"role"`
	MinMemoryGiB types.Float64 `tfsdk:"min_memory_gib"`
	MinCPUs      types.Int64   `tfsdk:"min_cpus"`
	Names        types.List    `tfsdk:"names"`
	Machines     types.List    `tfsdk:"machines"`
}

func (d *machinesDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_machines"
}

func (d *machinesDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Lists the machines registered on the agent, optionally filtered: for example every `available` " +
			"machine with at least 64 GiB of memory, to pick members for a cluster. All filters must match.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{MarkdownDescription: "The filters in use, as one string.", Computed: true},
			"state": schema.StringAttribute{
				MarkdownDescription: "Only machines with this desired state: " + quotedList(api.Strings(api.DesiredStates), " or ") + ".",
				Optional:            true,
				Validators:          []validator.String{stringvalidator.OneOf(api.Strings(api.DesiredStates)...)},
			},
			"phase": schema.StringAttribute{
				MarkdownDescription: "Only machines in this phase: " + quotedList(api.Strings(api.MachinePhases), " or ") + ".",
				Optional:            true,
				Validators:          []validator.String{stringvalidator.OneOf(api.Strings(api.MachinePhases)...)},
			},
			"cluster": schema.StringAttribute{
				MarkdownDescription: "Only members of this cluster.",
				Optional:            true,
				Validators:          []validator.String{validName()},
			},
			"role": schema.StringAttribute{
				MarkdownDescription: "Only cluster members with this role.",
				Optional:            true,
				Validators:          []validator.String{validName()},
			},
			"min_memory_gib": schema.Float64Attribute{
				MarkdownDescription: "Only machines whose inventory reports at least this much memory (GiB). Machines not yet inventoried never match.",
				Optional:            true,
				Validators:          []validator.Float64{float64validator.AtLeast(0)},
			},
			"min_cpus": schema.Int64Attribute{
				MarkdownDescription: "Only machines whose inventory reports at least this many CPUs. Machines not yet inventoried never match.",
				Optional:            true,
				Validators:          []validator.Int64{int64validator.AtLeast(0)},
			},
			"names": schema.ListAttribute{
				MarkdownDescription: "Names of the matching machines, sorted.",
				ElementType:         types.StringType,
				Computed:            true,
			},
			"machines": schema.ListNestedAttribute{
				MarkdownDescription: "The matching machines, sorted by name.",
				Computed:            true,
				NestedObject:        schema.NestedAttributeObject{Attributes: machineSummaryAttributes()},
			},
		},
	}
}

func (d *machinesDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *machinesDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var state machinesModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() || !requireClient(d.client, &resp.Diagnostics) {
		return
	}
	filter := client.MachineFilter{
		Cluster: state.Cluster.ValueString(),
		Role:    state.Role.ValueString(),
		Phase:   api.MachinePhase(state.Phase.ValueString()),
		State:   api.DesiredState(state.State.ValueString()),
	}
	list, err := d.client.ListMachines(ctx, filter)
	if err != nil {
		resp.Diagnostics.AddError("Unable to List Machines", describeErr(err))
		return
	}
	matched := filterHardware(list, state.MinMemoryGiB, state.MinCPUs)

	names := make([]string, len(matched))
	objs := make([]attr.Value, len(matched))
	for i := range matched {
		names[i] = matched[i].Name
		objs[i] = types.ObjectValueMust(machineSummaryAttrTypes, machineSummaryValues(&matched[i]))
	}
	state.ID = types.StringValue(filterID(filter, state.MinMemoryGiB, state.MinCPUs))
	state.Names = stringsToList(names, types.ListValueMust(types.StringType, nil))
	state.Machines = types.ListValueMust(types.ObjectType{AttrTypes: machineSummaryAttrTypes}, objs)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

// filterHardware applies the inventory filters the API does not offer and
// sorts by name, so the data source's output is stable between runs.
func filterHardware(list []api.Machine, minMem types.Float64, minCPUs types.Int64) []api.Machine {
	out := make([]api.Machine, 0, len(list))
	for _, m := range list {
		if !minMem.IsNull() && (m.Inventory == nil || m.Inventory.MemoryGiB < minMem.ValueFloat64()) {
			continue
		}
		if !minCPUs.IsNull() && (m.Inventory == nil || int64(m.Inventory.CPUs) < minCPUs.ValueInt64()) {
			continue
		}
		out = append(out, m)
	}
	sortMachines(out)
	return out
}
