// Package model holds the agent's domain objects: what the store persists,
// what the reconciler decides on and what the boot edge renders from. Wire
// formats live in internal/api; this package has no transport concerns.
package model

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// The values of this package's enumerations are the API's (internal/api
// declares them once); the types are the domain's own, so what the store
// persists changes only through the conversions in internal/apiserver.

// DesiredState is what the operator asks of a machine.
type DesiredState string

// Desired states (see api.DesiredState).
const (
	StateProvisioned = DesiredState(api.StateProvisioned)
	StateAvailable   = DesiredState(api.StateAvailable)
	StateOff         = DesiredState(api.StateOff)
)

// BootMode is the firmware path a machine boots and is installed through.
type BootMode string

// Boot modes (see api.BootMode).
const (
	BootModeUEFI   = BootMode(api.BootModeUEFI)
	BootModeLegacy = BootMode(api.BootModeLegacy)
)

// BootModeRefusal says why the BMC cannot boot a machine in mode, as far as
// the inventory tells (its BootModes, from the BMC's allowable values); ""
// when mode is empty, allowed, or the BMC does not list what it allows.
func BootModeRefusal(mode BootMode, inv *Inventory) string {
	if mode == "" || inv == nil || len(inv.BootModes) == 0 {
		return ""
	}
	for _, m := range inv.BootModes {
		if m == string(mode) {
			return ""
		}
	}
	return fmt.Sprintf("boot_mode %q is not offered by the BMC, which allows %s: set boot_mode to one of those, or leave it unset to keep the mode the BMC reports",
		mode, strings.Join(inv.BootModes, ", "))
}

// Phase is where the reconciler observes a machine to be.
type Phase string

// Machine phases (see api.MachinePhase).
const (
	PhaseRegistering    = Phase(api.PhaseRegistering)
	PhaseInspecting     = Phase(api.PhaseInspecting)
	PhaseAvailable      = Phase(api.PhaseAvailable)
	PhaseProvisioning   = Phase(api.PhaseProvisioning)
	PhaseProvisioned    = Phase(api.PhaseProvisioned)
	PhaseDeprovisioning = Phase(api.PhaseDeprovisioning)
	PhaseOff            = Phase(api.PhaseOff)
	PhaseFailed         = Phase(api.PhaseFailed)
)

// Step is the sub-step within provisioning or deprovisioning.
type Step string

// Steps (see api.Step).
const (
	StepNone             = Step(api.StepNone)
	StepSettingBoot      = Step(api.StepSettingBoot)
	StepPoweringOn       = Step(api.StepPoweringOn)
	StepWaitingPXE       = Step(api.StepWaitingPXE)
	StepBootingInstaller = Step(api.StepBootingInstaller)
	StepInstalling       = Step(api.StepInstalling)
	StepFinishing        = Step(api.StepFinishing)
	StepImageWritten     = Step(api.StepImageWritten)
	StepBootingOS        = Step(api.StepBootingOS)
	StepWiping           = Step(api.StepWiping)
	StepPoweringOff      = Step(api.StepPoweringOff)
)

// Signal is a boot-chain observation made by the boot edge.
type Signal string

// Boot signals (the api package's boot-chain event types).
const (
	SignalPXERequested     = Signal(api.EventPXERequested)
	SignalScriptServed     = Signal(api.EventScriptServed)
	SignalKernelFetched    = Signal(api.EventKernelFetched)
	SignalInitrdFetched    = Signal(api.EventInitrdFetched)
	SignalTemplatesFetched = Signal(api.EventTemplatesFetched)
	SignalCallbackReceived = Signal(api.EventCallbackReceived)
	SignalCallbackRejected = Signal(api.EventCallbackRejected)
	SignalUnknownMAC       = Signal(api.EventUnknownMAC)
	SignalRenderFailed     = Signal(api.EventRenderFailed)
	SignalDeployDisks      = Signal(api.EventDeployDisks)
	SignalDeployProgress   = Signal(api.EventDeployProgress)
)

// Power states as Redfish reports them.
const (
	PowerOn  = api.PowerOn
	PowerOff = api.PowerOff
)

// BMC holds how to reach a machine's baseboard controller. Password is
// plaintext in memory only: the store seals it and the API never returns it.
type BMC struct {
	Endpoint  string `json:"endpoint"`
	Username  string `json:"username"`
	Password  string `json:"password,omitempty"`
	Insecure  bool   `json:"insecure,omitempty"`
	CACertPEM string `json:"ca_cert_pem,omitempty"`
}

// Inventory is what the BMC reports about the hardware.
type Inventory struct {
	Manufacturer string `json:"manufacturer,omitempty"`
	Model        string `json:"model,omitempty"`
	Serial       string `json:"serial,omitempty"`
	UUID         string `json:"uuid,omitempty"`
	BIOSVersion  string `json:"bios_version,omitempty"`
	PowerState   string `json:"power_state,omitempty"`
	// CPUs counts central processors only; GPUs and other accelerators
	// are counted apart so a GPU blade does not read as a many-socket host.
	CPUs       int    `json:"cpus,omitempty"`
	CPUModel   string `json:"cpu_model,omitempty"`
	CPUCores   int    `json:"cpu_cores,omitempty"`   // total over all CPUs
	CPUThreads int    `json:"cpu_threads,omitempty"` // total over all CPUs
	GPUs       int    `json:"gpus,omitempty"`
	GPUModel   string `json:"gpu_model,omitempty"` // the first GPU's
	// Accelerators are FPGAs, DSPs and other non-GPU accelerators.
	Accelerators     int     `json:"accelerators,omitempty"`
	AcceleratorModel string  `json:"accelerator_model,omitempty"` // the first accelerator's
	MemoryGiB        float64 `json:"memory_gib,omitempty"`
	NICs             []NIC   `json:"nics,omitempty"`
	Disks            []Disk  `json:"disks,omitempty"`
	// BootMode is the firmware boot mode the system reports, lower-case
	// ("uefi", "legacy"); "" when the BMC does not say. BootModes are the
	// modes the BMC accepts for a boot override, when it lists them.
	BootMode    string    `json:"boot_mode,omitempty"`
	BootModes   []string  `json:"boot_modes,omitempty"`
	CollectedAt time.Time `json:"collected_at,omitzero"`
	// Fingerprint is HardwareFingerprint of this inventory, set when it is
	// read, so a client can tell changed hardware without hashing itself.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// HardwareFingerprint hashes what identifies the hardware: CPUs, memory,
// disks and NICs. Power state, firmware settings and the read time are
// left out, so only a hardware change alters it.
func (inv *Inventory) HardwareFingerprint() string {
	if inv == nil {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "cpu %d %q %d %d\nmem %.3f\n", inv.CPUs, inv.CPUModel, inv.CPUCores, inv.CPUThreads, inv.MemoryGiB)
	fmt.Fprintf(h, "gpu %d %q\nacc %d %q\n", inv.GPUs, inv.GPUModel, inv.Accelerators, inv.AcceleratorModel)
	disks := make([]string, 0, len(inv.Disks))
	for _, d := range inv.Disks {
		disks = append(disks, fmt.Sprintf("%q %q %q %.3f %q", d.Name, d.Model, d.Serial, d.SizeGiB, d.MediaType))
	}
	slices.Sort(disks)
	macs := make([]string, 0, len(inv.NICs))
	for _, n := range inv.NICs {
		macs = append(macs, strings.ToLower(n.MAC))
	}
	slices.Sort(macs)
	fmt.Fprintf(h, "disks %s\nnics %s\n", strings.Join(disks, ";"), strings.Join(macs, ";"))
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// NIC is one network interface seen by the BMC.
type NIC struct {
	Name      string `json:"name,omitempty"`
	MAC       string `json:"mac,omitempty"`
	LinkState string `json:"link_state,omitempty"`
	SpeedMbps int    `json:"speed_mbps,omitempty"`
}

// Disk is one drive seen by the BMC.
type Disk struct {
	Name      string  `json:"name,omitempty"`
	Model     string  `json:"model,omitempty"`
	Serial    string  `json:"serial,omitempty"`
	SizeGiB   float64 `json:"size_gib,omitempty"`
	MediaType string  `json:"media_type,omitempty"`
	// Rotational is true for spinning media (MediaType HDD or a rotation
	// speed above zero); false also when the BMC reports neither.
	Rotational bool `json:"rotational,omitempty"`
}

// Machine is one server under the agent's care: desired spec, observed status
// and the current provisioning run.
type Machine struct {
	Name        string            `json:"name"`
	BMC         BMC               `json:"bmc"`
	MACs        []string          `json:"macs,omitempty"`
	BootProfile string            `json:"boot_profile,omitempty"`
	Params      map[string]string `json:"params,omitempty"`
	// SecretParams and GeneratedSecrets are sealed at rest by the store and
	// never serialised with the machine (see Secrets).
	SecretParams Secrets `json:"-"`
	// GeneratedSecrets are the values {{ generatedSecret "name" }} made for
	// this machine: random, made once, kept across re-provisions until an
	// operator rotates one.
	GeneratedSecrets Secrets `json:"-"`
	// SecretsRevision is bumped whenever SecretParams' values change, so a
	// change re-provisions like a params change without anyone hashing a
	// secret.
	SecretsRevision uint64       `json:"secrets_revision,omitempty"`
	State           DesiredState `json:"state"`
	// BootMode is the boot mode the agent asks the BMC for; empty keeps the
	// mode the BMC reports.
	BootMode BootMode `json:"boot_mode,omitempty"`
	// RootDevice, when set, replaces the profile's root device hints for
	// image deploys to this machine.
	RootDevice *RootDeviceHints `json:"root_device,omitempty"`
	// Adopt registers a machine already running its OS as provisioned with
	// its target, with no power action and no install. It counts only until
	// the machine is first provisioned; later changes re-provision it.
	Adopt bool `json:"adopt,omitempty"`

	// Cluster and Role are set when a cluster names this machine as a member.
	Cluster string `json:"cluster,omitempty"`
	Role    string `json:"role,omitempty"`

	// Version is the spec's resource version: bumped by spec writes only, so
	// the reconciler's status writes never make an operator's update stale.
	Version uint64 `json:"version"`
	// Revision is bumped by every write, spec or status; watchers wait on it.
	Revision uint64 `json:"revision"`

	// DeletionRequested is set by DELETE: the reconciler powers the machine
	// off (deprovisioning it) and then removes it from the store.
	DeletionRequested time.Time `json:"deletion_requested,omitzero"`

	// Lease guards a spec writer (a Terraform run) against a concurrent one.
	Lease *Lease `json:"lease,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`

	Status Status `json:"status"`
	Run    *Run   `json:"run,omitempty"`
}

// Status is what the reconciler observed and decided.
type Status struct {
	Phase      Phase     `json:"phase"`
	Step       Step      `json:"step,omitempty"`
	PhaseSince time.Time `json:"phase_since,omitzero"`
	PowerState string    `json:"power_state,omitempty"`
	// PowerDrift is set when the observed power differs from what the phase expects.
	PowerDrift     bool       `json:"power_drift,omitempty"`
	PowerCheckedAt time.Time  `json:"power_checked_at,omitzero"`
	LastError      string     `json:"last_error,omitempty"`
	Addresses      []string   `json:"addresses,omitempty"`
	Inventory      *Inventory `json:"inventory,omitempty"`
	// Provisioned* record what the machine was last installed with, so a
	// change of profile, profile version or params triggers a re-provision.
	ProvisionedProfile        string    `json:"provisioned_profile,omitempty"`
	ProvisionedProfileVersion uint64    `json:"provisioned_profile_version,omitempty"`
	ProvisionedParamsHash     string    `json:"provisioned_params_hash,omitempty"`
	ProvisionedAt             time.Time `json:"provisioned_at,omitzero"`
	// ObservedVersion is the spec Version the status reflects.
	ObservedVersion uint64 `json:"observed_version,omitempty"`
	// BMCStatus is how the BMC answered the agent's last call
	// (BMCStatusOK, BMCStatusAuthFailed, BMCStatusUnreachable; "" before
	// any call), since BMCStatusSince.
	BMCStatus      string    `json:"bmc_status,omitempty"`
	BMCStatusSince time.Time `json:"bmc_status_since,omitzero"`
	// AcceptedFingerprint is the hardware fingerprint the operator last
	// accepted (the first inventory's, then the one current at each spec
	// write): an inventory whose fingerprint differs is hardware drift.
	AcceptedFingerprint string `json:"accepted_fingerprint,omitempty"`
	// CleanPending is set (to the image's wipe level) once a deploy
	// ramdisk has written a config drive to the machine's disk, and
	// cleared only when a clean run has removed it: until then every way
	// out of the installed state (deletion, desired available) goes
	// through a clean run, however the machine got there (a failure, a
	// retry, a re-image).
	CleanPending string `json:"clean_pending,omitempty"`
}

// BMC health values of Status.BMCStatus.
const (
	BMCStatusOK          = api.BMCStatusOK
	BMCStatusAuthFailed  = api.BMCStatusAuthFailed
	BMCStatusUnreachable = api.BMCStatusUnreachable
)

// Run is one provisioning attempt. Its token authorises exactly one callback.
type Run struct {
	ID             string    `json:"id"`
	Token          string    `json:"token,omitempty"` // sealed at rest by the store
	Profile        string    `json:"profile"`
	ProfileVersion uint64    `json:"profile_version"`
	ParamsHash     string    `json:"params_hash,omitempty"`
	StartedAt      time.Time `json:"started_at"`
	StepDeadline   time.Time `json:"step_deadline,omitzero"`
	Attempts       int       `json:"attempts,omitempty"`
	// PowerOns counts power-on/reset actions issued for this run; restart
	// safety means it never grows once CallbackAt is set.
	PowerOns int `json:"power_ons,omitempty"`
	// PoweredOnAt is when this run last powered the machine on (or, after
	// an agent restart, found it on): where a boot with no step yet began.
	PoweredOnAt time.Time `json:"powered_on_at,omitzero"`
	// Signals holds when each kind of boot signal was first seen; the
	// run's step progress reads it.
	Signals map[Signal]time.Time `json:"signals,omitzero"`
	// Steps lists the boot steps seen, oldest first: each signal once, and
	// each initrd and template once by name. At most MaxRunSteps are kept.
	Steps      []BootStep `json:"steps,omitempty"`
	CallbackAt time.Time  `json:"callback_at,omitzero"`
	// StallNotedAt is when last_error last described this run's boot as
	// stalled; zero while the boot is making progress.
	StallNotedAt time.Time `json:"stall_noted_at,omitzero"`
	// TokenUsed is set when the callback consumed the token.
	TokenUsed bool `json:"token_used,omitempty"`
	// Snippets records the version of each site snippet the run's profile
	// includes, so an event and the API say what the install was built from.
	Snippets map[string]uint64 `json:"snippets,omitempty"`
	// RenderError is the first render failure the boot edge met serving
	// this run; the run fails with it rather than waiting for its timeout.
	RenderError string `json:"render_error,omitempty"`
	// ScriptFrom is the address the run's boot script was first served to:
	// the only address its callback is accepted from, unless the profile
	// says CallbackAnySource.
	ScriptFrom string `json:"script_from,omitempty"`
	// Deploy is set for a run of a profile with an image: the deploy
	// ramdisk's progress. Its "image written" callback does not end the
	// run; the deployed OS's does.
	Deploy *Deploy `json:"deploy,omitempty"`
	// Clean is set for a clean run, which boots the deploy ramdisk with
	// baremetal.mode=clean to remove the config drive (and wipe what the
	// level says) before the machine is released: a wipe level.
	Clean string `json:"clean,omitempty"`
}

// Deploy is an image deploy's progress within its run.
type Deploy struct {
	Disk         string    `json:"disk,omitempty"` // the device the ramdisk writes, e.g. "sda"
	BytesWritten int64     `json:"bytes_written,omitempty"`
	WrittenAt    time.Time `json:"written_at,omitzero"` // the "image written" callback
	// Wipe is the profile's wipe level when the disk was chosen: what the
	// config drive, once written, is owed (Status.CleanPending).
	Wipe string `json:"wipe,omitempty"`
}

// BootStep is one step of the boot chain the agent saw during a run.
type BootStep struct {
	Signal Signal `json:"signal"`
	// Name tells steps of one signal apart: the initrd's asset path or the
	// template's name ("" for the others).
	Name string    `json:"name,omitempty"`
	At   time.Time `json:"at"`
}

// MaxRunSteps bounds Run.Steps, so a profile with very many templates
// cannot grow the stored run without limit.
const MaxRunSteps = 32

// Serving reports whether the boot edge should hand this machine its installer.
func (r *Run) Serving() bool { return r != nil && !r.TokenUsed }

// AddStep records s unless a step with its signal and name was seen
// before, and reports whether it did. Once MaxRunSteps are kept the newest
// step replaces the last, so the latest step is never lost.
func (r *Run) AddStep(s BootStep) bool {
	for _, x := range r.Steps {
		if x.Signal == s.Signal && x.Name == s.Name {
			return false
		}
	}
	if len(r.Steps) >= MaxRunSteps {
		r.Steps[len(r.Steps)-1] = s
		return true
	}
	r.Steps = append(r.Steps, s)
	return true
}

// LastStep is the most recent boot step seen; ok is false before any.
func (r *Run) LastStep() (s BootStep, ok bool) {
	for _, x := range r.Steps {
		if !ok || x.At.After(s.At) {
			s, ok = x, true
		}
	}
	return s, ok
}

// Lease is a time-bound claim on a machine's spec by one writer.
type Lease struct {
	Holder    string    `json:"holder"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CallbackReport is what an installer posts when it is done.
type CallbackReport struct {
	Addresses []string `json:"addresses,omitempty"`
	Hostname  string   `json:"hostname,omitempty"`
	LogTail   string   `json:"log_tail,omitempty"`
	Status    string   `json:"status,omitempty"` // "ok" (default) or "failed"
	// Stage tells an image deploy's two callbacks apart: "image_written"
	// from the deploy ramdisk, then "os_up" (or empty) from the deployed
	// OS. Installers leave it empty.
	Stage string `json:"stage,omitempty"`
	// Message says what failed, for a failed report.
	Message string `json:"message,omitempty"`
	// Disk, BytesWritten and DurationMS describe the image write.
	Disk         string `json:"disk,omitempty"`
	BytesWritten int64  `json:"bytes_written,omitempty"`
	DurationMS   int64  `json:"duration_ms,omitempty"`
	// From is the address the callback came from, set by the boot edge
	// (never read from the body).
	From string `json:"-"`
}

// Callback stages of an image deploy.
const (
	StageImageWritten = "image_written"
	StageOSUp         = "os_up"
	// StageCleaned is the deploy ramdisk's report of a clean run.
	StageCleaned = "cleaned"
)

// Image is an OS image a profile deploys to the machine's root disk.
type Image struct {
	// URL is an http(s) URL, or a path under the agent's assets directory
	// (which the agent serves: the only choice for machines that reach
	// nothing but the agent).
	URL string `json:"url"`
	// Checksum is "sha256:<hex>" or "sha512:<hex>" of the file at URL.
	Checksum string `json:"checksum"`
	// Format is what the file at URL holds: api.ImageFormats.
	Format string `json:"format"`
	// Wipe is what deprovisioning erases from the disk the image went to
	// (api.ImageWipes; "" is WipeConfigDrive).
	Wipe string `json:"wipe,omitempty"`
}

// FormatQCOW2 is the one image format the agent converts before the
// deploy ramdisk writes it.
const FormatQCOW2 = api.FormatQCOW2

// Wipe levels of an image deploy's deprovision (see api.WipeConfigDrive).
const (
	WipeConfigDrive = api.WipeConfigDrive
	WipeMetadata    = api.WipeMetadata
	WipeFull        = api.WipeFull
)

// RootDeviceHints choose the disk an image is written to, as Ironic's root
// device hints do: every hint given must match. A machine's hints replace
// its profile's.
type RootDeviceHints struct {
	Name       string  `json:"name,omitempty"` // kernel name, e.g. "sda" or "/dev/sda"
	MinSizeGiB float64 `json:"min_size_gib,omitempty"`
	MaxSizeGiB float64 `json:"max_size_gib,omitempty"`
	Model      string  `json:"model,omitempty"`
	Serial     string  `json:"serial,omitempty"`
	WWN        string  `json:"wwn,omitempty"`
	Rotational *bool   `json:"rotational,omitempty"`
}

// DeployTarget is what a deploy ramdisk writes, chosen by the agent.
type DeployTarget struct {
	Disk  SeenDisk
	Image Image
	// Profile is the run's profile (its templates make the config drive).
	Profile string
	// Wipe is set for a clean run: its level, and no image is written.
	Wipe string
}

// ErrDeployRefused wraps why the agent will not let a deploy ramdisk write
// (no disk matches the hints, the profile has no image); the machine has
// been failed with the same message.
var ErrDeployRefused = errors.New("deploy refused")

// SeenDisk is a disk the deploy ramdisk found on the machine.
type SeenDisk struct {
	Name       string `json:"name"`
	SizeBytes  int64  `json:"size_bytes"`
	Model      string `json:"model,omitempty"`
	Serial     string `json:"serial,omitempty"`
	WWN        string `json:"wwn,omitempty"`
	Rotational bool   `json:"rotational"`
}

// ErrBadReport is wrapped by Validate's errors: a report that is refused
// whole, so nothing of it is stored and the token is not spent.
var ErrBadReport = errors.New("bad callback report")

// Validate checks what a report would put where templates and other
// machines read it: addresses must be IP addresses (a CIDR's address part
// is accepted) and the hostname a valid host name.
func (r CallbackReport) Validate() error {
	if len(r.Addresses) > MaxReportAddresses {
		return fmt.Errorf("%w: more than %d addresses", ErrBadReport, MaxReportAddresses)
	}
	for _, a := range r.Addresses {
		if _, err := ReportedAddress(a); err != nil {
			return err
		}
	}
	if r.Hostname != "" && !validHostname(r.Hostname) {
		return fmt.Errorf("%w: hostname is not a valid host name (RFC 1123)", ErrBadReport)
	}
	return nil
}

// MaxReportAddresses bounds the addresses one callback may report.
const MaxReportAddresses = 16

// ReportedAddress returns the IP address of a reported address ("10.0.0.5"
// or "10.0.0.5/24"), in canonical form.
func ReportedAddress(a string) (string, error) {
	a = strings.TrimSpace(a)
	if ip, err := netip.ParseAddr(a); err == nil && ip.Zone() == "" {
		return ip.String(), nil
	}
	if p, err := netip.ParsePrefix(a); err == nil {
		return p.Addr().String(), nil
	}
	return "", fmt.Errorf("%w: address %q is not an IP address", ErrBadReport, printableASCII(a, 64))
}

var hostLabelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if !hostLabelRE.MatchString(l) {
			return false
		}
	}
	return true
}

// printableASCII keeps an echoed client value short and inert.
func printableASCII(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, s)
	if len(s) > n {
		s = s[:n]
	}
	return s
}

// BootProfile is how to install a machine: kernel, initrds, cmdline and
// templates, or a whole iPXE script.
type BootProfile struct {
	Name       string   `json:"name"`
	Kernel     string   `json:"kernel,omitempty"`
	Initrds    []string `json:"initrds,omitempty"`
	Cmdline    string   `json:"cmdline,omitempty"`
	IPXEScript string   `json:"ipxe_script,omitempty"`
	// Image, when set, makes the profile an image deploy: the agent's
	// deploy ramdisk writes it (Kernel and Initrds are then unused).
	Image      *Image            `json:"image,omitempty"`
	RootDevice *RootDeviceHints  `json:"root_device,omitempty"`
	Templates  map[string]string `json:"templates,omitempty"`
	Params     map[string]string `json:"params,omitempty"`
	// SecretParams are sealed at rest and never serialised (see Secrets).
	SecretParams    Secrets `json:"-"`
	SecretsRevision uint64  `json:"secrets_revision,omitempty"`
	// WipeProfile names a profile run before power-off on deprovision.
	WipeProfile string    `json:"wipe_profile,omitempty"`
	Version     uint64    `json:"version"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`

	// CallbackAnySource accepts the callback from any address, not only the
	// one the boot script went to (for installers behind NAT or a proxy).
	CallbackAnySource bool `json:"callback_any_source,omitempty"`
	// Snippets names the snippets (Template) the profile's texts include,
	// directly; kept by the API on save so that a snippet's users are known
	// without parsing every profile.
	Snippets []string `json:"snippets,omitempty"`
}

// Template is a snippet: a named piece of template text that profile
// templates, cmdlines and iPXE scripts include with {{ template "name" . }}
// or {{ include "name" . }}. A snippet named like a stock snippet replaces
// it for the whole site.
type Template struct {
	Name        string `json:"name"`
	Content     string `json:"content"`
	Description string `json:"description,omitempty"`
	// Snippets names the snippets this one includes, directly.
	Snippets  []string  `json:"snippets,omitempty"`
	Version   uint64    `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Cluster groups machines into ordered roles.
type Cluster struct {
	Name    string            `json:"name"`
	Members []ClusterMember   `json:"members"`
	Roles   []ClusterRole     `json:"roles"`
	Params  map[string]string `json:"params,omitempty"`
	// SecretParams are sealed at rest and never serialised (see Secrets).
	SecretParams    Secrets       `json:"-"`
	SecretsRevision uint64        `json:"secrets_revision,omitempty"`
	Rollout         Rollout       `json:"rollout"`
	Version         uint64        `json:"version"`
	Revision        uint64        `json:"revision"`
	CreatedAt       time.Time     `json:"created_at"`
	UpdatedAt       time.Time     `json:"updated_at"`
	Status          ClusterStatus `json:"status"`
}

// ClusterMember places a machine in a role.
type ClusterMember struct {
	Machine string `json:"machine"`
	Role    string `json:"role"`
}

// ClusterRole names a role and the profile its members boot.
type ClusterRole struct {
	Name        string `json:"name"`
	BootProfile string `json:"boot_profile"`
}

// Rollout bounds how many members are out at once during a change.
type Rollout struct {
	MaxUnavailable int `json:"max_unavailable"`
}

// ClusterStatus is the reconciler's view of a cluster.
type ClusterStatus struct {
	Phase   string `json:"phase,omitempty"` // pending, converging, ready, paused
	Message string `json:"message,omitempty"`
	// ActiveRole is the role currently being provisioned, if any.
	ActiveRole string `json:"active_role,omitempty"`
}

// Event is one recorded fact about a machine (or the agent, with Machine "").
type Event struct {
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"`
	Machine string            `json:"machine,omitempty"`
	Type    string            `json:"type"`
	Phase   Phase             `json:"phase,omitempty"`
	Step    Step              `json:"step,omitempty"`
	Message string            `json:"message,omitempty"`
	Data    map[string]string `json:"data,omitempty"`
}

// Event types other than boot Signals (see api.EventTypes).
const (
	EventPhaseChanged    = api.EventPhaseChanged
	EventPowerAction     = api.EventPowerAction
	EventBootOverride    = api.EventBootOverride
	EventError           = api.EventError
	EventPowerDrift      = api.EventPowerDrift
	EventSpecChanged     = api.EventSpecChanged
	EventGeneratedSecret = api.EventGeneratedSecret
	EventRunStarted      = api.EventRunStarted
	EventImageWritten    = api.EventImageWritten
	EventBootStalled     = api.EventBootStalled
	EventInventoryDrift  = api.EventInventoryDrift
	EventBMCInsecure     = api.EventBMCInsecure
)

// Name rules (see api.ValidName).
var (
	ValidName    = api.ValidName
	NormalizeMAC = api.NormalizeMAC
)

// NameRule describes ValidName for error messages.
const NameRule = api.NameRule

// ErrTokenRejected is returned for a callback whose token is wrong, replayed
// or belongs to another run.
var ErrTokenRejected = errors.New("callback token rejected")
