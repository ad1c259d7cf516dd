package provider

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral"
	"github.com/hashicorp/terraform-plugin-framework/ephemeral/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

var (
	_ ephemeral.EphemeralResource              = (*machineSecretEphemeral)(nil)
	_ ephemeral.EphemeralResourceWithConfigure = (*machineSecretEphemeral)(nil)
)

// NewMachineSecretEphemeralResource is the baremetal_machine_secret
// ephemeral resource: a machine's generated secret, read without it ever
// entering a plan or state.
func NewMachineSecretEphemeralResource() ephemeral.EphemeralResource {
	return &machineSecretEphemeral{}
}

type machineSecretEphemeral struct {
	client *client.Client
}

type machineSecretModel struct {
	Machine types.String `tfsdk:"machine"`
	Name    types.String `tfsdk:"name"`
	Value   types.String `tfsdk:"value"`
}

func (e *machineSecretEphemeral) Metadata(_ context.Context, req ephemeral.MetadataRequest, resp *ephemeral.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_machine_secret"
}

func (e *machineSecretEphemeral) Schema(_ context.Context, _ ephemeral.SchemaRequest, resp *ephemeral.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "A machine's generated secret (Terraform 1.10 or later): the random value a template gets from " +
			"`{{ generatedSecret \"name\" }}`, made once per machine and kept across re-provisions until it is rotated " +
			"(`DELETE /v1/machines/{name}/generated_secrets/{secret}`). Reading it makes it if no template has yet, so " +
			"a configuration can hand a root password or a cluster join token to other systems before the machine " +
			"installs. Being ephemeral, the value is never in a plan or state: use it in provider configurations, " +
			"write-only attributes or other ephemeral resources. The provider's token must be read-write. Terraform opens an " +
			"ephemeral resource while planning when its arguments are known: for a machine created by the same " +
			"configuration, set `machine` to the machine's `id` (known once it exists), not its name.",
		Attributes: map[string]schema.Attribute{
			"machine": schema.StringAttribute{
				MarkdownDescription: "Name of the machine (or its `id`, which is the name).",
				Required:            true,
				Validators:          []validator.String{validName()},
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "Name of the secret, as the template gives it to `generatedSecret`.",
				Required:            true,
				Validators: []validator.String{stringvalidator.RegexMatches(api.SecretNameRE,
					"must be 1 to 63 letters, digits, '_', '.' or '-', not starting with '.' or '-'")},
			},
			"value": schema.StringAttribute{
				MarkdownDescription: "The secret: 32 random bytes, base64url without padding.",
				Computed:            true,
				Sensitive:           true,
			},
		},
	}
}

func (e *machineSecretEphemeral) Configure(_ context.Context, req ephemeral.ConfigureRequest, resp *ephemeral.ConfigureResponse) {
	e.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (e *machineSecretEphemeral) Open(ctx context.Context, req ephemeral.OpenRequest, resp *ephemeral.OpenResponse) {
	var cfg machineSecretModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() || !requireClient(e.client, &resp.Diagnostics) {
		return
	}
	machine, name := cfg.Machine.ValueString(), cfg.Name.ValueString()
	s, err := e.client.GeneratedSecret(ctx, machine, name, true)
	if err != nil {
		detail := describeErr(err)
		switch {
		case errors.Is(err, client.ErrNotFound):
			detail = fmt.Sprintf("The agent has no machine named %q.", machine)
		case errors.Is(err, client.ErrForbidden):
			detail += "\n\nReading a generated secret needs a read-write token, even though it only reads."
		}
		resp.Diagnostics.AddAttributeError(path.Root("machine"), fmt.Sprintf("Unable to Read Secret %q of Machine %q", name, machine), detail)
		return
	}
	cfg.Value = types.StringValue(s.Value)
	resp.Diagnostics.Append(resp.Result.Set(ctx, &cfg)...)
}
