package provider

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

var (
	_ resource.Resource                = (*bootProfileResource)(nil)
	_ resource.ResourceWithConfigure   = (*bootProfileResource)(nil)
	_ resource.ResourceWithImportState = (*bootProfileResource)(nil)
)

// NewBootProfileResource is the baremetal_boot_profile resource factory.
func NewBootProfileResource() resource.Resource { return &bootProfileResource{} }

type bootProfileResource struct {
	client *client.Client
}

// bootProfileFields are the attributes the resource and the data source share.
type bootProfileFields struct {
	ID          types.String `tfsdk:"id"`
	Name        types.String `tfsdk:"name"`
	Kernel      types.String `tfsdk:"kernel"`
	Initrds     types.List   `tfsdk:"initrds"`
	Cmdline     types.String `tfsdk:"cmdline"`
	IPXEScript  types.String `tfsdk:"ipxe_script"`
	Image       types.Object `tfsdk:"image"`
	RootDevice  types.Object `tfsdk:"root_device"`
	Templates   types.Map    `tfsdk:"templates"`
	Params      types.Map    `tfsdk:"params"`
	WipeProfile types.String `tfsdk:"wipe_profile"`
	Version     types.Int64  `tfsdk:"version"`

	CallbackAnySource types.Bool `tfsdk:"callback_any_source"`
}

type bootProfileModel struct {
	bootProfileFields
	secretParamsModel
	Timeouts timeouts.Value `tfsdk:"timeouts"`
}

// defaultProfileUpdateTimeout bounds the rollout an update waits for.
const defaultProfileUpdateTimeout = 60 * time.Minute

func (r *bootProfileResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_boot_profile"
}

func (r *bootProfileResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "A boot profile says how a machine is installed: the kernel, initrds and kernel command line " +
			"its iPXE loads (or a whole iPXE script), plus the install templates (kickstart, preseed, cloud-init, " +
			"ignition...) the installer fetches. Every value is a Go `text/template` rendered per machine by the agent. " +
			"Changing a profile re-provisions, in place, the machines that were installed with it, and the update " +
			"waits (within `timeouts.update`) until every one of them is provisioned again with the new version, " +
			"cluster members at most `rollout.max_unavailable` at a time.",
		Attributes: secretParamsAttributes(map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "Identifier of the profile; equal to `name`.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "Name of the profile: " + nameRuleText + " Changing it replaces the profile.",
				Required:            true,
				Validators:          []validator.String{validName()},
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"kernel": schema.StringAttribute{
				MarkdownDescription: "Kernel to boot: a path under the agent's assets directory (e.g. `debian/linux`) or an absolute `http(s)` URL that iPXE fetches directly. Exactly one of `kernel`, `ipxe_script` and `image` is required.",
				Optional:            true,
				Validators: []validator.String{
					stringvalidator.ExactlyOneOf(path.MatchRoot("ipxe_script"), path.MatchRoot("image")),
					stringvalidator.LengthAtLeast(1),
				},
			},
			"initrds": schema.ListAttribute{
				MarkdownDescription: "Initial ramdisks, in load order; paths under the assets directory or absolute URLs.",
				ElementType:         types.StringType,
				Optional:            true,
			},
			"cmdline": schema.StringAttribute{
				MarkdownDescription: "Kernel command line. The agent appends `baremetal.url`, `baremetal.machine` and the per-run callback `baremetal.token`.",
				Optional:            true,
			},
			"ipxe_script": schema.StringAttribute{
				MarkdownDescription: "A complete iPXE script served instead of the one built from `kernel`, `initrds` and `cmdline`. It must start with `#!ipxe`. " +
					"It is served as written: to boot UEFI servers, name each initrd (`initrd --name <name> ...`) and, when `${platform}` is `efi`, " +
					"put `initrd=<name>` for each on the kernel line, as the stock script does (see the boot chain guide).",
				Optional: true,
				Validators: []validator.String{
					stringvalidator.ConflictsWith(path.MatchRoot("initrds"), path.MatchRoot("cmdline")),
					stringvalidator.RegexMatches(regexp.MustCompile(`^`+regexp.QuoteMeta(api.IPXEScriptMagic)),
						"to start with "+api.IPXEScriptMagic+" on its first line (iPXE runs a file without it as an image, not a script); add that line"),
				},
			},
			"image":       imageSchema(),
			"root_device": rootDeviceSchema(rootDeviceDescription + " A machine's `root_device` replaces these."),
			"templates": schema.MapAttribute{
				MarkdownDescription: "Install templates by name (e.g. `user-data`, `ks.cfg`), served rendered per machine at " +
					"`<boot URL>/machines/<name>/templates/<template name>`. Load them with `templatefile()` or `file()`.",
				ElementType: types.StringType,
				Optional:    true,
			},
			"params": schema.MapAttribute{
				MarkdownDescription: "Default template parameters; a machine's or cluster's `params` override them key by key.",
				ElementType:         types.StringType,
				Optional:            true,
			},
			"wipe_profile": schema.StringAttribute{
				MarkdownDescription: "Name of a profile the agent runs before powering a machine off when it is deprovisioned (e.g. to wipe its disks). A profile with an `image` is cleaned by the deploy ramdisk instead: see `image.wipe`.",
				Optional:            true,
				Validators:          []validator.String{validName()},
			},
			"callback_any_source": schema.BoolAttribute{
				MarkdownDescription: "Accept the installer's callback from any address. By default a run's callback is accepted only from the address its boot script was served to, so that someone who reads the run token from the (unauthenticated) boot script cannot report for the machine from elsewhere. Set it only when installers reach the agent through NAT or a proxy.",
				Optional:            true,
				Computed:            true,
				Default:             booldefault.StaticBool(false),
			},
			"version": schema.Int64Attribute{
				MarkdownDescription: "The agent's version of the profile, bumped by every change. Machines record the version they were installed with.",
				Computed:            true,
			},
		}, "the profile"),
		Blocks: map[string]schema.Block{
			"timeouts": timeouts.Block(ctx, timeouts.Opts{Update: true}),
		},
	}
}

func (r *bootProfileResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (r *bootProfileResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan bootProfileModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	name := plan.Name.ValueString()
	body := plan.request(ctx, &resp.Diagnostics)
	body.SecretParams = secretParamsToSend(ctx, req.Config, &plan.secretParamsModel, nil, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	bp, err := r.client.CreateBootProfile(ctx, body)
	if err != nil {
		detail := describeErr(err)
		if nameTaken(err) {
			detail += fmt.Sprintf("\n\nA boot profile named %q already exists; bring it under Terraform with an import block (to = baremetal_boot_profile.<name>, id = %q), or choose another name.", name, name)
		}
		addAPIError(&resp.Diagnostics, err, fmt.Sprintf("Unable to Create Boot Profile %q", name), detail)
		return
	}
	plan.fromAPI(bp)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
}

func (r *bootProfileResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state bootProfileModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	bp, err := r.client.GetBootProfile(ctx, state.Name.ValueString())
	if errors.Is(err, client.ErrNotFound) {
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		resp.Diagnostics.AddError(fmt.Sprintf("Unable to Read Boot Profile %q", state.Name.ValueString()), describeErr(err))
		return
	}
	state.fromAPI(bp)
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *bootProfileResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, prior bootProfileModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	name := plan.Name.ValueString()
	body := plan.request(ctx, &resp.Diagnostics)
	body.SecretParams = secretParamsToSend(ctx, req.Config, &plan.secretParamsModel, &prior.secretParamsModel, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, d := plan.Timeouts.Update(ctx, defaultProfileUpdateTimeout)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	bp, err := r.client.UpdateBootProfile(ctx, name, body)
	if err != nil {
		addAPIError(&resp.Diagnostics, err, fmt.Sprintf("Unable to Update Boot Profile %q", name), describeErr(err))
		return
	}
	plan.fromAPI(bp)
	// The profile itself is saved: record it before waiting, so a rollout
	// that fails or times out leaves a state that matches the agent.
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := r.awaitRollout(waitCtx, name, bp.Version, bp.UpdatedAt); err != nil {
		resp.Diagnostics.AddError(fmt.Sprintf("Boot Profile %q Rollout Did Not Complete", name),
			err.Error()+"\n\nThe profile is saved; the agent keeps re-provisioning its machines. Inspect them with "+
				"the baremetal_machines data source or the agent's events, fix the cause, and apply again.")
	}
}

func (r *bootProfileResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state bootProfileModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	name := state.Name.ValueString()
	err := r.client.DeleteBootProfile(ctx, name)
	if err != nil && !errors.Is(err, client.ErrNotFound) {
		detail := describeErr(err)
		if errors.Is(err, client.ErrConflict) {
			detail += "\n\nA profile still used by a machine, a cluster role or another profile's wipe_profile cannot be deleted; remove those references first."
		}
		resp.Diagnostics.AddError(fmt.Sprintf("Unable to Delete Boot Profile %q", name), detail)
	}
}

func (r *bootProfileResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	importByName(ctx, req, resp)
}

// rolloutPollInterval is the least time between two lists of a rollout
// wait: the agent answers a long-poll at once while a fleet is busy, and
// an agent without list long-polls answers every one at once.
const rolloutPollInterval = 2 * time.Second

// machineWatch yields the provisioned machines each time the agent's list
// of them changes, so a rollout wait sleeps in a long-poll instead of
// listing on a timer.
type machineWatch struct {
	client *client.Client
	etag   string
	last   time.Time
}

func (w *machineWatch) next(ctx context.Context) ([]api.Machine, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Until(w.last.Add(rolloutPollInterval))):
	}
	w.last = time.Now()
	list, err := w.client.WatchMachines(ctx, client.MachineFilter{State: api.StateProvisioned}, w.etag)
	if err != nil {
		return nil, err
	}
	w.etag = list.ETag
	return list.Items, nil
}

// awaitRollout waits until every machine last installed with the profile is
// provisioned again with at least version. A machine that fails after the
// profile's write at since ends the wait with its error (one that failed
// before is retried by the agent, since its target changed); one that
// leaves the profile (re-assigned, deleted, no longer desired provisioned)
// stops counting.
func (r *bootProfileResource) awaitRollout(ctx context.Context, name string, version uint64, since time.Time) error {
	watch := &machineWatch{client: r.client}
	lastPending := -1
	var pending []string
	for {
		machines, err := watch.next(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("timed out waiting for %d machine(s) to re-provision with version %d: %s",
				len(pending), version, strings.Join(pending, ", "))
		}
		if err != nil {
			return fmt.Errorf("listing machines to follow the rollout: %s", describeErr(err))
		}
		var failed []string
		pending = nil
		for _, m := range machines {
			if m.ProvisionedProfile != name {
				continue
			}
			switch {
			case m.Phase == api.PhaseFailed && !m.UpdatedAt.Before(since):
				failed = append(failed, fmt.Sprintf("%s: %s", m.Name, m.LastError))
			case m.Phase != api.PhaseProvisioned || m.ProvisionedProfileVersion < version:
				pending = append(pending, fmt.Sprintf("%s (phase %s)", m.Name, m.Phase))
			}
		}
		sort.Strings(pending)
		if len(failed) > 0 {
			sort.Strings(failed)
			return fmt.Errorf("re-provisioning with version %d failed on:\n  %s", version, strings.Join(failed, "\n  "))
		}
		if len(pending) == 0 {
			return nil
		}
		if len(pending) != lastPending {
			tflog.Info(ctx, "waiting for machines to re-provision with the new boot profile",
				map[string]any{"boot_profile": name, "version": version, "pending": strings.Join(pending, ", ")})
			lastPending = len(pending)
		}
	}
}

func (m *bootProfileFields) request(ctx context.Context, diags *diag.Diagnostics) api.BootProfileRequest {
	return api.BootProfileRequest{
		Name:        m.Name.ValueString(),
		Kernel:      m.Kernel.ValueString(),
		Initrds:     listToStrings(ctx, m.Initrds, diags),
		Cmdline:     m.Cmdline.ValueString(),
		IPXEScript:  m.IPXEScript.ValueString(),
		Image:       imageFromObject(m.Image),
		RootDevice:  rootDeviceFromObject(m.RootDevice),
		Templates:   mapToStrings(ctx, m.Templates, diags),
		Params:      mapToStrings(ctx, m.Params, diags),
		WipeProfile: m.WipeProfile.ValueString(),

		CallbackAnySource: m.CallbackAnySource.ValueBool(),
	}
}

func (m *bootProfileFields) fromAPI(bp *api.BootProfile) {
	m.ID = types.StringValue(bp.Name)
	m.Name = types.StringValue(bp.Name)
	m.Kernel = optString(bp.Kernel)
	m.Initrds = stringsToList(bp.Initrds, m.Initrds)
	m.Cmdline = optString(bp.Cmdline)
	m.IPXEScript = optString(bp.IPXEScript)
	m.Image = imageObject(bp.Image)
	m.RootDevice = rootDeviceObject(bp.RootDevice)
	m.Templates = stringsToMap(bp.Templates, m.Templates)
	m.Params = stringsToMap(bp.Params, m.Params)
	m.WipeProfile = optString(bp.WipeProfile)
	m.CallbackAnySource = types.BoolValue(bp.CallbackAnySource)
	m.Version = types.Int64Value(int64(bp.Version))
}
