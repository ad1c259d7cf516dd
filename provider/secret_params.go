package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/mapvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// secretParamsModel holds the write-only secret params that site params,
// boot profiles, clusters and machines share. SecretParamsWO is null in
// plan and state (Terraform keeps write-only values out of both); only the
// version is stored.
type secretParamsModel struct {
	SecretParamsWO        types.Map   `tfsdk:"secret_params_wo"`
	SecretParamsWOVersion types.Int64 `tfsdk:"secret_params_wo_version"`
}

// secretParamsAttributes adds secret_params_wo and its version to a
// resource schema; owner says whose they are ("the site", "the profile").
func secretParamsAttributes(attrs map[string]schema.Attribute, owner string) map[string]schema.Attribute {
	attrs["secret_params_wo"] = schema.MapAttribute{
		MarkdownDescription: "Write-only secret params of " + owner + " (Terraform 1.11 or later): templates read them with " +
			"`{{ secret \"name\" }}`, with the same precedence as params (site < profile < cluster < machine). The agent " +
			"seals them at rest and renders them only into install templates an installer fetches with its run's live " +
			"token, during that run; previews show `<secret:name>`. They are never returned by the agent and never in " +
			"the plan or state. Terraform cannot see a change of a write-only value: bump `secret_params_wo_version` " +
			"to send new ones (a change re-provisions the machines that read them).",
		ElementType: types.StringType,
		Optional:    true,
		Sensitive:   true,
		WriteOnly:   true,
		Validators: []validator.Map{
			mapvalidator.KeysAre(stringvalidator.RegexMatches(api.SecretNameRE,
				"must be 1 to 63 letters, digits, '_', '.' or '-', not starting with '.' or '-'")),
			secretVersionWarning{},
		},
	}
	attrs["secret_params_wo_version"] = schema.Int64Attribute{
		MarkdownDescription: "Any number; changing (or removing) it sends the current `secret_params_wo` to the agent, " +
			"and if `secret_params_wo` is then absent, the agent's secret params of this object are removed. Stored in state, " +
			"unlike the secrets.",
		Optional: true,
		Validators: []validator.Int64{
			int64validator.AlsoRequires(path.MatchRoot("secret_params_wo")),
		},
	}
	return attrs
}

// config is what the apply-time requests expose of the configuration.
type config interface {
	GetAttribute(context.Context, path.Path, any) diag.Diagnostics
}

// secretParamsToSend returns the secret params to send: the
// configuration's on create (prior nil) or when the version changed
// (removing them all when the configuration has none), else nil, which
// keeps the agent's.
func secretParamsToSend(ctx context.Context, cfg config, plan, prior *secretParamsModel, diags *diag.Diagnostics) *map[string]string {
	if prior != nil && plan.SecretParamsWOVersion.Equal(prior.SecretParamsWOVersion) {
		return nil
	}
	var wo types.Map
	diags.Append(cfg.GetAttribute(ctx, path.Root("secret_params_wo"), &wo)...)
	out := map[string]string{}
	if wo.IsNull() {
		if prior == nil {
			return nil
		}
		return &out
	}
	diags.Append(wo.ElementsAs(ctx, &out, false)...)
	return &out
}

// secretVersionWarning warns when secret_params_wo has no version beside
// it: without one, a changed secret never reaches the agent.
type secretVersionWarning struct{}

func (secretVersionWarning) Description(context.Context) string {
	return "warns when secret_params_wo_version is not set"
}

func (v secretVersionWarning) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (secretVersionWarning) ValidateMap(ctx context.Context, req validator.MapRequest, resp *validator.MapResponse) {
	if req.ConfigValue.IsNull() {
		return
	}
	var version types.Int64
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("secret_params_wo_version"), &version)...)
	if version.IsNull() {
		resp.Diagnostics.AddAttributeWarning(req.Path.ParentPath().AtName("secret_params_wo_version"), "Missing Secret Params Version",
			fmt.Sprintf("%s is set without secret_params_wo_version. Terraform cannot see a change of a write-only value, "+
				"so set secret_params_wo_version and bump it whenever the secrets change.", req.Path))
	}
}
