package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

var (
	_ datasource.DataSource              = (*agentDataSource)(nil)
	_ datasource.DataSourceWithConfigure = (*agentDataSource)(nil)
)

// NewAgentDataSource is the baremetal_agent data source factory.
func NewAgentDataSource() datasource.DataSource { return &agentDataSource{} }

type agentDataSource struct {
	client *client.Client
}

type agentModel struct {
	ID           types.String `tfsdk:"id"`
	Version      types.String `tfsdk:"version"`
	APIVersion   types.String `tfsdk:"api_version"`
	Capabilities types.List   `tfsdk:"capabilities"`
	BootURL      types.String `tfsdk:"boot_url"`
}

func (d *agentDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_agent"
}

func (d *agentDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "The agent the provider talks to: its version, API version and capabilities. " +
			"Useful in preconditions, e.g. to require a capability before relying on it.",
		Attributes: map[string]schema.Attribute{
			"id":          schema.StringAttribute{MarkdownDescription: "The agent's API endpoint.", Computed: true},
			"version":     schema.StringAttribute{MarkdownDescription: "The agent's release version.", Computed: true},
			"api_version": schema.StringAttribute{MarkdownDescription: "The REST API version the agent speaks, e.g. `v1`.", Computed: true},
			"capabilities": schema.ListAttribute{
				MarkdownDescription: "Features the agent offers (for example `proxydhcp` or `lab`).",
				ElementType:         types.StringType,
				Computed:            true,
			},
			"boot_url": schema.StringAttribute{MarkdownDescription: "The boot base URL the agent advertises to machines.", Computed: true},
		},
	}
}

func (d *agentDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *agentDataSource) Read(ctx context.Context, _ datasource.ReadRequest, resp *datasource.ReadResponse) {
	if !requireClient(d.client, &resp.Diagnostics) {
		return
	}
	info, err := d.client.Info(ctx)
	if err != nil {
		resp.Diagnostics.AddError("Unable to Read Baremetal Agent Info", describeErr(err))
		return
	}
	state := agentModel{
		ID:           types.StringValue(d.client.Endpoint()),
		Version:      types.StringValue(info.Version),
		APIVersion:   types.StringValue(info.APIVersion),
		Capabilities: stringsToList(info.Capabilities, types.ListValueMust(types.StringType, nil)),
		BootURL:      types.StringValue(info.BootURL),
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}
