package bmc

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strings"
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
		CollectedAt:  time.Now().UTC(),
	}
	inv.BootMode, inv.BootModes = bootModes(sys)
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

	procs, err := sys.Processors()
	if err := optional("processors", err); err != nil {
		return nil, err
	}
	countProcessors(inv, sys.ProcessorSummary, procs)
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
	if inv.Disks, err = m.drives(ctx, t, c, storage); err != nil {
		return nil, err
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
				disk := model.Disk{Name: d.Name, Model: strings.TrimSpace(d.Model)}
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

// bootModes reads the firmware boot mode in lower case, so templates and
// Terraform compare against one spelling whatever the vendor's. gofish does
// not decode the mode's allowable values, hence the raw document.
func bootModes(sys *schemas.ComputerSystem) (mode string, allowed []string) {
	var raw struct {
		Boot struct {
			Allowed []string `json:"BootSourceOverrideMode@Redfish.AllowableValues"`
		}
	}
	_ = json.Unmarshal(sys.RawData, &raw)
	for _, a := range raw.Boot.Allowed {
		allowed = append(allowed, strings.ToLower(a))
	}
	return strings.ToLower(string(sys.Boot.BootSourceOverrideMode)), allowed
}

// countProcessors fills the CPU, GPU and accelerator figures. The Processors
// list is the evidence whenever it holds a present CPU, because summaries
// are wrong on real BMCs: Supermicro X10 counts threads, the DMTF mockup an
// empty socket, and GPU blades their GPUs. Without such a list (iDRAC8 and
// the Quanta capture publish none) the summary is all there is.
func countProcessors(inv *model.Inventory, sum schemas.ProcessorSummary, procs []*schemas.Processor) {
	var cpus, cores, threads int
	var cpuModel string
	for _, p := range procs {
		if p.Status.State == schemas.AbsentState {
			continue
		}
		name := strings.TrimSpace(p.Model)
		switch p.ProcessorType {
		case schemas.CPUProcessorType:
			cpus++
			cores += deref(p.TotalCores)
			threads += deref(p.TotalThreads)
			if cpuModel == "" {
				cpuModel = name
			}
		case schemas.GPUProcessorType:
			inv.GPUs++
			if inv.GPUModel == "" {
				inv.GPUModel = name
			}
		case schemas.FPGAProcessorType, schemas.DSPProcessorType, schemas.AcceleratorProcessorType:
			inv.Accelerators++
			if inv.AcceleratorModel == "" {
				inv.AcceleratorModel = name
			}
		}
	}
	if cpus > 0 {
		inv.CPUs, inv.CPUModel, inv.CPUCores, inv.CPUThreads = cpus, cpuModel, cores, threads
		return
	}
	inv.CPUs = int(deref(sum.Count))
	inv.CPUModel = strings.TrimSpace(sum.Model)
	inv.CPUCores = int(deref(sum.CoreCount))
	inv.CPUThreads = int(deref(sum.LogicalProcessorCount))
}

func deref[T int | uint](p *T) T {
	if p == nil {
		return 0
	}
	return *p
}

// drives reads every storage controller's drives once each: BMCs link one
// drive from several controllers, or the same link many times, and some
// answer a drive link with an error document or an empty one and status
// 200. Such a link is no disk; it is logged the first time it is seen, not on
// every inventory of every machine.
func (m *Manager) drives(ctx context.Context, t *target, c model.BMC, storage []*schemas.Storage) ([]model.Disk, error) {
	var disks []model.Disk
	seen := map[string]bool{}
	skip := func(link, why string) {
		if _, logged := m.skippedDrives.LoadOrStore(c.Endpoint+" "+link, true); !logged {
			m.log.Warn("BMC inventory: skipping a drive link that is not a drive", "endpoint", c.Endpoint,
				"drive", link, "reason", scrub(why, c.Password))
		}
	}
	for _, s := range storage {
		for _, link := range driveLinks(s.RawData) {
			key := strings.TrimSuffix(link, "/")
			if seen[key] {
				continue
			}
			seen[key] = true
			d, err := schemas.GetObject[schemas.Drive](t.api, link)
			if err != nil {
				if statusOf(err) == http.StatusUnauthorized || ctx.Err() != nil {
					return nil, err
				}
				skip(key, sessionFailure(err))
				continue
			}
			if why := notADrive(d); why != "" {
				skip(key, why)
				continue
			}
			if id := strings.TrimSuffix(d.ODataID, "/"); id != key {
				if seen[id] {
					continue
				}
				seen[id] = true
			}
			if d.Status.State == schemas.AbsentState {
				continue
			}
			disk := model.Disk{Name: d.Name, Model: strings.TrimSpace(d.Model), Serial: strings.TrimSpace(d.SerialNumber),
				MediaType: string(d.MediaType), Rotational: rotational(d)}
			if d.CapacityBytes != nil {
				disk.SizeGiB = gib(float64(*d.CapacityBytes))
			}
			disks = append(disks, disk)
		}
	}
	return disks, nil
}

// driveLinks lists a Storage resource's drive links as written; callers
// compare them without a trailing slash, as iLO writes some links with one
// and some without.
func driveLinks(raw []byte) []string {
	var doc struct {
		Drives []struct {
			ID string `json:"@odata.id"`
		}
	}
	_ = json.Unmarshal(raw, &doc)
	links := make([]string, 0, len(doc.Drives))
	for _, d := range doc.Drives {
		if d.ID != "" {
			links = append(links, d.ID)
		}
	}
	return links
}

// notADrive says why a document served for a drive link is not one, or "".
func notADrive(d *schemas.Drive) string {
	var doc map[string]json.RawMessage
	if json.Unmarshal(d.RawData, &doc) != nil || doc == nil {
		return "the answer is not a JSON object"
	}
	if e, ok := doc["error"]; ok {
		var body struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(e, &body)
		return trim(strings.TrimSpace("an error document with status 200: " + body.Code + " " + body.Message))
	}
	if d.Name == "" && d.Model == "" && d.SerialNumber == "" && d.CapacityBytes == nil {
		return "an empty document (no name, model, serial or capacity)"
	}
	return ""
}

// rotational is true for spinning media; SMR drives spin too.
func rotational(d *schemas.Drive) bool {
	switch d.MediaType {
	case schemas.HDDMediaType, schemas.SMRMediaType:
		return true
	}
	return d.RotationSpeedRPM != nil && *d.RotationSpeedRPM > 0
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
