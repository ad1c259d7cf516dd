// Package api defines the agent's REST API v1: the paths, wire types and
// vocabulary shared by the server (internal/apiserver, which holds the
// handlers and the OpenAPI document and converts to and from
// internal/model) and the typed client (internal/client). It imports none
// of the agent's packages, so the provider can depend on it alone.
//
// JSON field names are snake_case and match the Terraform provider's
// attribute names. Secrets go in, not out: BMC passwords and secret params
// are accepted on create/update and only their names are returned; a
// generated secret's value is read on its own path, with a read-write token.
package api

import "time"

// APIVersion is the path prefix of this API.
const APIVersion = "v1"

// Route paths (Go 1.22 ServeMux patterns without the method). The OpenAPI
// document in openapi.yaml lists the same paths; a test keeps them in step.
const (
	PathHealthz       = "/healthz"
	PathReadyz        = "/readyz"
	PathMetrics       = "/metrics"
	PathInfo          = "/v1/info"
	PathMachines      = "/v1/machines"
	PathMachine       = "/v1/machines/{name}"
	PathMachineAction = "/v1/machines/{name}/actions/{action}"
	PathMachineEvents = "/v1/machines/{name}/events"
	PathMachineLease  = "/v1/machines/{name}/lease" // PUT renews, DELETE releases
	PathEvents        = "/v1/events"                // agent-wide events (unknown MACs and the like)
	PathProfiles      = "/v1/boot_profiles"
	PathProfile       = "/v1/boot_profiles/{name}"
	PathClusters      = "/v1/clusters"
	PathCluster       = "/v1/clusters/{name}"
)

// Snippets (baremetal_template) and previews of what a machine is served.
const (
	PathTemplates       = "/v1/templates"
	PathTemplate        = "/v1/templates/{name}"
	PathMachineRendered = "/v1/machines/{name}/rendered/{template}"
	// PathSiteParams is the site params: GET, PUT, DELETE (back to none).
	PathSiteParams = "/v1/site_params"
	// PathMachineGeneratedSecret is one generated secret of a machine
	// (read-write tokens only): GET reads it (404 before it exists), POST
	// reads it and makes it if need be, DELETE rotates it (the next use
	// makes a new one).
	PathMachineGeneratedSecret = "/v1/machines/{name}/generated_secrets/{secret}"
)

// Query parameters.
const (
	QueryWait          = "wait"           // Go duration, long-poll up to this long (max 60s)
	QueryAfterRevision = "after_revision" // long-poll until revision > this
	QueryAfter         = "after"          // events cursor: Seq > after
	// QueryIfNoneMatch long-polls a list (with QueryWait) until its ETag
	// differs from this one.
	QueryIfNoneMatch = "if_none_match"
	QueryLimit       = "limit"
)

// Query parameters of GET /v1/machines (filters) and DELETE
// /v1/machines/{name} (force).
const (
	QueryCluster = "cluster"
	QueryRole    = "role"
	QueryPhase   = "phase"
	QueryState   = "state"
	QueryForce   = "force"
)

// MaxWait caps a long-poll's ?wait= duration.
const MaxWait = 60 * time.Second

// Event page sizes for ?limit= on the events endpoints.
const (
	DefaultEventLimit = 100
	MaxEventLimit     = 1000
)

// DefaultLeaseDuration is how long a lease taken by a write with
// HeaderLeaseHolder lasts on an agent not told otherwise
// (--lease-duration); each write or renewal by the holder extends it, and a
// holder that disappears loses it when it runs out. Clients learn the
// agent's actual duration from Info.LeaseSeconds and Lease.DurationSeconds.
const DefaultLeaseDuration = 2 * time.Minute

// HeaderLeaseHolder names the writer (e.g. a Terraform run) claiming a
// machine's spec; a write by another holder while the lease is live gets 409.
const HeaderLeaseHolder = "X-Baremetal-Lease-Holder"

// Lease answers a renewal on PathMachineLease. DurationSeconds is how long
// the agent grants each lease, so a holder can pace its renewals without
// comparing its clock with the agent's.
type Lease struct {
	Holder          string    `json:"holder"`
	ExpiresAt       time.Time `json:"expires_at"`
	DurationSeconds float64   `json:"duration_seconds"`
}

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 1 << 20

// BMCRequest is the BMC part of a machine create/update.
type BMCRequest struct {
	Endpoint string `json:"endpoint"`
	Username string `json:"username"`
	// Password is write-only; empty on update keeps the stored one.
	Password  string `json:"password,omitempty"`
	Insecure  bool   `json:"insecure,omitempty"`
	CACertPEM string `json:"ca_cert_pem,omitempty"`
}

// MachineRequest is the body of POST /v1/machines and PUT /v1/machines/{name}.
type MachineRequest struct {
	Name        string            `json:"name"`
	BMC         BMCRequest        `json:"bmc"`
	MACs        []string          `json:"macs,omitempty"`
	BootProfile string            `json:"boot_profile,omitempty"`
	Params      map[string]string `json:"params,omitempty"`
	State       DesiredState      `json:"state,omitempty"` // default "provisioned"
	// BootMode is "uefi" or "legacy"; empty keeps what the BMC reports.
	BootMode BootMode `json:"boot_mode,omitempty"`
	// RootDevice replaces the profile's root device hints for this machine.
	RootDevice *RootDeviceHints `json:"root_device,omitempty"`
	// Adopt registers a machine already running its OS as provisioned,
	// with no power action and no install.
	Adopt bool `json:"adopt,omitempty"`
	// SecretParams, when present, replaces the secret params (an empty
	// object removes them all); absent, the stored ones stay. Write-only:
	// no response carries a value.
	SecretParams *map[string]string `json:"secret_params,omitempty"`
	// Version, when non-zero on update, must equal the stored version (409 otherwise).
	Version uint64 `json:"version,omitempty"`
}

// BMCInfo is the BMC part of a machine as the API returns it: no password.
type BMCInfo struct {
	Endpoint  string `json:"endpoint"`
	Username  string `json:"username"`
	Insecure  bool   `json:"insecure,omitempty"`
	CACertPEM string `json:"ca_cert_pem,omitempty"`
}

// Machine is a machine as the API returns it.
type Machine struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	BMC         BMCInfo           `json:"bmc"`
	MACs        []string          `json:"macs"`
	BootProfile string            `json:"boot_profile,omitempty"`
	Params      map[string]string `json:"params,omitempty"`
	State       DesiredState      `json:"state"`
	BootMode    BootMode          `json:"boot_mode,omitempty"`
	RootDevice  *RootDeviceHints  `json:"root_device,omitempty"`
	Adopt       bool              `json:"adopt,omitempty"`
	Cluster     string            `json:"cluster,omitempty"`
	Role        string            `json:"role,omitempty"`
	Version     uint64            `json:"version"`
	Revision    uint64            `json:"revision"`
	// SecretParamNames names the secret params; their values are never returned.
	SecretParamNames []string `json:"secret_param_names,omitempty"`
	// EffectiveParams are the params the machine's templates see now:
	// site < profile < cluster < machine; ParamSources names the layer
	// ("site", "profile", "cluster", "machine") each came from.
	// EffectiveSecretParams names the secret params they can read.
	EffectiveParams       map[string]string `json:"effective_params,omitempty"`
	ParamSources          map[string]string `json:"param_sources,omitempty"`
	EffectiveSecretParams []string          `json:"effective_secret_params,omitempty"`
	// GeneratedSecrets names the machine's generated secrets (values at
	// PathMachineGeneratedSecret, with a read-write token).
	GeneratedSecrets []string `json:"generated_secrets,omitempty"`

	Phase      MachinePhase `json:"phase"`
	Step       Step         `json:"step,omitempty"`
	PowerState string       `json:"power_state,omitempty"`
	PowerDrift bool         `json:"power_drift,omitempty"`
	LastError  string       `json:"last_error,omitempty"`
	Addresses  []string     `json:"addresses,omitempty"`
	Inventory  *Inventory   `json:"inventory,omitempty"`
	// ObservedVersion is the spec Version the status reflects; Converged
	// says the agent has acted on the current spec and the machine reached
	// its desired state, so a client waits on it instead of deciding.
	ObservedVersion uint64 `json:"observed_version,omitempty"`
	Converged       bool   `json:"converged"`
	// BMCStatus is ok, auth_failed or unreachable (empty before the first
	// BMC call), since BMCStatusSince.
	BMCStatus      string    `json:"bmc_status,omitempty"`
	BMCStatusSince time.Time `json:"bmc_status_since,omitzero"`
	// HardwareFingerprint is the hardware fingerprint last accepted; an
	// Inventory.Fingerprint that differs is hardware drift, accepted by the
	// next spec write (PUT).
	HardwareFingerprint string `json:"hardware_fingerprint,omitempty"`
	// ProvisionedProfile/Version say what the machine was last installed with.
	ProvisionedProfile        string    `json:"provisioned_profile,omitempty"`
	ProvisionedProfileVersion uint64    `json:"provisioned_profile_version,omitempty"`
	ProvisionedAt             time.Time `json:"provisioned_at,omitzero"`
	// CleanPending is the wipe level a clean run still owes the disk,
	// which holds a config drive the deploy ramdisk wrote ("" for none).
	CleanPending string    `json:"clean_pending,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// MachineList is the body of GET /v1/machines.
type MachineList struct {
	Items []Machine `json:"items"`
	// ETag names this answer (which machines, at which revisions): a
	// client waiting for the list to change passes it back as
	// QueryIfNoneMatch instead of listing on a timer.
	ETag string `json:"etag"`
}

// ActionResponse acknowledges a machine action.
type ActionResponse struct {
	Machine Machine `json:"machine"`
	Action  Action  `json:"action"`
}

// BootProfileRequest is the body of POST/PUT boot profiles.
type BootProfileRequest struct {
	Name        string            `json:"name"`
	Kernel      string            `json:"kernel,omitempty"`
	Initrds     []string          `json:"initrds,omitempty"`
	Cmdline     string            `json:"cmdline,omitempty"`
	IPXEScript  string            `json:"ipxe_script,omitempty"`
	Image       *Image            `json:"image,omitempty"`
	RootDevice  *RootDeviceHints  `json:"root_device,omitempty"`
	Templates   map[string]string `json:"templates,omitempty"`
	Params      map[string]string `json:"params,omitempty"`
	WipeProfile string            `json:"wipe_profile,omitempty"`
	Version     uint64            `json:"version,omitempty"`

	// CallbackAnySource accepts the installer's callback from any address,
	// not only the one the run's boot script went to.
	CallbackAnySource bool `json:"callback_any_source,omitempty"`
	// SecretParams, when present, replaces the secret params (an empty
	// object removes them all); absent, the stored ones stay. Write-only:
	// no response carries a value.
	SecretParams *map[string]string `json:"secret_params,omitempty"`
}

// BootProfile is a boot profile as the API returns it.
type BootProfile struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Kernel      string            `json:"kernel,omitempty"`
	Initrds     []string          `json:"initrds,omitempty"`
	Cmdline     string            `json:"cmdline,omitempty"`
	IPXEScript  string            `json:"ipxe_script,omitempty"`
	Image       *Image            `json:"image,omitempty"`
	RootDevice  *RootDeviceHints  `json:"root_device,omitempty"`
	Templates   map[string]string `json:"templates,omitempty"`
	Params      map[string]string `json:"params,omitempty"`
	WipeProfile string            `json:"wipe_profile,omitempty"`
	Version     uint64            `json:"version"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`

	CallbackAnySource bool `json:"callback_any_source,omitempty"`
	// SecretParamNames names the secret params; their values are never returned.
	SecretParamNames []string `json:"secret_param_names,omitempty"`
	// Snippets names the snippets the profile's texts include directly.
	Snippets []string `json:"snippets,omitempty"`
}

// TemplateRequest is the body of POST/PUT templates (snippets).
type TemplateRequest struct {
	Name        string `json:"name"`
	Content     string `json:"content"`
	Description string `json:"description,omitempty"`
	Version     uint64 `json:"version,omitempty"`
}

// Template is a snippet as the API returns it.
type Template struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Content     string `json:"content"`
	Description string `json:"description,omitempty"`
	// Snippets names the snippets this one includes directly.
	Snippets []string `json:"snippets"`
	// UsedBy names the boot profiles that include it, directly or through
	// another snippet.
	UsedBy    []string  `json:"used_by"`
	Version   uint64    `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// TemplateList is the body of GET /v1/templates.
type TemplateList struct {
	Items []Template `json:"items"`
}

// RenderedTemplate is a preview: what the machine would receive now, with
// the run token shown as <token>.
type RenderedTemplate struct {
	Machine  string `json:"machine"`
	Profile  string `json:"profile"`
	Template string `json:"template"`
	Content  string `json:"content"`
}

// SiteParamsRequest is the body of PUT /v1/site_params.
type SiteParamsRequest struct {
	Params map[string]string `json:"params,omitempty"`
	// SecretParams, when present, replaces the secret params (an empty
	// object removes them all); absent, the stored ones stay. Write-only:
	// no response carries a value.
	SecretParams *map[string]string `json:"secret_params,omitempty"`
	// Version, when non-zero, must equal the stored version (409 otherwise).
	Version uint64 `json:"version,omitempty"`
}

// SiteParams are the agent's site-wide params: below every profile's,
// cluster's and machine's.
type SiteParams struct {
	Params map[string]string `json:"params,omitempty"`
	// SecretParamNames names the secret params; their values are never returned.
	SecretParamNames []string  `json:"secret_param_names,omitempty"`
	Version          uint64    `json:"version"`
	UpdatedAt        time.Time `json:"updated_at,omitzero"`
	// Reprovisioning, in the answer to a PUT or DELETE, names the machines
	// the change re-provisions: those whose effective params or secret
	// params it changed.
	Reprovisioning []string `json:"reprovisioning,omitempty"`
}

// GeneratedSecret is a machine's generated secret, with its value: only
// for read-write tokens.
type GeneratedSecret struct {
	Machine string `json:"machine"`
	Name    string `json:"name"`
	Value   string `json:"value"`
}

// BootProfileList is the body of GET /v1/boot_profiles.
type BootProfileList struct {
	Items []BootProfile `json:"items"`
}

// ClusterMember places a machine in a role.
type ClusterMember struct {
	Machine string `json:"machine"`
	Role    string `json:"role"`
}

// ClusterRole names a role and its boot profile; roles provision in list order.
type ClusterRole struct {
	Name        string `json:"name"`
	BootProfile string `json:"boot_profile"`
}

// Rollout bounds disruption during a change.
type Rollout struct {
	MaxUnavailable int `json:"max_unavailable"`
}

// ClusterRequest is the body of POST/PUT clusters.
type ClusterRequest struct {
	Name    string            `json:"name"`
	Members []ClusterMember   `json:"members"`
	Roles   []ClusterRole     `json:"roles"`
	Params  map[string]string `json:"params,omitempty"`
	// SecretParams, when present, replaces the secret params (an empty
	// object removes them all); absent, the stored ones stay. Write-only:
	// no response carries a value.
	SecretParams *map[string]string `json:"secret_params,omitempty"`
	Rollout      *Rollout           `json:"rollout,omitempty"` // default max_unavailable 1
	Version      uint64             `json:"version,omitempty"`
}

// ClusterMemberStatus is a member with its machine's observed state.
type ClusterMemberStatus struct {
	Machine   string       `json:"machine"`
	Role      string       `json:"role"`
	Phase     MachinePhase `json:"phase"`
	LastError string       `json:"last_error,omitempty"`
	Addresses []string     `json:"addresses,omitempty"`
	// Version and ObservedVersion are the member machine's: a failed
	// member whose spec is ahead of what the agent observed is about to be
	// retried, not paused for good.
	Version         uint64 `json:"version,omitempty"`
	ObservedVersion uint64 `json:"observed_version,omitempty"`
}

// Cluster is a cluster as the API returns it.
type Cluster struct {
	ID      string                `json:"id"`
	Name    string                `json:"name"`
	Members []ClusterMemberStatus `json:"members"`
	Roles   []ClusterRole         `json:"roles"`
	Params  map[string]string     `json:"params,omitempty"`
	// SecretParamNames names the secret params; their values are never returned.
	SecretParamNames []string     `json:"secret_param_names,omitempty"`
	Rollout          Rollout      `json:"rollout"`
	Version          uint64       `json:"version"`
	Revision         uint64       `json:"revision"`
	Phase            ClusterPhase `json:"phase"`
	Message          string       `json:"message,omitempty"`
	// Converged is phase ready with every member having acted on its
	// current spec and installed with its role's profile: a ready phase
	// from before a member's spec changed does not count.
	Converged bool `json:"converged"`
	// Endpoints maps each role to its members' reported addresses.
	Endpoints map[string][]string `json:"endpoints"`
	CreatedAt time.Time           `json:"created_at"`
	UpdatedAt time.Time           `json:"updated_at"`
}

// ClusterList is the body of GET /v1/clusters.
type ClusterList struct {
	Items []Cluster `json:"items"`
}

// EventList is the body of the events endpoints. Next is the cursor for the
// following page (pass it as ?after=).
type EventList struct {
	Events []Event `json:"events"`
	Next   uint64  `json:"next"`
}

// Info is the body of GET /v1/info.
type Info struct {
	Version      string   `json:"version"`
	APIVersion   string   `json:"api_version"`
	Capabilities []string `json:"capabilities"`
	BootURL      string   `json:"boot_url,omitempty"`
	// LeaseSeconds is how long a lease taken by a write lasts, so a client
	// knows how often to renew it without spending a renewal to find out.
	LeaseSeconds float64 `json:"lease_seconds,omitempty"`
}

// CapabilityReadiness in Info.Capabilities says the agent publishes
// Converged on machines and clusters: a client that waits on it would wait
// forever on an agent that does not.
const CapabilityReadiness = "readiness"

// Error codes in ErrorBody.
const (
	CodeBadRequest   = "bad_request"
	CodeValidation   = "validation_failed"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not_found"
	CodeConflict     = "conflict"
	// CodeLeaseHeld is the 409 of a write refused because another holder's
	// lease on the machine is live: unlike other conflicts, it ends by
	// itself when that holder releases the lease or stops renewing it
	// (Info.LeaseSeconds later). Its Field stays HeaderLeaseHolder for
	// clients that predate the code.
	CodeLeaseHeld   = "lease_held"
	CodeTooLarge    = "request_too_large"
	CodeInternal    = "internal"
	CodeUnavailable = "unavailable"
)

// ErrorBody is every non-2xx response's body.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong and, for input errors, which field.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}
