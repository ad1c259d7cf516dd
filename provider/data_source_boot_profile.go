package provider

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

var (
	_ datasource.DataSource              = (*bootProfileDataSource)(nil)
	_ datasource.DataSourceWithConfigure = (*bootProfileDataSource)(nil)
)

// NewBootProfileDataSource is the baremetal_boot_profile data source factory.
func NewBootProfileDataSource() datasource.DataSource { return &bootProfileDataSource{} }

type bootProfileDataSource struct {
	client *client.Client
}

func (d *bootProfileDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_boot_profile"
}

func (d *bootProfileDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	str := func(desc string) schema.StringAttribute {
		return schema.StringAttribute{MarkdownDescription: desc, Computed: true}
	}
	resp.Schema = schema.Schema{
		MarkdownDescription: "Reads a boot profile registered on the agent, e.g. one managed by another Terraform configuration.",
		Attributes: map[string]schema.Attribute{
			"name": schema.StringAttribute{
				MarkdownDescription: "Name of the profile.",
				Required:            true,
				Validators:          []validator.String{validName()},
			},
			"id":     str("Identifier of the profile; equal to `name`."),
			"kernel": str("Kernel path or URL."),
			"initrds": schema.ListAttribute{
				MarkdownDescription: "Initial ramdisks, in load order.",
				ElementType:         types.StringType,
				Computed:            true,
			},
			"cmdline":     str("Kernel command line."),
			"ipxe_script": str("Full iPXE script override, if any."),
			"image":       imageDataSchema(),
			"root_device": rootDeviceDataSchema(),
			"templates": schema.MapAttribute{
				MarkdownDescription: "Install templates by name.",
				ElementType:         types.StringType,
				Computed:            true,
			},
			"params": schema.MapAttribute{
				MarkdownDescription: "Default template parameters.",
				ElementType:         types.StringType,
				Computed:            true,
			},
			"wipe_profile": str("Profile run before power-off on deprovision, if any."),
			"version": schema.Int64Attribute{
				MarkdownDescription: "The agent's version of the profile.",
				Computed:            true,
			},
		},
	}
}

func (d *bootProfileDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *bootProfileDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var state bootProfileFields
	resp.Diagnostics.Append(req.Config.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() || !requireClient(d.client, &resp.Diagnostics) {
		return
	}
	name := state.Name.ValueString()
	bp, err := d.client.GetBootProfile(ctx, name)
	if err != nil {
		detail := describeErr(err)
		if errors.Is(err, client.ErrNotFound) {
			detail = fmt.Sprintf("The agent has no boot profile named %q.", name)
		}
		resp.Diagnostics.AddAttributeError(path.Root("name"), fmt.Sprintf("Unable to Read Boot Profile %q", name), detail)
		return
	}
	// Computed collections read as empty, not null, so expressions such as
	// length() work without null checks.
	state.Initrds = types.ListValueMust(types.StringType, nil)
	state.Templates = types.MapValueMust(types.StringType, nil)
	state.Params = types.MapValueMust(types.StringType, nil)
	state.fromAPI(bp)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}
