package provider

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

var (
	_ resource.Resource                = (*siteParamsResource)(nil)
	_ resource.ResourceWithConfigure   = (*siteParamsResource)(nil)
	_ resource.ResourceWithImportState = (*siteParamsResource)(nil)
)

// siteParamsID is the one site params object's ID: an agent has exactly one.
const siteParamsID = "site"

// NewSiteParamsResource is the baremetal_site_params resource.
func NewSiteParamsResource() resource.Resource { return &siteParamsResource{} }

type siteParamsResource struct {
	client *client.Client
}

type siteParamsModel struct {
	ID      types.String `tfsdk:"id"`
	Params  types.Map    `tfsdk:"params"`
	Version types.Int64  `tfsdk:"version"`
	secretParamsModel
	Timeouts timeouts.Value `tfsdk:"timeouts"`
}

// defaultSiteParamsTimeout bounds the re-provisioning a write waits for.
const defaultSiteParamsTimeout = 60 * time.Minute

func (r *siteParamsResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_site_params"
}

func (r *siteParamsResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "The agent's site-wide params: the lowest layer of every machine's params, below its boot " +
			"profile's, its cluster's and its own (site < profile < cluster < machine), and likewise for secret params. " +
			"An agent has one: declare it once per agent. Saving dry-renders every machine meant to be provisioned " +
			"(a template that no longer renders fails the apply, naming the machine, the template and the param), then " +
			"re-provisions, in place, the machines whose effective params or secret params changed; create and update wait " +
			"(within their timeouts) until those are provisioned again. Destroying it removes every site param and secret " +
			"param, which re-provisions the machines that used them, without waiting. A machine's effective params are " +
			"in the `baremetal_machine` data source.",
		Attributes: secretParamsAttributes(map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "Always `" + siteParamsID + "`.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"params": schema.MapAttribute{
				MarkdownDescription: "Site-wide template parameters (e.g. `ntp_servers`, `proxy`, `timezone`); a profile's, " +
					"cluster's or machine's `params` override them key by key.",
				ElementType: types.StringType,
				Optional:    true,
			},
			"version": schema.Int64Attribute{
				MarkdownDescription: "The agent's version of the site params, bumped by every write.",
				Computed:            true,
			},
		}, "the site"),
		Blocks: map[string]schema.Block{
			"timeouts": timeouts.Block(ctx, timeouts.Opts{Create: true, Update: true}),
		},
	}
}

func (r *siteParamsResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (m *siteParamsModel) fromAPI(sp *api.SiteParams) {
	m.ID = types.StringValue(siteParamsID)
	m.Params = stringsToMap(sp.Params, m.Params)
	m.Version = types.Int64Value(int64(sp.Version))
}

func (r *siteParamsResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan siteParamsModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	timeout, d := plan.Timeouts.Create(ctx, defaultSiteParamsTimeout)
	resp.Diagnostics.Append(d...)
	body := api.SiteParamsRequest{Params: mapToStrings(ctx, plan.Params, &resp.Diagnostics)}
	body.SecretParams = secretParamsToSend(ctx, req.Config, &plan.secretParamsModel, nil, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	cur, err := r.client.GetSiteParams(ctx)
	if err != nil {
		resp.Diagnostics.AddError("Unable to Read Site Params", describeErr(err))
		return
	}
	if len(cur.Params) > 0 || len(cur.SecretParamNames) > 0 {
		// Creating would overwrite what someone else set up.
		resp.Diagnostics.AddError("Site Params Already Set",
			fmt.Sprintf("The agent already has site params (params %s; secret params %s). An agent has one set of site "+
				"params: bring them under Terraform with an import block (to = baremetal_site_params.<name>, id = %q), "+
				"or clear them with DELETE %s first.", strings.Join(sortedKeys(cur.Params), ", "),
				strings.Join(cur.SecretParamNames, ", "), siteParamsID, api.PathSiteParams))
		return
	}
	body.Version = cur.Version
	r.write(ctx, timeout, body, &plan, &resp.State, &resp.Diagnostics)
}

// write saves the site params, records them in state, and waits until the
// machines the change re-provisions are provisioned again.
func (r *siteParamsResource) write(ctx context.Context, timeout time.Duration, body api.SiteParamsRequest, plan *siteParamsModel, st stateSetter, diags *diag.Diagnostics) {
	sp, err := r.client.PutSiteParams(ctx, body)
	if err != nil {
		addAPIError(diags, err, "Unable to Save Site Params", describeErr(err))
		return
	}
	plan.fromAPI(sp)
	// Saved: record it before waiting, so a rollout that fails or times out
	// leaves a state that matches the agent.
	diags.Append(st.Set(ctx, plan)...)
	if diags.HasError() || len(sp.Reprovisioning) == 0 {
		return
	}
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := awaitReprovisioned(waitCtx, r.client, sp.Reprovisioning, sp.UpdatedAt); err != nil {
		diags.AddError("Site Params Rollout Did Not Complete",
			err.Error()+"\n\nThe site params are saved; the agent keeps re-provisioning the machines they changed. Inspect them with "+
				"the baremetal_machines data source or the agent's events, fix the cause, and apply again.")
	}
}

// stateSetter is resp.State of a create or an update.
type stateSetter interface {
	Set(context.Context, any) diag.Diagnostics
}

func (r *siteParamsResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state siteParamsModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	sp, err := r.client.GetSiteParams(ctx)
	if err != nil {
		resp.Diagnostics.AddError("Unable to Read Site Params", describeErr(err))
		return
	}
	state.fromAPI(sp)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *siteParamsResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, prior siteParamsModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	timeout, d := plan.Timeouts.Update(ctx, defaultSiteParamsTimeout)
	resp.Diagnostics.Append(d...)
	body := api.SiteParamsRequest{Params: mapToStrings(ctx, plan.Params, &resp.Diagnostics)}
	body.SecretParams = secretParamsToSend(ctx, req.Config, &plan.secretParamsModel, &prior.secretParamsModel, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	r.write(ctx, timeout, body, &plan, &resp.State, &resp.Diagnostics)
}

func (r *siteParamsResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	if !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	sp, err := r.client.DeleteSiteParams(ctx)
	if err != nil {
		resp.Diagnostics.AddError("Unable to Remove Site Params", describeErr(err))
		return
	}
	if len(sp.Reprovisioning) > 0 {
		tflog.Info(ctx, "site params removed; the agent re-provisions the machines that used them",
			map[string]any{"machines": strings.Join(sp.Reprovisioning, ", ")})
	}
}

func (r *siteParamsResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if req.ID != siteParamsID {
		resp.Diagnostics.AddError("Invalid Import ID",
			fmt.Sprintf("An agent has one set of site params; import it with id = %q, not %q.", siteParamsID, req.ID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), siteParamsID)...)
}

// awaitReprovisioned waits until every named machine is provisioned again
// after since. One that fails after since ends the wait with its error;
// one that is no longer meant to be provisioned (or is gone) stops counting.
func awaitReprovisioned(ctx context.Context, c *client.Client, names []string, since time.Time) error {
	ticker := time.NewTicker(rolloutPollInterval)
	defer ticker.Stop()
	lastPending := -1
	for {
		machines, err := c.ListMachines(ctx, client.MachineFilter{State: api.StateProvisioned})
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("listing machines to follow the rollout: %s", describeErr(err))
		}
		var pending, failed []string
		for _, m := range machines {
			if !slices.Contains(names, m.Name) {
				continue
			}
			switch {
			case m.Phase == api.PhaseFailed && !m.UpdatedAt.Before(since):
				failed = append(failed, fmt.Sprintf("%s: %s", m.Name, m.LastError))
			case m.Phase != api.PhaseProvisioned || m.ProvisionedAt.Before(since):
				pending = append(pending, fmt.Sprintf("%s (phase %s)", m.Name, m.Phase))
			}
		}
		sort.Strings(pending)
		if len(failed) > 0 {
			sort.Strings(failed)
			return fmt.Errorf("re-provisioning failed on:\n  %s", strings.Join(failed, "\n  "))
		}
		if len(pending) == 0 {
			return nil
		}
		if len(pending) != lastPending {
			tflog.Info(ctx, "waiting for machines to re-provision", map[string]any{"pending": strings.Join(pending, ", ")})
			lastPending = len(pending)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for %d machine(s) to re-provision: %s", len(pending), strings.Join(pending, ", "))
		case <-ticker.C:
		}
	}
}
