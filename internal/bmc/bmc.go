// Package bmc drives baseboard management controllers over Redfish.
//
// Callers hand credentials with every call; the Manager keeps one Redfish
// session per BMC, serialises operations per BMC and bounds concurrency
// across all of them.
package bmc

// PowerAction is a power operation, named after Redfish ResetType values.
type PowerAction string

const (
	PowerOn       PowerAction = "On"
	PowerForceOff PowerAction = "ForceOff"
	// PowerGracefulShutdown falls back to ForceOff after the manager's
	// graceful deadline.
	PowerGracefulShutdown PowerAction = "GracefulShutdown"
	PowerForceRestart     PowerAction = "ForceRestart"
	PowerCycle            PowerAction = "PowerCycle"
)

// BootTarget is a one-time or persistent boot device.
type BootTarget string

const (
	BootPXE  BootTarget = "Pxe"
	BootDisk BootTarget = "Hdd"
)
