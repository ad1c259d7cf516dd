package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-framework/types/basetypes"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

// Default timeouts: a server's POST, PXE boot and OS install take minutes.
const (
	defaultMachineCreateTimeout = 60 * time.Minute
	defaultMachineUpdateTimeout = 60 * time.Minute
	defaultMachineDeleteTimeout = 20 * time.Minute
)

// failureEventCount is how many of a machine's latest events a failure
// diagnostic shows: enough to see the step that went wrong, short enough to read.
const failureEventCount = 10

var (
	_ resource.Resource                   = (*machineResource)(nil)
	_ resource.ResourceWithConfigure      = (*machineResource)(nil)
	_ resource.ResourceWithImportState    = (*machineResource)(nil)
	_ resource.ResourceWithValidateConfig = (*machineResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*machineResource)(nil)
)

// NewMachineResource is the baremetal_machine resource factory.
func NewMachineResource() resource.Resource { return &machineResource{} }

type machineResource struct {
	client *client.Client
}

type machineModel struct {
	ID          types.String `tfsdk:"id"`
	Name        types.String `tfsdk:"name"`
	BMC         *bmcModel    `tfsdk:"bmc"`
	MACs        types.List   `tfsdk:"macs"`
	BootProfile types.String `tfsdk:"boot_profile"`
	Params      types.Map    `tfsdk:"params"`
	State       types.String `tfsdk:"state"`
	BootMode    types.String `tfsdk:"boot_mode"`
	RootDevice  types.Object `tfsdk:"root_device"`
	Adopt       types.Bool   `tfsdk:"adopt"`
	ForceDelete types.Bool   `tfsdk:"force_destroy"`
	// The triggers live only in Terraform's state: a change is the
	// operator asking for one re-provision or power cycle now.
	RebootTrigger      types.String `tfsdk:"reboot_trigger"`
	ReprovisionTrigger types.String `tfsdk:"reprovision_trigger"`
	Phase              types.String `tfsdk:"phase"`
	PowerState         types.String `tfsdk:"power_state"`
	LastError          types.String `tfsdk:"last_error"`
	BMCStatus          types.String `tfsdk:"bmc_status"`
	BMCStatusSince     types.String `tfsdk:"bmc_status_since"`
	HardwareFP         types.String `tfsdk:"hardware_fingerprint"`
	Addresses          types.List   `tfsdk:"addresses"`
	Inventory          types.Object `tfsdk:"inventory"`
	secretParamsModel
	Timeouts timeouts.Value `tfsdk:"timeouts"`
}

type bmcModel struct {
	Endpoint          types.String `tfsdk:"endpoint"`
	Username          types.String `tfsdk:"username"`
	Password          types.String `tfsdk:"password"`
	PasswordWO        types.String `tfsdk:"password_wo"`
	PasswordWOVersion types.Int64  `tfsdk:"password_wo_version"`
	Insecure          types.Bool   `tfsdk:"insecure"`
	CACertPEM         types.String `tfsdk:"ca_cert_pem"`
}

// stateDescription lists the desired states from the same list the
// validator enforces, so docs and validation cannot disagree.
func stateDescription() string {
	return "Desired state: " + quotedList(api.Strings(api.DesiredStates), " or ") + ". " +
		"`provisioned` installs the machine with its boot profile and leaves it running; " +
		"`available` keeps it registered and inventoried and leaves its power as it is; " +
		"`off` powers it off. Defaults to `provisioned`. When the agent observes a provisioned machine " +
		"powered off behind its back, this attribute reads `off`, so the next plan shows the drift and applying powers it on again."
}

func (r *machineResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_machine"
}

func (r *machineResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "A bare-metal server under the agent's care. The agent reaches it through its BMC (Redfish), " +
			"reads its inventory, and drives it to the desired `state`: for `provisioned` it sets a one-time PXE boot, " +
			"powers it on, serves the boot profile's installer and waits for the installer's callback. " +
			"Create and update wait for that within the `timeouts`; with `TF_LOG=info` Terraform prints each phase change. " +
			"Changing `boot_profile` or `params` re-provisions the machine in place.\n\n" +
			"A machine without `boot_profile` is provisioned by the `baremetal_cluster` that names it (with its role's profile); " +
			"until then the resource waits only for it to be registered and inventoried.",
		Attributes: secretParamsAttributes(map[string]schema.Attribute{
			"id": schema.StringAttribute{
				MarkdownDescription: "Identifier of the machine; equal to `name`.",
				Computed:            true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
			},
			"name": schema.StringAttribute{
				MarkdownDescription: "Name of the machine: " + nameRuleText + " Used in boot URLs and templates. Changing it replaces the machine.",
				Required:            true,
				Validators:          []validator.String{validName()},
				PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
			},
			"bmc": schema.SingleNestedAttribute{
				MarkdownDescription: "How the agent reaches the machine's baseboard management controller over Redfish.",
				Required:            true,
				Attributes: map[string]schema.Attribute{
					"endpoint": schema.StringAttribute{
						MarkdownDescription: "Redfish endpoint: `https://host[:port]` (the BMC's first system is used) or a full system URL " +
							"`https://host[:port]/redfish/v1/Systems/<id>` for BMCs that manage several systems. " +
							"`http://` is accepted for labs and emulators, with a warning at plan: over plain HTTP the agent's every " +
							"Redfish login sends the username and password in the clear (in the session request's body, then as basic " +
							"auth), and everything the BMC answers can be read and altered on the way; the agent records a `bmc_insecure` event too.",
						Required:   true,
						Validators: []validator.String{bmcEndpoint()},
					},
					"username": schema.StringAttribute{
						MarkdownDescription: "BMC user name.",
						Required:            true,
						Validators:          []validator.String{stringvalidator.LengthAtLeast(1)},
					},
					"password": schema.StringAttribute{
						MarkdownDescription: "BMC password; stored (marked sensitive) in the Terraform state. Prefer `password_wo`. Exactly one of `password` and `password_wo` is required.",
						Optional:            true,
						Sensitive:           true,
						Validators: []validator.String{
							stringvalidator.ExactlyOneOf(path.MatchRelative().AtParent().AtName("password_wo")),
						},
					},
					"password_wo": schema.StringAttribute{
						MarkdownDescription: "Write-only BMC password (Terraform 1.11 or later): sent to the agent but never stored in the plan or state. " +
							"Terraform cannot detect a change of a write-only value, so bump `password_wo_version` to send a new one.",
						Optional:  true,
						Sensitive: true,
						WriteOnly: true,
					},
					"password_wo_version": schema.Int64Attribute{
						MarkdownDescription: "Any number; changing it sends the current `password_wo` to the agent. Only used with `password_wo`.",
						Optional:            true,
						Validators: []validator.Int64{
							int64validator.AlsoRequires(path.MatchRelative().AtParent().AtName("password_wo")),
						},
					},
					"insecure": schema.BoolAttribute{
						MarkdownDescription: "Skip TLS verification of the BMC's certificate (self-signed BMC certificates are common). Defaults to `false`.",
						Optional:            true,
						Computed:            true,
						Default:             booldefault.StaticBool(false),
					},
					"ca_cert_pem": schema.StringAttribute{
						MarkdownDescription: "PEM-encoded CA certificate to verify the BMC's TLS certificate with.",
						Optional:            true,
					},
				},
			},
			"macs": schema.ListAttribute{
				MarkdownDescription: "MAC addresses of the machine's provisioning NICs, in lower-case colon form. " +
					"When omitted, the agent discovers them from the BMC's inventory.",
				ElementType: types.StringType,
				Optional:    true,
				Computed:    true,
				Validators: []validator.List{
					listvalidator.ValueStringsAre(validMAC()),
					listvalidator.UniqueValues(),
				},
				PlanModifiers: []planmodifier.List{listplanmodifier.UseStateForUnknown()},
			},
			"boot_profile": schema.StringAttribute{
				MarkdownDescription: "Name of the `baremetal_boot_profile` to install the machine with. A cluster role's profile takes precedence for cluster members.",
				Optional:            true,
				Validators:          []validator.String{validName()},
			},
			"params": schema.MapAttribute{
				MarkdownDescription: "Template parameters for this machine (e.g. `hostname`, `disk`); they override the profile's `params`.",
				ElementType:         types.StringType,
				Optional:            true,
			},
			"state": schema.StringAttribute{
				MarkdownDescription: stateDescription(),
				Optional:            true,
				Computed:            true,
				Default:             stringdefault.StaticString(string(api.StateProvisioned)),
				Validators:          []validator.String{stringvalidator.OneOf(api.Strings(api.DesiredStates)...)},
			},
			"boot_mode": schema.StringAttribute{
				MarkdownDescription: "Firmware boot mode the agent asks the BMC for with every boot override (Redfish `BootSourceOverrideMode`): " +
					quotedList(api.Strings(api.BootModes), " or ") + ". Unset, the agent keeps the mode the BMC reports (the machine's `inventory.boot_mode`) " +
					"and never switches a UEFI machine to Legacy. A mode the BMC does not allow is refused, naming the modes it allows. " +
					"A change applies from the next boot the agent sets up; it does not reinstall the machine by itself.",
				Optional:   true,
				Validators: []validator.String{stringvalidator.OneOf(api.Strings(api.BootModes)...)},
			},
			"root_device": rootDeviceSchema(rootDeviceDescription + " For this machine, replacing its profile's `root_device`."),
			"adopt": schema.BoolAttribute{
				MarkdownDescription: "Take over a machine that already runs its OS: on registration the agent records it as provisioned with its " +
					"boot profile and params, with no power action and no install. It counts only until the machine is first provisioned; " +
					"later changes of `boot_profile` or `params` re-provision it as usual. Defaults to `false`.",
				Optional: true,
				Computed: true,
				Default:  booldefault.StaticBool(false),
			},
			"force_destroy": schema.BoolAttribute{
				MarkdownDescription: "Destroy removes the machine from the agent at once, without powering it off or waiting for its BMC. " +
					"Without it, destroy powers the machine off first, except a machine the agent never powered on (removed at once) and one whose BMC " +
					"fails the power-off for good (removed after the agent's retries, with a warning). A machine whose disk holds an image's config drive " +
					"is cleaned by the deploy ramdisk first (see the boot profile's `image.wipe`); if that clean fails, destroy fails with the reason and " +
					"the agent keeps the machine until a destroy succeeds. `force_destroy` skips the clean too. Defaults to `false`.",
				Optional: true,
				Computed: true,
				Default:  booldefault.StaticBool(false),
			},
			"reboot_trigger": schema.StringAttribute{
				MarkdownDescription: "Any string. Changing it power-cycles the machine once (a forced restart through its BMC, booting from disk) " +
					"and waits until it is on again. Setting it when the machine is created does nothing.",
				Optional: true,
			},
			"reprovision_trigger": schema.StringAttribute{
				MarkdownDescription: "Any string. Changing it re-provisions the machine once with its current boot profile and params " +
					"(a new run: one power cycle, a PXE boot, the installer) and waits for the install. Setting it when the machine is created does nothing.",
				Optional: true,
			},
			"phase": schema.StringAttribute{
				MarkdownDescription: "Phase the agent observes: " + quotedList(api.Strings(api.MachinePhases), " or ") + ". " +
					"While the machine has not reached its desired `state` (a failure, a run still going after a timeout), the plan shows this attribute changing, " +
					"and applying asks for the desired state again: a failed machine is retried, a running one is waited for.",
				Computed: true,
			},
			"bmc_status": schema.StringAttribute{
				MarkdownDescription: "How the machine's BMC answered the agent's last call: " + quotedList(api.BMCStatuses, ", ") + " " +
					"(`auth_failed`: the BMC refuses the credentials; `unreachable`: no answer). Empty before the first call. " +
					"While it is not `ok`, `last_error` says what failed and the plan shows this attribute changing; applying with the fixed " +
					"credentials (`password`, or `password_wo` with a new `password_wo_version`) or endpoint checks the BMC again at once.",
				Computed: true,
			},
			"bmc_status_since": schema.StringAttribute{
				MarkdownDescription: "When `bmc_status` took its value (RFC 3339).",
				Computed:            true,
			},
			"hardware_fingerprint": schema.StringAttribute{
				MarkdownDescription: "The hardware fingerprint (CPUs, memory, disks, NICs) last accepted: the first inventory's, then the one current at each apply. " +
					"When the agent reads a different `inventory.fingerprint` (changed hardware), the plan shows this attribute changing to it; applying accepts it.",
				Computed: true,
			},
			"power_state": schema.StringAttribute{
				MarkdownDescription: "Power state the BMC reports (`On` or `Off`).",
				Computed:            true,
			},
			"last_error": schema.StringAttribute{
				MarkdownDescription: "The agent's last error for this machine, empty when none.",
				Computed:            true,
			},
			"addresses": schema.ListAttribute{
				MarkdownDescription: "IP addresses the installer reported in its callback.",
				ElementType:         types.StringType,
				Computed:            true,
			},
			"inventory": inventoryResourceAttribute(),
		}, "the machine"),
		Blocks: map[string]schema.Block{
			"timeouts": timeouts.Block(ctx, timeouts.Opts{Create: true, Update: true, Delete: true}),
		},
	}
}

// ValidateConfig catches what attribute validators cannot: a write-only
// password whose version is missing makes later rotations impossible to express.
func (r *machineResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var obj types.Object
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("bmc"), &obj)...)
	if resp.Diagnostics.HasError() || obj.IsNull() || obj.IsUnknown() {
		return // an unknown bmc (from a module output) is checked once known
	}
	var bmc bmcModel
	resp.Diagnostics.Append(obj.As(ctx, &bmc, basetypes.ObjectAsOptions{})...)
	if resp.Diagnostics.HasError() {
		return
	}
	if ep := bmc.Endpoint.ValueString(); strings.HasPrefix(strings.ToLower(ep), "http://") {
		resp.Diagnostics.AddAttributeWarning(path.Root("bmc").AtName("endpoint"), "Plain-HTTP BMC Endpoint",
			fmt.Sprintf("The BMC endpoint %s is plain http: on every Redfish login the agent sends the BMC username and password "+
				"in the clear (in the session request, then as basic auth), and the BMC's answers can be read and altered on the way. "+
				"Use https unless this is a lab or an emulator.", ep))
	}
	if !bmc.PasswordWO.IsNull() && bmc.PasswordWOVersion.IsNull() {
		resp.Diagnostics.AddAttributeWarning(path.Root("bmc").AtName("password_wo_version"), "Missing Write-Only Password Version",
			"password_wo is set without password_wo_version. Terraform cannot see a change of a write-only value, "+
				"so set password_wo_version and bump it whenever the password changes.")
	}
}

func (r *machineResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (r *machineResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan machineModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	name := plan.Name.ValueString()
	timeout, d := plan.Timeouts.Create(ctx, defaultMachineCreateTimeout)
	resp.Diagnostics.Append(d...)
	password := r.configPassword(ctx, req.Config, &plan, &resp.Diagnostics)
	body := plan.request(ctx, password, &resp.Diagnostics)
	body.SecretParams = secretParamsToSend(ctx, req.Config, &plan.secretParamsModel, nil, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}

	m, err := r.client.CreateMachine(ctx, body)
	if err != nil {
		detail := describeErr(err)
		switch {
		case nameTaken(err):
			detail += fmt.Sprintf("\n\nA machine named %q is already registered; bring it under Terraform with an import block (to = baremetal_machine.<name>, id = %q), or choose another name.", name, name)
		case macTaken(err):
			detail += "\n\nAnother machine registered with the agent lists one of these MACs: fix macs, or leave them unset to use the BMC's inventory."
		}
		addAPIError(&resp.Diagnostics, err, fmt.Sprintf("Unable to Create Machine %q", name), detail)
		return
	}
	// From here on the machine exists: state is always saved, so a failed
	// wait taints the resource instead of orphaning the machine. A wait
	// that only ran out of time while the run goes on is a warning: a
	// tainted machine would be reinstalled by the next apply, which should
	// wait on the same run instead (the plan shows the machine unfinished).
	last, err := r.wait(ctx, timeout, m)
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded) && stillRunning(r.fresh(name, last)):
		resp.Diagnostics.AddWarning(fmt.Sprintf("Machine %q Still Provisioning", name),
			r.failureDetail(name, fmt.Sprintf("did not reach state %q", plan.State.ValueString()), timeout, last, err)+
				"\n\nThe machine is saved in the state, not tainted: run terraform apply again to keep waiting on the same run; it does not reinstall the machine.")
	default:
		resp.Diagnostics.AddError(fmt.Sprintf("Unable to Create Machine %q", name),
			r.failureDetail(name, fmt.Sprintf("did not reach state %q", plan.State.ValueString()), timeout, last, err))
	}
	plan.fromAPI(last)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	saveConverged(ctx, resp.Private, last, &resp.Diagnostics)
}

// stillRunning reports whether m is in a provisioning run the agent is
// moving along: no failure, the BMC answering.
func stillRunning(m *api.Machine) bool {
	return m.Phase == api.PhaseProvisioning && m.BMCStatus != api.BMCStatusAuthFailed && m.BMCStatus != api.BMCStatusUnreachable
}

// fresh re-reads the machine with its own short deadline (the caller's may
// be spent), falling back to last.
func (r *machineResource) fresh(name string, last *api.Machine) *api.Machine {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if m, err := r.client.GetMachine(ctx, name); err == nil {
		return m
	}
	return last
}

func (r *machineResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state machineModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	m, err := r.client.GetMachine(ctx, state.Name.ValueString())
	if errors.Is(err, client.ErrNotFound) {
		tflog.Info(ctx, "machine is gone from the agent; removing it from state", map[string]any{"machine": state.Name.ValueString()})
		resp.State.RemoveResource(ctx)
		return
	}
	if err != nil {
		resp.Diagnostics.AddError(fmt.Sprintf("Unable to Read Machine %q", state.Name.ValueString()), describeErr(err))
		return
	}
	if state.BMC == nil { // import: only id and name are known
		state.BMC = &bmcModel{PasswordWO: types.StringNull(), Password: types.StringNull(), PasswordWOVersion: types.Int64Null()}
	}
	if state.ForceDelete.IsNull() {
		state.ForceDelete = types.BoolValue(false)
	}
	state.fromAPI(m)
	if drifted := observedState(m); drifted != m.State {
		tflog.Warn(ctx, "machine power differs from its desired state", map[string]any{
			"machine": m.Name, "desired": m.State, "power_state": m.PowerState, "reads_as": drifted,
		})
		state.State = types.StringValue(string(drifted))
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
	saveConverged(ctx, resp.Private, m, &resp.Diagnostics)
}

func (r *machineResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, prior machineModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	name := plan.Name.ValueString()
	timeout, d := plan.Timeouts.Update(ctx, defaultMachineUpdateTimeout)
	resp.Diagnostics.Append(d...)

	var password string
	switch {
	case !plan.BMC.Password.IsNull():
		password = plan.BMC.Password.ValueString()
	case !plan.BMC.PasswordWOVersion.Equal(prior.BMC.PasswordWOVersion) || !prior.BMC.Password.IsNull():
		// A write-only password is sent only when its version changes (or
		// when switching from password to password_wo); otherwise the
		// agent keeps the stored one.
		password = r.configPassword(ctx, req.Config, &plan, &resp.Diagnostics)
	}
	body := plan.request(ctx, password, &resp.Diagnostics)
	body.SecretParams = secretParamsToSend(ctx, req.Config, &plan.secretParamsModel, &prior.secretParamsModel, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}

	// A failed update keeps the prior inputs in state, so the next plan
	// still shows what was not applied.
	keepPrior := func(m *api.Machine) {
		if m != nil {
			prior.fromAPIStatus(m)
			saveConverged(ctx, resp.Private, m, &resp.Diagnostics)
		}
		resp.Diagnostics.Append(resp.State.Set(ctx, &prior)...)
	}
	m, err := r.client.UpdateMachine(ctx, name, body)
	if err != nil {
		addAPIError(&resp.Diagnostics, err, fmt.Sprintf("Unable to Update Machine %q", name), describeErr(err))
		keepPrior(nil)
		return
	}
	// Power drift is not a spec change, so the update alone would not make
	// the agent act: ask for the power action the desired state implies.
	if action := repairAction(m); action != "" {
		tflog.Info(ctx, "correcting power drift", map[string]any{"machine": name, "action": action})
		acted, err := r.client.MachineAction(ctx, name, action)
		if err != nil {
			resp.Diagnostics.AddError(fmt.Sprintf("Unable to Update Machine %q", name),
				fmt.Sprintf("The machine's power is %s while its desired state is %q, and the %s action failed: %s",
					m.PowerState, m.State, action, describeErr(err)))
			keepPrior(m)
			return
		}
		m = acted
	}
	reprovision := triggered(prior.ReprovisionTrigger, plan.ReprovisionTrigger)
	reboot := triggered(prior.RebootTrigger, plan.RebootTrigger) && !reprovision // a re-provision power-cycles anyway
	if reprovision {
		acted, err := r.client.MachineAction(ctx, name, api.ActionProvision)
		if err != nil {
			addAPIError(&resp.Diagnostics, err, fmt.Sprintf("Unable to Re-provision Machine %q", name),
				"reprovision_trigger changed, and starting the new run failed: "+describeErr(err))
			keepPrior(m)
			return
		}
		m = acted
	}
	// Once the action is sent the trigger has done its part: a failure
	// after it shows as the machine's phase, not as the trigger again.
	prior.ReprovisionTrigger = plan.ReprovisionTrigger
	m = r.await(ctx, timeout, m, api.DesiredState(plan.State.ValueString()), "Update", &resp.Diagnostics)
	if !resp.Diagnostics.HasError() && reboot {
		acted, err := r.client.MachineAction(ctx, name, api.ActionReset)
		if err != nil {
			addAPIError(&resp.Diagnostics, err, fmt.Sprintf("Unable to Reboot Machine %q", name),
				"reboot_trigger changed, and the power cycle failed: "+describeErr(err))
			keepPrior(m)
			return
		}
		prior.RebootTrigger = plan.RebootTrigger
		m = r.await(ctx, timeout, acted, api.DesiredState(plan.State.ValueString()), "Update", &resp.Diagnostics)
	}
	if resp.Diagnostics.HasError() {
		keepPrior(m)
		return
	}
	plan.fromAPI(m)
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	saveConverged(ctx, resp.Private, m, &resp.Diagnostics)
}

// privateConverged is the private-state key holding the agent's converged
// verdict at the last observation: a plan is made from state alone, and the
// provider does not judge phases itself.
const privateConverged = "converged"

func saveConverged(ctx context.Context, p interface {
	SetKey(context.Context, string, []byte) diag.Diagnostics
}, m *api.Machine, diags *diag.Diagnostics) {
	diags.Append(p.SetKey(ctx, privateConverged, []byte(strconv.FormatBool(m.Converged)))...)
}

// triggered reports whether a trigger attribute changed to a value: the
// operator asking for the action once. Clearing it asks for nothing.
func triggered(prior, planned types.String) bool {
	return !planned.IsNull() && !planned.IsUnknown() && !planned.Equal(prior)
}

// ModifyPlan makes unfinished business show in the plan: a machine that has
// not reached its desired state (failed, or still in a run after a
// timeout), whose BMC refuses the agent or does not answer, or whose
// hardware changed plans an update, and applying it asks the agent again
// (a failed machine retries, a running one is waited for, new credentials
// are checked, the new hardware is accepted).
func (r *machineResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.State.Raw.IsNull() || req.Plan.Raw.IsNull() {
		return
	}
	var phase, power, bmcStatus, lastError, accepted, current, priorDesired, desired, profile types.String
	for _, a := range []struct {
		p   path.Path
		dst *types.String
	}{
		{path.Root("phase"), &phase}, {path.Root("power_state"), &power}, {path.Root("bmc_status"), &bmcStatus},
		{path.Root("last_error"), &lastError}, {path.Root("hardware_fingerprint"), &accepted},
		{path.Root("inventory").AtName("fingerprint"), &current}, {path.Root("state"), &priorDesired},
	} {
		resp.Diagnostics.Append(req.State.GetAttribute(ctx, a.p, a.dst)...)
	}
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, path.Root("state"), &desired)...)
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, path.Root("boot_profile"), &profile)...)
	if resp.Diagnostics.HasError() || phase.ValueString() == "" || desired.IsUnknown() {
		return
	}
	verdict, d := req.Private.GetKey(ctx, privateConverged)
	resp.Diagnostics.Append(d...)
	// The agent's verdict is about the desired state it had; a changed one
	// is not reached yet. State saved before the agent published a verdict
	// has none, and plans nothing on that account.
	converged := (verdict == nil || string(verdict) == "true") && desired.Equal(priorDesired)
	observed := &api.Machine{Phase: api.MachinePhase(phase.ValueString()), PowerState: power.ValueString(), BMCStatus: bmcStatus.ValueString(), Converged: converged}
	drift := current.ValueString() != "" && current.ValueString() != accepted.ValueString()
	why := pendingWhy(observed, api.DesiredState(desired.ValueString()), profile.IsNull(), drift)
	if why == "" {
		return
	}
	tflog.Info(ctx, "machine has not converged; planning an update that asks the agent again", map[string]any{
		"reason": why, "last_error": lastError.ValueString(),
	})
	for _, a := range []string{"phase", "power_state", "last_error", "bmc_status", "bmc_status_since"} {
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root(a), types.StringUnknown())...)
	}
	resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("addresses"), types.ListUnknown(types.StringType))...)
	if drift {
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("hardware_fingerprint"), current)...)
	}
}

// pendingWhy says why a machine as last observed still needs an apply
// ("" when it does not): it failed, it has not converged on desired, its
// BMC refuses or does not answer, or its hardware drifted.
func pendingWhy(m *api.Machine, desired api.DesiredState, clusterManaged, hardwareDrift bool) string {
	switch {
	case m.Phase == api.PhaseFailed && clusterManaged:
		// Its cluster retries it, in role order; the cluster's plan shows it.
		return ""
	case m.Phase == api.PhaseFailed:
		return "the machine failed"
	case !m.Converged:
		return fmt.Sprintf("phase %s has not reached state %s", m.Phase, desired)
	case bmcDown(m):
		return "bmc_status is " + m.BMCStatus
	case hardwareDrift:
		return "the hardware fingerprint changed"
	}
	return ""
}

func bmcDown(m *api.Machine) bool {
	return m.BMCStatus == api.BMCStatusAuthFailed || m.BMCStatus == api.BMCStatusUnreachable
}

func (r *machineResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state machineModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() || !requireClient(r.client, &resp.Diagnostics) {
		return
	}
	name := state.Name.ValueString()
	timeout, d := state.Timeouts.Delete(ctx, defaultMachineDeleteTimeout)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	summary := fmt.Sprintf("Unable to Delete Machine %q", name)

	force := state.ForceDelete.ValueBool()
	err := r.client.DeleteMachine(ctx, name, force)
	if errors.Is(err, client.ErrNotFound) || (force && err == nil) {
		return
	}
	if err != nil {
		detail := describeErr(err)
		if errors.Is(err, client.ErrConflict) && !client.LeaseHeld(err) {
			detail += "\n\nA cluster member is released by its cluster first: remove it from the baremetal_cluster's members (or destroy the cluster) before deleting the machine."
		}
		resp.Diagnostics.AddError(summary, detail)
		return
	}
	// The agent powers the machine off (deprovisioning it) and then forgets
	// it; the machine is deleted once GET answers 404.
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	waitCtx, lease := keepLease(waitCtx, r.client, name)
	tracker := newPhaseTracker(ctx, name, 0)
	var seen *api.Machine
	var deprovisioning bool
	last, err := r.client.WaitMachine(waitCtx, name, func(m *api.Machine) (bool, error) {
		tracker.observe(m)
		seen = m
		return false, cleanFailed(m, &deprovisioning)
	})
	if lost := lease.end(); lost != nil && !errors.Is(err, client.ErrNotFound) {
		err = lost
	}
	if errors.Is(err, client.ErrNotFound) {
		if seen != nil && seen.Phase == api.PhaseFailed && seen.LastError != "" {
			// The agent gave up on the power-off after its retries and
			// removed the machine anyway.
			resp.Diagnostics.AddWarning(fmt.Sprintf("Machine %q Deleted Without a Power-Off", name),
				"The agent could not power the machine off and removed it anyway: "+seen.LastError+
					"\n\nThe server may still be running: power it off at its console or BMC once that answers again.")
		}
		return
	}
	if err == nil {
		err = errors.New("wait ended before the machine was removed")
	}
	resp.Diagnostics.AddError(summary, r.failureDetail(name, "was not removed", timeout, last, err))
}

func (r *machineResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	importByName(ctx, req, resp)
}

// configPassword returns the password to send: the plain attribute, or the
// write-only one, which exists only in the configuration.
func (r *machineResource) configPassword(ctx context.Context, cfg interface {
	GetAttribute(context.Context, path.Path, any) diag.Diagnostics
}, plan *machineModel, diags *diag.Diagnostics) string {
	if plan.BMC != nil && !plan.BMC.Password.IsNull() {
		return plan.BMC.Password.ValueString()
	}
	var wo types.String
	diags.Append(cfg.GetAttribute(ctx, path.Root("bmc").AtName("password_wo"), &wo)...)
	return wo.ValueString()
}

// await waits until the agent reports the machine converged on desired,
// and adds an error diagnostic (with the last phase, last_error and recent
// events) when it fails or the timeout passes. It renews the run's lease on
// the machine while it waits and releases it once the machine converged. It
// returns the last observation, which is never nil.
func (r *machineResource) await(ctx context.Context, timeout time.Duration, m *api.Machine, desired api.DesiredState, op string, diags *diag.Diagnostics) *api.Machine {
	last, err := r.wait(ctx, timeout, m)
	if err != nil {
		what := fmt.Sprintf("did not reach state %q", desired)
		diags.AddError(fmt.Sprintf("Unable to %s Machine %q", op, m.Name), r.failureDetail(m.Name, what, timeout, last, err))
	}
	return last
}

// wait is await without the diagnostic: the last observation (never nil)
// and why the wait ended early, if it did.
func (r *machineResource) wait(ctx context.Context, timeout time.Duration, m *api.Machine) (*api.Machine, error) {
	name := m.Name
	minVersion := m.Version
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	waitCtx, lease := keepLease(waitCtx, r.client, name)
	tracker := newPhaseTracker(ctx, name, minVersion)
	last, err := r.client.WaitMachine(waitCtx, name, func(m *api.Machine) (bool, error) {
		tracker.observe(m)
		if m.ObservedVersion < minVersion {
			return false, nil // the agent has not acted on this spec yet
		}
		if m.Phase == api.PhaseFailed {
			return false, errMachineFailed
		}
		if !m.Converged {
			return false, nil
		}
		if bmcDown(m) {
			return false, errBMCDown
		}
		return true, nil
	})
	if lost := lease.end(); lost != nil && err != nil {
		err = lost
	}
	if err == nil && last != nil {
		releaseLease(ctx, r.client, name)
		return last, nil
	}
	if last == nil {
		last = m
	}
	return last, err
}

// cleanFailed ends a destroy's wait once the clean run of an image
// deploy, seen under way (deprovisioning), has failed: the agent keeps
// such a machine (its disk may still hold the config drive) rather than
// forget it, so waiting longer would only reach the timeout.
func cleanFailed(m *api.Machine, deprovisioning *bool) error {
	switch {
	case m.Phase == api.PhaseDeprovisioning:
		*deprovisioning = true
	case *deprovisioning && m.Phase == api.PhaseFailed && m.CleanPending != "":
		return errCleanFailed
	}
	return nil
}

var (
	errCleanFailed   = errors.New("the deploy ramdisk's clean of its disk failed, and the agent keeps the machine")
	errMachineFailed = errors.New("the agent marked the machine failed")
	errBMCDown       = errors.New("its BMC refuses the agent's login or does not answer (bmc_status)")
)

// observedState is the desired state as Terraform should see it: the
// agent's desired state, unless the machine's power contradicts it.
func observedState(m *api.Machine) api.DesiredState {
	if !m.PowerDrift {
		return m.State
	}
	switch {
	case m.State == api.StateProvisioned && m.PowerState == api.PowerOff:
		return api.StateOff
	case m.State == api.StateOff && m.PowerState == api.PowerOn:
		// Registered and running: what "available" means.
		return api.StateAvailable
	}
	return m.State
}

// repairAction is the power action that undoes drift, if any.
func repairAction(m *api.Machine) api.Action {
	switch observedState(m) {
	case m.State:
		return ""
	case api.StateOff:
		return api.ActionPowerOn
	default:
		return api.ActionPowerOff
	}
}

// phaseTracker logs each phase change once, so TF_LOG=info shows progress,
// and each new last_error within a step as a warning: a stalled boot says
// where it stalled while the apply is still waiting on it.
type phaseTracker struct {
	ctx       context.Context
	name      string
	phase     api.MachinePhase
	step      api.Step
	lastError string
	// minVersion is the spec version the wait is about: a last_error the
	// agent wrote before it observed that version is stale and not shown.
	minVersion uint64
}

func newPhaseTracker(ctx context.Context, name string, minVersion uint64) *phaseTracker {
	return &phaseTracker{ctx: ctx, name: name, minVersion: minVersion}
}

func (t *phaseTracker) observe(m *api.Machine) {
	if m.ObservedVersion < t.minVersion {
		return
	}
	moved := m.Phase != t.phase || m.Step != t.step
	noted := m.LastError != t.lastError && m.LastError != ""
	t.phase, t.step, t.lastError = m.Phase, m.Step, m.LastError
	if !moved && !noted {
		return
	}
	fields := map[string]any{"machine": t.name, "phase": m.Phase}
	if m.Step != "" {
		fields["step"] = m.Step
	}
	if m.LastError != "" {
		fields["last_error"] = m.LastError
	}
	if moved {
		tflog.Info(t.ctx, "machine phase changed", fields)
		return
	}
	tflog.Warn(t.ctx, "machine reports a problem while the apply waits: "+m.LastError, fields)
}

// failureDetail explains a failed or timed-out wait with what the agent
// last saw, so the operator does not need to go to the agent's logs.
func (r *machineResource) failureDetail(name, what string, timeout time.Duration, last *api.Machine, err error) string {
	// The caller's context may be spent (timeout): fetch the evidence with a fresh one.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if fresh, gerr := r.client.GetMachine(ctx, name); gerr == nil {
		last = fresh
	}

	var why string
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		why = fmt.Sprintf("Machine %q %s within the timeout (%s).", name, what, timeout)
	case errors.Is(err, errMachineFailed):
		why = fmt.Sprintf("Machine %q %s: the agent marked it failed.", name, what)
	case errors.Is(err, errCleanFailed):
		why = fmt.Sprintf("Machine %q %s: %s.", name, what, err)
	case errors.Is(err, errBMCDown):
		why = fmt.Sprintf("Machine %q %s: %s.", name, what, err)
	default:
		why = fmt.Sprintf("Machine %q %s: %s", name, what, describeErr(err))
	}
	detail := why
	if last != nil {
		detail += "\n\n" + machineSummary(last)
	}
	if evs := r.lastEvents(ctx, name, failureEventCount); len(evs) > 0 {
		detail += "\n\nLast events:"
		for _, e := range evs {
			detail += "\n  " + formatEvent(e)
		}
	}
	detail += "\n\n" + nextStep(last, err)
	return detail
}

// nextStep tells the operator what to do after a failed wait, by what
// stopped it: fix the cause and apply again (the plan shows the machine
// unfinished), or apply again to keep waiting.
func nextStep(m *api.Machine, err error) string {
	switch {
	case m != nil && bmcDown(m):
		return "The BMC is " + strings.ReplaceAll(m.BMCStatus, "_", " ") + ": fix bmc.endpoint or the credentials (password, or password_wo with a new password_wo_version) and apply again; the machine resumes where it stopped."
	case errors.Is(err, errCleanFailed):
		return "Fix the cause named above and destroy again, which retries the clean. To remove the machine without the clean (then clean its disk yourself), " +
			"delete it with force: the agent API's DELETE /v1/machines/<name>?force=true (what force_destroy = true does when it is set before the destroy)."
	case errors.Is(err, errMachineFailed):
		return "Fix the cause named above (a boot profile or template, params, macs, the BMC's credentials) and apply again: the next plan shows the machine as unfinished, and applying retries it."
	case errors.Is(err, context.DeadlineExceeded):
		return "The agent keeps working on the machine: apply again to keep waiting on the same run, or raise the resource's timeouts if the hardware is slow."
	}
	return "Apply again once the cause is fixed."
}

func machineSummary(m *api.Machine) string {
	s := "Last phase: " + string(m.Phase)
	if m.Step != "" {
		s += " (step " + string(m.Step) + ")"
	}
	if m.PowerState != "" {
		s += "\nPower state: " + m.PowerState
	}
	if m.LastError != "" {
		s += "\nLast error: " + m.LastError
	}
	return s
}

func formatEvent(e api.Event) string {
	s := e.Time.UTC().Format(time.RFC3339) + " " + e.Type
	if e.Phase != "" {
		s += " phase=" + string(e.Phase)
	}
	if e.Step != "" {
		s += " step=" + string(e.Step)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// lastEvents pages through the machine's events (cursor based, oldest
// first) and keeps the newest n. Bounded so a huge history cannot stall a
// diagnostic.
func (r *machineResource) lastEvents(ctx context.Context, name string, n int) []api.Event {
	const pageSize, maxPages = 500, 20
	var tail []api.Event
	var after uint64
	for range maxPages {
		page, err := r.client.MachineEvents(ctx, name, after, pageSize)
		if err != nil || page == nil {
			break
		}
		tail = append(tail, page.Events...)
		if len(tail) > n {
			tail = tail[len(tail)-n:]
		}
		if len(page.Events) < pageSize || page.Next <= after {
			break
		}
		after = page.Next
	}
	// Events are numbered as written; one about a BMC action is timed when
	// the action was sent, which may be before events written ahead of it.
	slices.SortStableFunc(tail, func(a, b api.Event) int { return a.Time.Compare(b.Time) })
	return tail
}

func (m *machineModel) request(ctx context.Context, password string, diags *diag.Diagnostics) api.MachineRequest {
	req := api.MachineRequest{
		Name:        m.Name.ValueString(),
		MACs:        listToStrings(ctx, m.MACs, diags),
		BootProfile: m.BootProfile.ValueString(),
		Params:      mapToStrings(ctx, m.Params, diags),
		State:       api.DesiredState(m.State.ValueString()),
		BootMode:    api.BootMode(m.BootMode.ValueString()),
		RootDevice:  rootDeviceFromObject(m.RootDevice),
		Adopt:       m.Adopt.ValueBool(),
	}
	if m.BMC != nil {
		req.BMC = api.BMCRequest{
			Endpoint:  m.BMC.Endpoint.ValueString(),
			Username:  m.BMC.Username.ValueString(),
			Password:  password,
			Insecure:  m.BMC.Insecure.ValueBool(),
			CACertPEM: m.BMC.CACertPEM.ValueString(),
		}
	}
	return req
}

// fromAPI copies the agent's view into the model. The BMC password is never
// returned by the agent, so the configured value (or null) is kept.
func (m *machineModel) fromAPI(a *api.Machine) {
	m.Name = types.StringValue(a.Name)
	if m.BMC == nil {
		m.BMC = &bmcModel{Password: types.StringNull(), PasswordWOVersion: types.Int64Null()}
	}
	m.BMC.Endpoint = types.StringValue(a.BMC.Endpoint)
	m.BMC.Username = types.StringValue(a.BMC.Username)
	m.BMC.Insecure = types.BoolValue(a.BMC.Insecure)
	m.BMC.CACertPEM = optString(a.BMC.CACertPEM)
	m.BMC.PasswordWO = types.StringNull() // write-only: never in state
	m.MACs = stringsToList(a.MACs, m.MACs)
	if m.MACs.IsNull() {
		m.MACs = types.ListValueMust(types.StringType, []attr.Value{})
	}
	m.BootProfile = optString(a.BootProfile)
	m.Params = stringsToMap(a.Params, m.Params)
	m.State = types.StringValue(string(a.State))
	m.BootMode = optString(string(a.BootMode))
	m.RootDevice = rootDeviceObject(a.RootDevice)
	m.Adopt = types.BoolValue(a.Adopt)
	m.fromAPIStatus(a)
}

// fromAPIStatus copies only what the agent observes, leaving the inputs:
// what a failed update saves.
func (m *machineModel) fromAPIStatus(a *api.Machine) {
	m.ID = types.StringValue(a.Name)
	m.Phase = types.StringValue(string(a.Phase))
	m.PowerState = types.StringValue(a.PowerState)
	m.LastError = types.StringValue(a.LastError)
	m.BMCStatus = types.StringValue(a.BMCStatus)
	m.BMCStatusSince = types.StringValue("")
	if !a.BMCStatusSince.IsZero() {
		m.BMCStatusSince = types.StringValue(a.BMCStatusSince.UTC().Format(time.RFC3339))
	}
	m.HardwareFP = types.StringValue(a.HardwareFingerprint)
	m.Addresses = stringsToList(a.Addresses, types.ListValueMust(types.StringType, nil))
	m.Inventory = inventoryValue(a.Inventory)
}
