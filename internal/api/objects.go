package api

import "time"

// Inventory is what the BMC reports about a machine's hardware.
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
	// Fingerprint identifies the hardware (CPUs, memory, disks, NICs), so
	// a client can tell changed hardware without hashing itself.
	Fingerprint string `json:"fingerprint,omitempty"`
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

// Image is an OS image a profile deploys to the machine's root disk.
type Image struct {
	// URL is an http(s) URL, or a path under the agent's assets directory.
	URL string `json:"url"`
	// Checksum is "sha256:<hex>" or "sha512:<hex>" of the file at URL.
	Checksum string `json:"checksum"`
	// Format is one of ImageFormats.
	Format string `json:"format"`
	// Wipe is one of ImageWipes; "" is WipeConfigDrive.
	Wipe string `json:"wipe,omitempty"`
}

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

// Event is one recorded fact about a machine (or the agent, with Machine "").
type Event struct {
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"`
	Machine string            `json:"machine,omitempty"`
	Type    string            `json:"type"`
	Phase   MachinePhase      `json:"phase,omitempty"`
	Step    Step              `json:"step,omitempty"`
	Message string            `json:"message,omitempty"`
	Data    map[string]string `json:"data,omitempty"`
}
