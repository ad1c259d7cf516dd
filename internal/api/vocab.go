package api

import (
	"fmt"
	"net"
	"regexp"
	"strings"
)

// The values below are the API's vocabulary. They are declared here once:
// the provider and the client read them from here, and the agent's domain
// model (internal/model) takes its constants from them, so a value cannot
// be added on one side of the wire and missed on the other.

// DesiredState is what the operator asks of a machine.
type DesiredState string

const (
	// StateProvisioned: installed with its boot profile and left running.
	StateProvisioned DesiredState = "provisioned"
	// StateAvailable: registered and inventoried; the power is left as it is.
	StateAvailable DesiredState = "available"
	// StateOff: registered and powered off.
	StateOff DesiredState = "off"
)

// DesiredStates lists every DesiredState, in the order docs print them.
var DesiredStates = []DesiredState{StateProvisioned, StateAvailable, StateOff}

// MachinePhase is where the agent observes a machine to be.
type MachinePhase string

const (
	PhaseRegistering    MachinePhase = "registering"
	PhaseInspecting     MachinePhase = "inspecting"
	PhaseAvailable      MachinePhase = "available"
	PhaseProvisioning   MachinePhase = "provisioning"
	PhaseProvisioned    MachinePhase = "provisioned"
	PhaseDeprovisioning MachinePhase = "deprovisioning"
	PhaseOff            MachinePhase = "off"
	PhaseFailed         MachinePhase = "failed"
)

// MachinePhases lists every MachinePhase.
var MachinePhases = []MachinePhase{
	PhaseRegistering, PhaseInspecting, PhaseAvailable, PhaseProvisioning,
	PhaseProvisioned, PhaseDeprovisioning, PhaseOff, PhaseFailed,
}

// Step is the sub-step within provisioning or deprovisioning.
type Step string

const (
	StepNone             Step = ""
	StepSettingBoot      Step = "setting_boot"
	StepPoweringOn       Step = "powering_on"
	StepWaitingPXE       Step = "waiting_pxe"
	StepBootingInstaller Step = "booting_installer"
	StepInstalling       Step = "installing"
	StepFinishing        Step = "finishing" // next boot to disk after the callback
	// StepImageWritten: the deploy ramdisk wrote the image and the config
	// drive; the agent sets the next boot to disk and power-cycles.
	StepImageWritten Step = "image_written"
	// StepBootingOS: the deployed OS is booting; its cloud-init calls back.
	StepBootingOS   Step = "booting_os"
	StepWiping      Step = "wiping"
	StepPoweringOff Step = "powering_off"
)

// ClusterPhase is a cluster's phase as the agent computes it from its
// members and the reconciler's word.
type ClusterPhase string

const (
	ClusterPending    ClusterPhase = "pending"
	ClusterConverging ClusterPhase = "converging"
	ClusterReady      ClusterPhase = "ready"
	// ClusterPaused: a member failed, which stops the rollout.
	ClusterPaused ClusterPhase = "paused"
)

// ClusterPhases lists every ClusterPhase.
var ClusterPhases = []ClusterPhase{ClusterPending, ClusterConverging, ClusterReady, ClusterPaused}

// Action is a machine action for PathMachineAction.
type Action string

const (
	ActionPowerOn     Action = "power_on"
	ActionPowerOff    Action = "power_off"
	ActionReset       Action = "reset"
	ActionProvision   Action = "provision"   // start a fresh provisioning run now
	ActionDeprovision Action = "deprovision" // desired state becomes available
	ActionInspect     Action = "inspect"     // read the inventory from the BMC again now
)

// ActionNames lists every machine action.
var ActionNames = []Action{ActionPowerOn, ActionPowerOff, ActionReset, ActionProvision, ActionDeprovision, ActionInspect}

// BootMode is the firmware path a machine boots and is installed through.
type BootMode string

const (
	BootModeUEFI   BootMode = "uefi"
	BootModeLegacy BootMode = "legacy"
)

// BootModes lists every BootMode.
var BootModes = []BootMode{BootModeUEFI, BootModeLegacy}

// BMC health values of Machine.BMCStatus.
const (
	BMCStatusOK          = "ok"
	BMCStatusAuthFailed  = "auth_failed"
	BMCStatusUnreachable = "unreachable"
)

// BMCStatuses lists every BMC status value.
var BMCStatuses = []string{BMCStatusOK, BMCStatusAuthFailed, BMCStatusUnreachable}

// Power states as Redfish reports them, in Machine.PowerState.
const (
	PowerOn  = "On"
	PowerOff = "Off"
)

// IPXEScriptMagic is how an iPXE script must begin: iPXE runs a file
// without it as an image, not a script.
const IPXEScriptMagic = "#!ipxe"

// FormatQCOW2 is the one image format the agent converts (to raw, once per
// image, in its data directory) before the deploy ramdisk writes it.
const FormatQCOW2 = "qcow2"

// ImageFormats lists the image formats a profile may name: a raw disk
// image, one compressed with gzip or zstd (the deploy ramdisk
// decompresses them as it streams), or a qcow2 image.
var ImageFormats = []string{"raw", "gzip", "zstd", FormatQCOW2}

// Wipe levels of an image deploy's deprovision, weakest first. Every one
// removes the config drive (its whole partition is zeroed, then dropped
// from the partition table), so the OS cannot run its user-data, secrets
// included, again. WipeMetadata also erases what makes the disk's old
// content findable, as Ironic's erase_devices_metadata does: every
// filesystem, RAID and LVM signature at the start and end of each
// partition, and both partition tables. WipeFull overwrites the whole
// disk with zeros, as Ironic's erase_devices does (without a secure-erase
// command: a zero pass is what works on every disk and virtual disk).
const (
	WipeConfigDrive = "config-drive"
	WipeMetadata    = "metadata"
	WipeFull        = "full"
)

// ImageWipes lists the wipe levels, weakest first.
var ImageWipes = []string{WipeConfigDrive, WipeMetadata, WipeFull}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

// ValidName reports whether s is usable as an object name (DNS-label-like,
// lower case, so it is safe in URLs, file names and templates).
func ValidName(s string) bool { return nameRE.MatchString(s) }

// NameRule describes ValidName for error messages and docs.
const NameRule = "1-63 characters: lower-case letters, digits, '.', '_' or '-', starting and ending with a letter or digit"

// SecretNameRE is what a secret's name may be: it appears in URLs, in
// previews (<secret:name>) and in error messages.
var SecretNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$`)

// NormalizeMAC returns the lower-case colon form of a 48-bit MAC address.
func NormalizeMAC(s string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%q is not a 48-bit MAC address (want aa:bb:cc:dd:ee:ff)", s)
	}
	return hw.String(), nil
}

// Strings converts a list of vocabulary values for APIs that take strings
// (validators, joined messages).
func Strings[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// Event types: Event.Type. The boot-chain ones are the boot edge's
// observations of a provisioning run.
const (
	EventPhaseChanged = "phase_changed"
	EventPowerAction  = "power_action"
	EventBootOverride = "boot_override"
	EventError        = "error"
	EventPowerDrift   = "power_drift"
	EventSpecChanged  = "spec_changed"
	// EventGeneratedSecret: a generated secret was made by the API or
	// rotated. It names the secret, never its value.
	EventGeneratedSecret = "generated_secret"
	EventRunStarted      = "run_started"
	// EventImageWritten: the deploy ramdisk wrote and verified the image
	// and the config drive.
	EventImageWritten = "image_written"
	// EventBootStalled is recorded once per stall: no new boot step for the
	// agent's boot stall warning period. Its message is the last_error.
	EventBootStalled = "boot_stalled"
	// EventInventoryDrift: a re-read inventory's hardware fingerprint
	// differs from the accepted one.
	EventInventoryDrift = "inventory_drift"
	// EventBMCInsecure warns, at each create or spec update, that the
	// machine's BMC endpoint is plain http: the Redfish login (session body
	// and basic auth) crosses the network in the clear.
	EventBMCInsecure = "bmc_insecure"

	EventPXERequested  = "pxe_requested"
	EventScriptServed  = "script_served"
	EventKernelFetched = "kernel_fetched"
	// EventInitrdFetched is recorded once per initrd of the run's profile,
	// with the initrd's asset path as data "path".
	EventInitrdFetched = "initrd_fetched"
	// EventTemplatesFetched is recorded for every template served, with its
	// name as data "template" (the value predates per-template steps and
	// stays, so the event log reads the same across versions).
	EventTemplatesFetched = "templates_fetched"
	EventCallbackReceived = "callback_received"
	EventCallbackRejected = "callback_rejected"
	EventUnknownMAC       = "unknown_mac"
	EventRenderFailed     = "render_failed"
	// EventDeployDisks: the deploy ramdisk reported the machine's disks
	// and the agent chose the one to write.
	EventDeployDisks = "deploy_disks"
	// EventDeployProgress: the deploy ramdisk's image write passed another
	// GiB (a boot step per GiB, so a long write is not a stall).
	EventDeployProgress = "deploy_progress"
)

// EventTypes lists every event type the agent records, in the order the
// API documentation names them.
var EventTypes = []string{
	EventPhaseChanged, EventSpecChanged, EventRunStarted, EventBootOverride, EventPowerAction, EventPowerDrift, EventInventoryDrift, EventError,
	EventPXERequested, EventScriptServed, EventKernelFetched, EventInitrdFetched,
	EventTemplatesFetched, EventBootStalled, EventCallbackReceived, EventCallbackRejected,
	EventUnknownMAC, EventRenderFailed,
	EventDeployDisks, EventDeployProgress, EventImageWritten,
	EventBMCInsecure, EventGeneratedSecret,
}
