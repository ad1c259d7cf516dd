package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

const (
	defaultClusterCreateTimeout = 90 * time.Minute
	defaultClusterUpdateTimeout = 90 * time.Minute
	defaultClusterDeleteTimeout = 20 * time.Minute
)

var (
	_ resource.Resource                   = (*clusterResource)(nil)
	_ resource.ResourceWithConfigure      = (*clusterResource)(nil)
	_ resource.ResourceWithImportState    = (*clusterResource)(nil)
	_ resource.ResourceWithValidateConfig = (*clusterResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*clusterResource)(nil)
)

// NewClusterResource is the baremetal_cluster resource factory.
func NewClusterResource() resource.Resource { return &clusterResource{} }

type clusterResource struct {
	client *client.Client
}

type clusterModel struct {
	ID           types.String  `tfsdk:"id"`
	Name         types.String  `tfsdk:"name"`
	Members      []memberModel `tfsdk:"members"`
	Roles        []roleModel   `tfsdk:"roles"`
	Params       types.Map     `tfsdk:"params"`
	Rollout      types.Object  `tfsdk:"rollout"`
	Phase        types.String  `tfsdk:"phase"`
	MemberStatus types.List    `tfsdk:"member_status"`
	Endpoints    types.Map     `tfsdk:"endpoints"`
	secretParamsModel
	Timeouts timeouts.Value `tfsdk:"timeouts"`
}

type memberModel struct {
	Machine types.String `tfsdk:"machine"`
	Role    types.String `tfsdk:"role"`
}

type roleModel struct {
	Name        types.String `tfsdk:"name"`
	BootProfile types.String `tfsdk:"boot_profile"`
}

var rolloutAttrTypes = map[string]attr.Type{"max_unavailable": types.Int64Type}

var memberStatusAttrTypes = map[string]attr.Type{
	"machine":    types.StringType,
	"role":       types.StringType,
	"phase":      types.StringType,
	"last_error": types.StringType,
	"addresses":  types.ListType{ElemType: types.StringType},
}

func (r *clusterResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_cluster"
}

func (r *clusterResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "A cluster groups machines into ordered roles. The agent provisions the members role by role, " +
			"in the order of `roles` (e.g. the control plane before the workers), each member with its role's boot profile; " +
			"every member's templates see the cluster's `params` and the members with their roles and reported addresses. " +
			"Changing a role's profile rolls its members through re-provisioning, at most `rollout.max_unavailable` at a time. " +
			"Create and update wait until every member is provisioned; a failed member pauses the rollout and fails the apply.",
		Attributes: secretParamsAttributes(map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "Identifier of the cluster; equal to `name`.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "Name of the cluster: " + nameRuleText + " Changing it replaces the cluster.",
				Required:            true,
				Validators:          []validator.String{validName()},
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"members": schema.ListNestedAttribute{
				MarkdownDescription: "The machines in the cluster and their roles. A machine may be in one cluster only.",
				Required:            true,
				Validators:          []validator.List{listvalidator.SizeAtLeast(1)},
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"machine": schema.StringAttribute{
						MarkdownDescription: "Name of a `baremetal_machine`.",
						Required:            true,
						Validators:          []validator.String{validName()},
					},
					"role": schema.StringAttribute{
						MarkdownDescription: "Name of one of the cluster's `roles`.",
						Required:            true,
						Validators:          []validator.String{validName()},
					},
				}},
			},
			"roles": schema.ListNestedAttribute{
				MarkdownDescription: "The roles, in provisioning order: every member of a role is provisioned before the next role starts.",
				Required:            true,
				Validators:          []validator.List{listvalidator.SizeAtLeast(1)},
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"name": schema.StringAttribute{
						MarkdownDescription: "Role name, e.g. `control-plane` or `worker`.",
						Required:            true,
						Validators:          []validator.String{validName()},
					},
					"boot_profile": schema.StringAttribute{
						MarkdownDescription: "Name of the `baremetal_boot_profile` the role's members are installed with.",
						Required:            true,
						Validators:          []validator.String{validName()},
					},
				}},
			},
			"params": schema.MapAttribute{
				MarkdownDescription: "Cluster-wide template parameters, seen by every member's templates.",
				ElementType:         types.StringType,
				Optional:            true,
			},
			"rollout": schema.SingleNestedAttribute{
				MarkdownDescription: "Bounds disruption while members are re-provisioned.",
				Optional:            true,
				Computed:            true,
				Default: objectdefault.StaticValue(types.ObjectValueMust(rolloutAttrTypes,
					map[string]attr.Value{"max_unavailable": types.Int64Value(1)})),
				Attributes: map[string]schema.Attribute{
					"max_unavailable": schema.Int64Attribute{
						MarkdownDescription: "How many members of a role may be out (re-provisioning) at once. Defaults to `1`.",
						Optional:            true,
						Computed:            true,
						Default:             int64default.StaticInt64(1),
						Validators:          []validator.Int64{int64validator.AtLeast(1)},
					},
				},
			},
			"phase": schema.StringAttribute{
				MarkdownDescription: "The cluster's phase: " + quotedList(api.Strings(api.ClusterPhases), " or ") + "; `paused` means a member failed. " +
					"Until it is `ready`, the plan shows this attribute changing, and applying writes the cluster again: failed members are retried " +
					"(after you fixed the cause, e.g. the boot profile) and the apply waits for the rollout to finish.",
				Computed: true,
			},
			"member_status": schema.ListNestedAttribute{
				MarkdownDescription: "Every member with its machine's observed phase and the addresses its installer reported.",
				Computed:            true,
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"machine":    schema.StringAttribute{MarkdownDescription: "Machine name.", Computed: true},
					"role":       schema.StringAttribute{MarkdownDescription: "Role name.", Computed: true},
					"phase":      schema.StringAttribute{MarkdownDescription: "The machine's phase.", Computed: true},
					"last_error": schema.StringAttribute{MarkdownDescription: "The machine's last error, empty when none.", Computed: true},
					"addresses": schema.ListAttribute{
						MarkdownDescription: "Addresses the machine's installer reported.",
						ElementType:         types.StringType,
						Computed:            true,
					},
				}},
			},
			"endpoints": schema.MapAttribute{
				MarkdownDescription: "For each role, the addresses its members reported, e.g. `endpoints[\"control-plane\"][0]`.",
				ElementType:         types.ListType{ElemType: types.StringType},
				Computed:            true,
			},
		}, "the cluster"),
		Blocks: map[string]schema.Block{
			"timeouts": timeouts.Block(ctx, timeouts.Opts{Create: true, Update: true, Delete: true}),
		},
	}
}

// ValidateConfig checks the cross-references inside the cluster, so a typo
// in a role name fails at plan time on the line that has it.
func (r *clusterResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	// Either list is unknown at validation time when it is built from other
	// resources' attributes (a module's for expression); it is checked again
	// once known.
	var memberList, roleList types.List
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("members"), &memberList)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("roles"), &roleList)...)
	if resp.Diagnostics.HasError() || memberList.IsUnknown() || roleList.IsUnknown() {
		return
	}
	// Single elements are unknown when built from values known only after
	// apply; roles must all be known to check references against them.
	var memberObjs, roleObjs []types.Object
	resp.Diagnostics.Append(memberList.ElementsAs(ctx, &memberObjs, false)...)
	resp.Diagnostics.Append(roleList.ElementsAs(ctx, &roleObjs, false)...)
	if resp.Diagnostics.HasError() {
		return
	}
	roles := make([]roleModel, len(roleObjs))
	for i, o := range roleObjs {
		if o.IsUnknown() {
			return
		}
		resp.Diagnostics.Append(o.As(ctx, &roles[i], basetypes.ObjectAsOptions{})...)
	}
	members := make([]memberModel, len(memberObjs))
	for i, o := range memberObjs {
		if o.IsUnknown() {
			members[i] = memberModel{Machine: types.StringUnknown(), Role: types.StringUnknown()}
			continue
		}
		resp.Diagnostics.Append(o.As(ctx, &members[i], basetypes.ObjectAsOptions{})...)
	}
	if resp.Diagnostics.HasError() {
		return
	}
	roleNames := map[string]bool{}
	for i, role := range roles {
		if role.Name.IsUnknown() || role.Name.IsNull() {
			return // cannot check references against an unknown role
		}
		n := role.Name.ValueString()
		if roleNames[n] {
			resp.Diagnostics.AddAttributeError(path.Root("roles").AtListIndex(i).AtName("name"), "Duplicate Cluster Role",
				fmt.Sprintf("Role %q is listed more than once.", n))
		}
		roleNames[n] = true
	}
	machines := map[string]bool{}
	for i, m := range members {
		if !m.Role.IsUnknown() && !m.Role.IsNull() && !roleNames[m.Role.ValueString()] {
			resp.Diagnostics.AddAttributeError(path.Root("members").AtListIndex(i).AtName("role"), "Unknown Cluster Role",
				fmt.Sprintf("Member role %q is not one of the cluster's roles (%s).", m.Role.ValueString(), strings.Join(sortedKeys(roleNames), ", ")))
		}
		if !m.Machine.IsUnknown() && !m.Machine.IsNull() {
			if machines[m.Machine.ValueString()] {
				resp.Diagnostics.AddAttributeError(path.Root("members").AtListIndex(i).AtName("machine"), "Duplicate Cluster Member",
					fmt.Sprintf("Machine %q is listed more than once.", m.Machine.ValueString()))
			}
			machines[m.Machine.ValueString()] = true
		}
	}
}

func (r *clusterResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (r *clusterResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan clusterModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	name := plan.Name.ValueString()
	timeout, d := plan.Timeouts.Create(ctx, defaultClusterCreateTimeout)
	resp.Diagnostics.Append(d...)
	body := plan.request(ctx, &resp.Diagnostics)
	body.SecretParams = secretParamsToSend(ctx, req.Config, &plan.secretParamsModel, nil, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	c, err := r.client.CreateCluster(ctx, body)
	if err != nil {
		detail := describeErr(err)
		if errors.Is(err, client.ErrConflict) {
			detail += fmt.Sprintf("\n\nA cluster named %q may already exist, or a member belongs to another cluster.", name)
		}
		addAPIError(&resp.Diagnostics, err, fmt.Sprintf("Unable to Create Cluster %q", name), detail)
		return
	}
	c = r.await(ctx, timeout, c, "Create", &resp.Diagnostics)
	plan.fromAPI(c)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *clusterResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state clusterModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	c, err := r.client.GetCluster(ctx, state.Name.ValueString())
	if errors.Is(err, client.ErrNotFound) {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		resp.Diagnostics.AddError(fmt.Sprintf("Unable to Read Cluster %q", state.Name.ValueString()), describeErr(err))
		return
	}
	state.fromAPI(c)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *clusterResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan clusterModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	name := plan.Name.ValueString()
	timeout, d := plan.Timeouts.Update(ctx, defaultClusterUpdateTimeout)
	resp.Diagnostics.Append(d...)
	body := plan.request(ctx, &resp.Diagnostics)
	var prior clusterModel
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	body.SecretParams = secretParamsToSend(ctx, req.Config, &plan.secretParamsModel, &prior.secretParamsModel, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	c, err := r.client.UpdateCluster(ctx, name, body)
	if err != nil {
		addAPIError(&resp.Diagnostics, err, fmt.Sprintf("Unable to Update Cluster %q", name), describeErr(err))
		resp.Diagnostics.Append(resp.State.Set(ctx, &prior)...)
		return
	}
	c = r.await(ctx, timeout, c, "Update", &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		// The rollout did not finish: the prior inputs stay in state, so
		// the next plan still shows it.
		prior.statusFromAPI(c)
		resp.Diagnostics.Append(resp.State.Set(ctx, &prior)...)
		return
	}
	plan.fromAPI(c)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

// ModifyPlan keeps a cluster that is not ready (converging, or paused by a
// failed member) in the plan: applying writes the cluster again,
// which retries its failed members, and waits for the rollout.
func (r *clusterResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.State.Raw.IsNull() || req.Plan.Raw.IsNull() {
		return
	}
	var phase types.String
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("phase"), &phase)...)
	if resp.Diagnostics.HasError() || phase.ValueString() == "" || phase.ValueString() == string(api.ClusterReady) {
		return
	}
	tflog.Info(ctx, "cluster is not ready; planning an update that resumes the rollout", map[string]any{"phase": phase.ValueString()})
	resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("phase"), types.StringUnknown())...)
	resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("member_status"), types.ListUnknown(types.ObjectType{AttrTypes: memberStatusAttrTypes}))...)
	resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("endpoints"), types.MapUnknown(types.ListType{ElemType: types.StringType}))...)
}

func (r *clusterResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state clusterModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	name := state.Name.ValueString()
	timeout, d := state.Timeouts.Delete(ctx, defaultClusterDeleteTimeout)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := r.client.DeleteCluster(ctx, name); err != nil && !errors.Is(err, client.ErrNotFound) {
		resp.Diagnostics.AddError(fmt.Sprintf("Unable to Delete Cluster %q", name), describeErr(err))
	}
}

func (r *clusterResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	importByName(ctx, req, resp)
}

// await waits for the agent to report the cluster converged (ready, every
// member installed with its role's current spec); a paused cluster ends
// the wait with the members' details.
func (r *clusterResource) await(ctx context.Context, timeout time.Duration, c *api.Cluster, op string, diags *diag.Diagnostics) *api.Cluster {
	name := c.Name
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastPhase api.ClusterPhase
	last, err := r.client.WaitCluster(waitCtx, name, func(c *api.Cluster) (bool, error) {
		if c.Phase != lastPhase {
			lastPhase = c.Phase
			tflog.Info(ctx, "cluster phase changed", map[string]any{"cluster": name, "phase": c.Phase, "message": c.Message})
		}
		// Writing the cluster retried its failed members: it is paused
		// for good only once the agent acted on that and one failed again.
		if c.Phase == api.ClusterPaused && !retryPending(c) {
			return false, fmt.Errorf("the cluster is %s", c.Phase)
		}
		return c.Converged, nil
	})
	if err == nil && last != nil {
		return last
	}
	if last == nil {
		last = c
	}
	detail := fmt.Sprintf("Cluster %q did not become ready: %s", name, describeErr(err))
	detail += "\n\n" + clusterSummary(last)
	diags.AddError(fmt.Sprintf("Unable to %s Cluster %q", op, name), detail)
	return last
}

// retryPending reports whether a failed member has a spec version the
// agent has not acted on yet (the retry this write asked for).
func retryPending(c *api.Cluster) bool {
	for _, ms := range c.Members {
		if ms.Phase == api.PhaseFailed && ms.ObservedVersion < ms.Version {
			return true
		}
	}
	return false
}

func clusterSummary(c *api.Cluster) string {
	s := "Cluster phase: " + string(c.Phase)
	if c.Message != "" {
		s += " (" + c.Message + ")"
	}
	s += "\nMembers:"
	for _, m := range c.Members {
		s += fmt.Sprintf("\n  %s (role %s): phase %s", m.Machine, m.Role, m.Phase)
		if m.LastError != "" {
			s += ", last error: " + m.LastError
		}
	}
	return s
}

func (m *clusterModel) request(ctx context.Context, diags *diag.Diagnostics) api.ClusterRequest {
	req := api.ClusterRequest{
		Name:   m.Name.ValueString(),
		Params: mapToStrings(ctx, m.Params, diags),
	}
	for _, mem := range m.Members {
		req.Members = append(req.Members, api.ClusterMember{Machine: mem.Machine.ValueString(), Role: mem.Role.ValueString()})
	}
	for _, role := range m.Roles {
		req.Roles = append(req.Roles, api.ClusterRole{Name: role.Name.ValueString(), BootProfile: role.BootProfile.ValueString()})
	}
	if !m.Rollout.IsNull() && !m.Rollout.IsUnknown() {
		if v, ok := m.Rollout.Attributes()["max_unavailable"].(types.Int64); ok && !v.IsNull() && !v.IsUnknown() {
			req.Rollout = &api.Rollout{MaxUnavailable: int(v.ValueInt64())}
		}
	}
	return req
}

func (m *clusterModel) fromAPI(c *api.Cluster) {
	m.Name = types.StringValue(c.Name)
	m.Members = make([]memberModel, len(c.Members))
	for i, mem := range c.Members {
		m.Members[i] = memberModel{Machine: types.StringValue(mem.Machine), Role: types.StringValue(mem.Role)}
	}
	m.Roles = make([]roleModel, len(c.Roles))
	for i, role := range c.Roles {
		m.Roles[i] = roleModel{Name: types.StringValue(role.Name), BootProfile: types.StringValue(role.BootProfile)}
	}
	m.Params = stringsToMap(c.Params, m.Params)
	maxUnavailable := c.Rollout.MaxUnavailable
	if maxUnavailable == 0 {
		maxUnavailable = 1 // the agent's default
	}
	m.Rollout = types.ObjectValueMust(rolloutAttrTypes, map[string]attr.Value{"max_unavailable": types.Int64Value(int64(maxUnavailable))})
	m.statusFromAPI(c)
}

// statusFromAPI copies only what the agent observes, leaving the inputs.
func (m *clusterModel) statusFromAPI(c *api.Cluster) {
	m.ID = types.StringValue(c.Name)
	statuses := make([]attr.Value, len(c.Members))
	for i, mem := range c.Members {
		statuses[i] = types.ObjectValueMust(memberStatusAttrTypes, map[string]attr.Value{
			"machine":    types.StringValue(mem.Machine),
			"role":       types.StringValue(mem.Role),
			"phase":      types.StringValue(string(mem.Phase)),
			"last_error": types.StringValue(mem.LastError),
			"addresses":  stringsToList(mem.Addresses, types.ListValueMust(types.StringType, nil)),
		})
	}
	m.MemberStatus = types.ListValueMust(types.ObjectType{AttrTypes: memberStatusAttrTypes}, statuses)
	m.Phase = types.StringValue(string(c.Phase))
	endpoints := make(map[string]attr.Value, len(c.Endpoints))
	for role, addrs := range c.Endpoints {
		endpoints[role] = stringsToList(addrs, types.ListValueMust(types.StringType, nil))
	}
	m.Endpoints = types.MapValueMust(types.ListType{ElemType: types.StringType}, endpoints)
}
