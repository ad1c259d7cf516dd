package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

var (
	_ resource.Resource                = (*templateResource)(nil)
	_ resource.ResourceWithConfigure   = (*templateResource)(nil)
	_ resource.ResourceWithImportState = (*templateResource)(nil)
)

// NewTemplateResource is the baremetal_template resource: a snippet.
func NewTemplateResource() resource.Resource { return &templateResource{} }

type templateResource struct {
	client *client.Client
}

type templateModel struct {
	ID          types.String   `tfsdk:"id"`
	Name        types.String   `tfsdk:"name"`
	Content     types.String   `tfsdk:"content"`
	Description types.String   `tfsdk:"description"`
	UsedBy      types.List     `tfsdk:"used_by"`
	Version     types.Int64    `tfsdk:"version"`
	Timeouts    timeouts.Value `tfsdk:"timeouts"`
}

func (r *templateResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_template"
}

func (r *templateResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "A snippet: a named piece of install template that boot profiles' templates, `cmdline` and " +
			"`ipxe_script` include with `{{ template \"name\" . }}`, or with `{{ include \"name\" . }}`, which returns a " +
			"string to pipe into `indent`. A snippet named like a stock snippet (`kickstart-partitioning`, " +
			"`preseed-mirror`, `autoinstall-ntp`, ...) replaces it for every profile of the agent. A syntax error, or a " +
			"machine whose install would no longer render, fails the apply. Changing a snippet re-provisions, in place, " +
			"the machines whose installs used it, and the update waits (within `timeouts.update`) until they are " +
			"provisioned again, as a boot profile change does.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "Identifier of the snippet; equal to `name`.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "Name the templates include it by: " + nameRuleText + " Changing it replaces the snippet.",
				Required:            true,
				Validators:          []validator.String{validName()},
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"content": schema.StringAttribute{
				MarkdownDescription: "The snippet's Go `text/template` text. It sees what the including template passes " +
					"(usually `.`, the machine's render context) and has the same functions, among them the escaping " +
					"functions `shellQuote`, `ksQuote`, `ksList`, `preseedValue`, `kernelArg` and `toJSON`.",
				Required: true,
			},
			"description": schema.StringAttribute{
				MarkdownDescription: "What the snippet is for.",
				Optional:            true,
			},
			"used_by": schema.ListAttribute{
				MarkdownDescription: "The boot profiles that include the snippet, directly or through other snippets.",
				ElementType:         types.StringType,
				Computed:            true,
			},
			"version": schema.Int64Attribute{
				MarkdownDescription: "The agent's version of the snippet, bumped by every change; each run records the versions it rendered.",
				Computed:            true,
			},
		},
		Blocks: map[string]schema.Block{
			"timeouts": timeouts.Block(ctx, timeouts.Opts{Update: true}),
		},
	}
}

func (r *templateResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (m *templateModel) request() api.TemplateRequest {
	return api.TemplateRequest{Name: m.Name.ValueString(), Content: m.Content.ValueString(), Description: m.Description.ValueString()}
}

func (m *templateModel) fromAPI(t *api.Template) {
	m.ID = types.StringValue(t.Name)
	m.Name = types.StringValue(t.Name)
	m.Content = types.StringValue(t.Content)
	m.Description = optString(t.Description)
	users := make([]attr.Value, 0, len(t.UsedBy))
	for _, u := range t.UsedBy {
		users = append(users, types.StringValue(u))
	}
	m.UsedBy = types.ListValueMust(types.StringType, users)
	m.Version = types.Int64Value(int64(t.Version))
}

func (r *templateResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan templateModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	name := plan.Name.ValueString()
	t, err := r.client.CreateTemplate(ctx, plan.request())
	if err != nil {
		detail := describeErr(err)
		if errors.Is(err, client.ErrConflict) {
			detail += fmt.Sprintf("\n\nA template named %q may already exist; bring it under Terraform with an import block (id = %q).", name, name)
		}
		addAPIError(&resp.Diagnostics, err, fmt.Sprintf("Unable to Create Template %q", name), detail)
		return
	}
	plan.fromAPI(t)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *templateResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state templateModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	t, err := r.client.GetTemplate(ctx, state.Name.ValueString())
	if errors.Is(err, client.ErrNotFound) {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		resp.Diagnostics.AddError(fmt.Sprintf("Unable to Read Template %q", state.Name.ValueString()), describeErr(err))
		return
	}
	state.fromAPI(t)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *templateResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan templateModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	name := plan.Name.ValueString()
	timeout, d := plan.Timeouts.Update(ctx, defaultProfileUpdateTimeout)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	t, err := r.client.UpdateTemplate(ctx, name, plan.request())
	if err != nil {
		addAPIError(&resp.Diagnostics, err, fmt.Sprintf("Unable to Update Template %q", name), describeErr(err))
		return
	}
	plan.fromAPI(t)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := r.awaitRollout(waitCtx, t); err != nil {
		resp.Diagnostics.AddError(fmt.Sprintf("Template %q Rollout Did Not Complete", name),
			err.Error()+"\n\nThe template is saved; the agent keeps re-provisioning the machines that use it. Inspect them with "+
				"the baremetal_machines data source or the agent's events, fix the cause, and apply again.")
	}
}

// awaitRollout waits until every machine installed with a profile that
// includes t is provisioned again after t's update.
func (r *templateResource) awaitRollout(ctx context.Context, t *api.Template) error {
	watch := &machineWatch{client: r.client}
	lastPending := -1
	var pending []string
	for {
		machines, err := watch.next(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("timed out waiting for %d machine(s) to re-provision with template version %d: %s",
				len(pending), t.Version, strings.Join(pending, ", "))
		}
		if err != nil {
			return fmt.Errorf("listing machines to follow the rollout: %s", describeErr(err))
		}
		var failed []string
		pending = nil
		for _, m := range machines {
			if !slices.Contains(t.UsedBy, m.ProvisionedProfile) {
				continue
			}
			switch {
			case m.Phase == api.PhaseFailed:
				failed = append(failed, fmt.Sprintf("%s: %s", m.Name, m.LastError))
			case m.Phase != api.PhaseProvisioned || m.ProvisionedAt.Before(t.UpdatedAt):
				pending = append(pending, fmt.Sprintf("%s (phase %s)", m.Name, m.Phase))
			}
		}
		sort.Strings(pending)
		if len(failed) > 0 {
			sort.Strings(failed)
			return fmt.Errorf("re-provisioning with template version %d failed on:\n  %s", t.Version, strings.Join(failed, "\n  "))
		}
		if len(pending) == 0 {
			return nil
		}
		if len(pending) != lastPending {
			tflog.Info(ctx, "waiting for machines to re-provision with the new template",
				map[string]any{"template": t.Name, "version": t.Version, "pending": strings.Join(pending, ", ")})
			lastPending = len(pending)
		}
	}
}

func (r *templateResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state templateModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	name := state.Name.ValueString()
	err := r.client.DeleteTemplate(ctx, name)
	if err != nil && !errors.Is(err, client.ErrNotFound) {
		detail := describeErr(err)
		if errors.Is(err, client.ErrConflict) {
			detail += "\n\nA template a boot profile still includes cannot be deleted; change those profiles first."
		}
		resp.Diagnostics.AddError(fmt.Sprintf("Unable to Delete Template %q", name), detail)
	}
}

func (r *templateResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	importByName(ctx, req, resp)
}
