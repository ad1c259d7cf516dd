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
	_ datasource.DataSource              = (*renderedTemplateDataSource)(nil)
	_ datasource.DataSourceWithConfigure = (*renderedTemplateDataSource)(nil)
)

// NewRenderedTemplateDataSource is the baremetal_rendered_template data source.
func NewRenderedTemplateDataSource() datasource.DataSource { return &renderedTemplateDataSource{} }

type renderedTemplateDataSource struct {
	client *client.Client
}

type renderedTemplateModel struct {
	ID       types.String `tfsdk:"id"`
	Machine  types.String `tfsdk:"machine"`
	Template types.String `tfsdk:"template"`
	Profile  types.String `tfsdk:"profile"`
	Content  types.String `tfsdk:"content"`
}

func (d *renderedTemplateDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_rendered_template"
}

func (d *renderedTemplateDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Previews an install template (a kickstart, a preseed, user-data...) exactly as a machine " +
			"would receive it now: its profile's template rendered with the machine's, its cluster's and the profile's " +
			"params and the agent's snippets. The run's callback token is shown as `<token>`. A template that does " +
			"not render fails the read with the template, line, column and param at fault.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "`<machine>/<template>`.",
				Computed:            true,
			},
			"machine": schema.StringAttribute{
				MarkdownDescription: "Name of the machine.",
				Required:            true,
				Validators:          []validator.String{validName()},
			},
			"template": schema.StringAttribute{
				MarkdownDescription: "Name of a template of the machine's boot profile (a key of its `templates`).",
				Required:            true,
			},
			"profile": schema.StringAttribute{
				MarkdownDescription: "The boot profile rendered: the one of the machine's current run, else its cluster role's or its own.",
				Computed:            true,
			},
			"content": schema.StringAttribute{
				MarkdownDescription: "The rendered template.",
				Computed:            true,
			},
		},
	}
}

func (d *renderedTemplateDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *renderedTemplateDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var state renderedTemplateModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() || !requireClient(d.client, &resp.Diagnostics) {
		return
	}
	machine, tmpl := state.Machine.ValueString(), state.Template.ValueString()
	out, err := d.client.RenderedTemplate(ctx, machine, tmpl)
	if err != nil {
		detail := describeErr(err)
		if errors.Is(err, client.ErrNotFound) {
			detail = fmt.Sprintf("The agent has no machine %q, or its boot profile has no template %q.", machine, tmpl)
		}
		resp.Diagnostics.AddAttributeError(path.Root("template"), fmt.Sprintf("Unable to Render Template %q of Machine %q", tmpl, machine), detail)
		return
	}
	state.ID = types.StringValue(machine + "/" + tmpl)
	state.Profile = types.StringValue(out.Profile)
	state.Content = types.StringValue(out.Content)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}
