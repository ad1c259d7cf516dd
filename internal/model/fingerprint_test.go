package model

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestHardwareFingerprint: the fingerprint moves with the hardware (CPUs,
// memory, disks, NICs) and with nothing else: not the power, the read time
// or the order the BMC lists things in.
func TestHardwareFingerprint(t *testing.T) {
	base := func() *Inventory {
		return &Inventory{CPUs: 2, CPUCores: 8, MemoryGiB: 0.25, PowerState: PowerOff, CollectedAt: time.Unix(1, 0),
			NICs:  []NIC{{MAC: "52:54:00:aa:00:01"}, {MAC: "52:54:00:aa:00:02"}},
			Disks: []Disk{{Name: "a", SizeGiB: 100}, {Name: "b", SizeGiB: 200}}}
	}
	fp := base().HardwareFingerprint()
	same := map[string]func(i *Inventory){
		"power":      func(i *Inventory) { i.PowerState = PowerOn },
		"read time":  func(i *Inventory) { i.CollectedAt = time.Unix(2, 0) },
		"NIC order":  func(i *Inventory) { i.NICs[0], i.NICs[1] = i.NICs[1], i.NICs[0] },
		"disk order": func(i *Inventory) { i.Disks[0], i.Disks[1] = i.Disks[1], i.Disks[0] },
		"MAC case":   func(i *Inventory) { i.NICs[0].MAC = "52:54:00:AA:00:01" },
	}
	for name, change := range same {
		inv := base()
		change(inv)
		assert.Equal(t, fp, inv.HardwareFingerprint(), name)
	}
	differ := map[string]func(i *Inventory){
		"memory": func(i *Inventory) { i.MemoryGiB = 0.5 },
		"CPUs":   func(i *Inventory) { i.CPUs = 1 },
		"a NIC":  func(i *Inventory) { i.NICs = i.NICs[:1] },
		"a disk": func(i *Inventory) { i.Disks[1].SizeGiB = 400 },
	}
	for name, change := range differ {
		inv := base()
		change(inv)
		assert.NotEqual(t, fp, inv.HardwareFingerprint(), name)
	}
	assert.Empty(t, (*Inventory)(nil).HardwareFingerprint())
}
