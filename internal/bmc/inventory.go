package bmc

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"time"

	"github.com/stmcginnis/gofish/schemas"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// Inventory reads what the BMC reports about the hardware. Only the system
// resource is required: a missing or broken optional subtree (processors,
// memory, NICs, storage) leaves its fields empty and is logged, because
// many BMCs lack one or another.
func (m *Manager) Inventory(ctx context.Context, c model.BMC) (*model.Inventory, error) {
	var inv *model.Inventory
	err := m.do(ctx, "inventory", "read inventory", c, func(ctx context.Context, t *target) error {
		var err error
		inv, err = m.inventory(ctx, t, c)
		return err
	})
	if err != nil {
		return nil, err
	}
	return inv, nil
}

func (m *Manager) inventory(ctx context.Context, t *target, c model.BMC) (*model.Inventory, error) {
	sys, err := t.system()
	if err != nil {
		return nil, err
	}
	inv := &model.Inventory{
		Manufacturer: sys.Manufacturer,
		Model:        sys.Model,
		Serial:       sys.SerialNumber,
		UUID:         sys.UUID,
		BIOSVersion:  sys.BiosVersion,
		PowerState:   string(sys.PowerState),
		CPUModel:     sys.ProcessorSummary.Model,
		CollectedAt:  time.Now().UTC(),
	}
	if n := sys.ProcessorSummary.Count; n != nil {
		inv.CPUs = int(*n)
	}
	if gib := sys.MemorySummary.TotalSystemMemoryGiB; gib != nil {
		inv.MemoryGiB = *gib
	}
	// optional decides whether a subtree's failure ends the inventory: only
	// when the session died or the caller gave up.
	optional := func(what string, err error) error {
		if err == nil {
			return nil
		}
		switch s := statusOf(err); {
		case s == http.StatusUnauthorized, ctx.Err() != nil:
			return err
		case s == http.StatusNotFound:
			return nil
		}
		m.log.Warn("BMC inventory: skipping unreadable "+what, "endpoint", c.Endpoint,
			"error", scrub(sessionFailure(err), c.Password))
		return nil
	}

	if inv.CPUs == 0 || inv.CPUModel == "" {
		procs, err := sys.Processors()
		if err := optional("processors", err); err != nil {
			return nil, err
		}
		cpus, model := countCPUs(procs)
		if inv.CPUs == 0 {
			inv.CPUs = cpus
		}
		if inv.CPUModel == "" {
			inv.CPUModel = model
		}
	}
	if inv.MemoryGiB == 0 {
		dimms, err := sys.Memory()
		if err := optional("memory", err); err != nil {
			return nil, err
		}
		inv.MemoryGiB = sumMemoryGiB(dimms)
	}

	ifaces, err := sys.EthernetInterfaces()
	if err := optional("ethernet interfaces", err); err != nil {
		return nil, err
	}
	inv.NICs = nics(ifaces)

	storage, err := sys.Storage()
	if err := optional("storage", err); err != nil {
		return nil, err
	}
	for _, s := range storage {
		drives, err := s.Drives()
		if err := optional("drives", err); err != nil {
			return nil, err
		}
		for _, d := range drives {
			if d.Status.State == schemas.AbsentState {
				continue
			}
			disk := model.Disk{Name: d.Name, Model: d.Model, Serial: d.SerialNumber, MediaType: string(d.MediaType)}
			if d.CapacityBytes != nil {
				disk.SizeGiB = gib(float64(*d.CapacityBytes))
			}
			inv.Disks = append(inv.Disks, disk)
		}
	}
	// SimpleStorage is the older, flatter schema; read it only when Storage
	// yielded nothing so a disk is not listed twice.
	if len(inv.Disks) == 0 {
		simple, err := sys.SimpleStorage()
		if err := optional("simple storage", err); err != nil {
			return nil, err
		}
		for _, s := range simple {
			for _, d := range s.Devices {
				if d.Status.State == schemas.AbsentState {
					continue
				}
				disk := model.Disk{Name: d.Name, Model: d.Model}
				if d.CapacityBytes != nil {
					disk.SizeGiB = gib(float64(*d.CapacityBytes))
				}
				inv.Disks = append(inv.Disks, disk)
			}
		}
	}
	return inv, nil
}

func gib(bytes float64) float64 { return math.Round(bytes/(1<<30)*100) / 100 }

func countCPUs(procs []*schemas.Processor) (n int, model string) {
	for _, p := range procs {
		if p.Status.State == schemas.AbsentState {
			continue
		}
		if p.ProcessorType != "" && p.ProcessorType != schemas.CPUProcessorType {
			continue // GPUs, FPGAs, accelerators
		}
		n++
		if model == "" {
			model = p.Model
		}
	}
	return n, model
}

func sumMemoryGiB(dimms []*schemas.Memory) float64 {
	var mib int
	for _, d := range dimms {
		if d.Status.State == schemas.AbsentState || d.CapacityMiB == nil {
			continue
		}
		mib += *d.CapacityMiB
	}
	return float64(mib) / 1024
}

// nics keeps the host's real ports: a VLAN sub-interface repeats its
// parent's MAC and a Redfish host interface is the in-band channel to the
// BMC, neither of which PXE-boots.
func nics(ifaces []*schemas.EthernetInterface) []model.NIC {
	var out []model.NIC
	seen := map[string]bool{}
	for _, e := range ifaces {
		if e.EthernetInterfaceType == schemas.VirtualEthernetDeviceType || e.Status.State == schemas.AbsentState ||
			isHostInterface(e.RawData) {
			continue
		}
		raw := e.MACAddress
		if raw == "" {
			raw = e.PermanentMACAddress
		}
		mac, err := model.NormalizeMAC(raw)
		if err != nil || seen[mac] {
			continue
		}
		seen[mac] = true
		nic := model.NIC{Name: e.ID, MAC: mac, LinkState: string(e.LinkStatus)}
		if e.SpeedMbps != nil {
			nic.SpeedMbps = *e.SpeedMbps
		}
		out = append(out, nic)
	}
	return out
}

func isHostInterface(raw []byte) bool {
	var v struct {
		Links struct {
			HostInterface struct {
				ID string `json:"@odata.id"`
			} `json:"HostInterface"`
		} `json:"Links"`
	}
	return json.Unmarshal(raw, &v) == nil && v.Links.HostInterface.ID != ""
}
