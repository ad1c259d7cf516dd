package lab

import (
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// The documents follow the DMTF reference mockup (public-rackmount1) in
// shape and property names, trimmed to what a provisioning client reads.

func odataID(path string) map[string]any { return map[string]any{"@odata.id": path} }

func odataContext(typ string) string { return redfishRoot + "/$metadata#" + typ }

func (l *Lab) serviceRootDoc() map[string]any {
	return map[string]any{
		"@odata.type":    "#ServiceRoot.v1_15_0.ServiceRoot",
		"@odata.id":      redfishRoot + "/",
		"@odata.context": odataContext("ServiceRoot.ServiceRoot"),
		"Id":             "RootService",
		"Name":           "Root Service",
		"RedfishVersion": "1.15.0",
		"UUID":           l.serviceUUID,
		"Product":        "OpenBareMetal Lab",
		"Vendor":         "OpenBareMetal",
		"ProtocolFeaturesSupported": map[string]any{
			"ExpandQuery":     map[string]any{"ExpandAll": false, "Levels": false, "Links": false, "NoLinks": false},
			"FilterQuery":     false,
			"SelectQuery":     false,
			"OnlyMemberQuery": false,
			"ExcerptQuery":    false,
		},
		"Systems":        odataID(redfishRoot + "/Systems"),
		"Managers":       odataID(redfishRoot + "/Managers"),
		"SessionService": odataID(redfishRoot + "/SessionService"),
		"Links": map[string]any{
			"Sessions": odataID(redfishRoot + "/SessionService/Sessions"),
		},
	}
}

func sessionServiceDoc() map[string]any {
	return map[string]any{
		"@odata.type":    "#SessionService.v1_1_8.SessionService",
		"@odata.id":      redfishRoot + "/SessionService",
		"@odata.context": odataContext("SessionService.SessionService"),
		"Id":             "SessionService",
		"Name":           "Session Service",
		"Description":    "Session Service",
		"Status":         map[string]any{"State": "Enabled", "Health": "OK"},
		"ServiceEnabled": true,
		"SessionTimeout": int(sessionTimeout.Seconds()),
		"Sessions":       odataID(redfishRoot + "/SessionService/Sessions"),
	}
}

// sessionsDoc lists the sessions of p's BMC: each machine is its own BMC.
func (l *Lab) sessionsDoc(p *System) map[string]any {
	l.sessMu.Lock()
	ids := slices.Sorted(maps.Keys(p.sessions))
	l.sessMu.Unlock()
	members := []any{}
	for _, id := range ids {
		members = append(members, odataID(sessionPath(id)))
	}
	return map[string]any{
		"@odata.type":         "#SessionCollection.SessionCollection",
		"@odata.id":           redfishRoot + "/SessionService/Sessions",
		"@odata.context":      odataContext("SessionCollection.SessionCollection"),
		"Name":                "Session Collection",
		"Members@odata.count": len(members),
		"Members":             members,
	}
}

func sessionDoc(ss *session) map[string]any {
	return map[string]any{
		"@odata.type":    "#Session.v1_6_0.Session",
		"@odata.id":      sessionPath(ss.id),
		"@odata.context": odataContext("Session.Session"),
		"Id":             ss.id,
		"Name":           "User Session",
		"Description":    "Manager User Session",
		"UserName":       ss.sys.username,
		"SessionType":    "Redfish",
	}
}

// collectionDoc lists every system (or manager): one per machine.
func (l *Lab) collectionDoc(coll, typ, name string) map[string]any {
	members := make([]any, 0, len(l.order))
	for _, s := range l.order {
		members = append(members, odataID(redfishRoot+"/"+coll+"/"+s.name))
	}
	return map[string]any{
		"@odata.type":         typ,
		"@odata.id":           redfishRoot + "/" + coll,
		"@odata.context":      odataContext(strings.TrimPrefix(typ, "#")),
		"Name":                name,
		"Members@odata.count": len(members),
		"Members":             members,
	}
}

func (s *System) path() string { return redfishRoot + "/Systems/" + s.name }

// hardware is what a machine is made of; the qemu backend reports the VM.
type hardware struct {
	model, bios, cpuModel   string
	cpus, cores, threads    int
	memoryGiB               float64
	diskModel, diskMedia    string
	diskBytes               int64
	nicSpeedMbps            int
	managerModel, bmcFwVers string
}

func (s *System) hardware() hardware {
	if s.lab.cfg.Backend == BackendQEMU {
		bios := "SeaBIOS (QEMU)"
		if s.firmware == FirmwareUEFI {
			bios = "EDK II (OVMF)"
		}
		return hardware{
			model: "QEMU Standard PC (i440FX + PIIX, 1996)", bios: bios, cpuModel: "QEMU Virtual CPU (TCG)",
			cpus: 1, cores: 1, threads: 1, memoryGiB: float64(s.lab.cfg.MemoryMiB) / 1024,
			diskModel: "QEMU VIRTIO DISK", diskMedia: "HDD", diskBytes: s.lab.cfg.diskBytes(),
			nicSpeedMbps: 1000, managerModel: "OpenBareMetal Lab BMC (qemu)", bmcFwVers: "lab-1.0",
		}
	}
	hw := hardware{
		model: "Lab Server M1", bios: "LAB.1.4.2", cpuModel: "Lab Virtual CPU @ 2.40GHz",
		cpus: 2, cores: 8, threads: 32, memoryGiB: 64,
		diskModel: "Lab SSD 480", diskMedia: "SSD", diskBytes: 480103981056,
		nicSpeedMbps: 10000, managerModel: "OpenBareMetal Lab BMC (memory)", bmcFwVers: "lab-1.0",
	}
	if g := math.Float64frombits(s.memoryGiB.Load()); g > 0 {
		hw.memoryGiB = g
	}
	return hw
}

// SetMemoryGiB changes the memory a memory-backend machine reports, as a
// DIMM swap would: tests of hardware drift use it.
func (s *System) SetMemoryGiB(g float64) { s.memoryGiB.Store(math.Float64bits(g)) }

// systemDoc renders the ComputerSystem with the given boot override and
// reported power; callers hold s.mu.
func (s *System) systemDoc(boot BootOverride, power string) map[string]any {
	hw := s.hardware()
	doc := map[string]any{
		"@odata.type":    "#ComputerSystem.v1_20_0.ComputerSystem",
		"@odata.id":      s.path(),
		"@odata.context": odataContext("ComputerSystem.ComputerSystem"),
		"Id":             s.name,
		"Name":           s.name,
		"SystemType":     "Physical",
		"Manufacturer":   "OpenBareMetal Lab",
		"Model":          hw.model,
		"SerialNumber":   s.serial,
		"UUID":           s.uuid,
		"BiosVersion":    hw.bios,
		"PowerState":     power,
		"Status":         map[string]any{"State": "Enabled", "Health": "OK", "HealthRollup": "OK"},
		"Boot": map[string]any{
			"BootSourceOverrideTarget":                         boot.Target,
			"BootSourceOverrideEnabled":                        boot.Enabled,
			"BootSourceOverrideMode":                           boot.Mode,
			"BootSourceOverrideTarget@Redfish.AllowableValues": bootTargets,
			"BootSourceOverrideMode@Redfish.AllowableValues":   bootModesOf(s.firmware),
		},
		"ProcessorSummary": map[string]any{
			"Count":                 hw.cpus,
			"CoreCount":             hw.cores,
			"LogicalProcessorCount": hw.threads,
			"Model":                 hw.cpuModel,
			"Status":                map[string]any{"State": "Enabled", "Health": "OK"},
		},
		"MemorySummary": map[string]any{
			"TotalSystemMemoryGiB": hw.memoryGiB,
			"Status":               map[string]any{"State": "Enabled", "Health": "OK"},
		},
		"EthernetInterfaces": odataID(s.path() + "/EthernetInterfaces"),
		"Storage":            odataID(s.path() + "/Storage"),
		"Links": map[string]any{
			"ManagedBy": []any{odataID(redfishRoot + "/Managers/" + s.name)},
		},
		"Actions": map[string]any{
			"#ComputerSystem.Reset": map[string]any{
				"target":                            s.path() + "/Actions/ComputerSystem.Reset",
				"ResetType@Redfish.AllowableValues": ResetTypes,
			},
		},
	}
	if !s.lastReset.IsZero() {
		doc["LastResetTime"] = s.lastReset.UTC().Format(time.RFC3339Nano)
	}
	return doc
}

func (s *System) nicsDoc() map[string]any {
	return map[string]any{
		"@odata.type":         "#EthernetInterfaceCollection.EthernetInterfaceCollection",
		"@odata.id":           s.path() + "/EthernetInterfaces",
		"@odata.context":      odataContext("EthernetInterfaceCollection.EthernetInterfaceCollection"),
		"Name":                "Ethernet Interface Collection",
		"Members@odata.count": 1,
		"Members":             []any{odataID(s.path() + "/EthernetInterfaces/NIC1")},
	}
}

// nicDoc writes the MAC in upper case, as most BMCs do.
func (s *System) nicDoc(power string) map[string]any {
	link := "LinkDown"
	if power == "On" {
		link = "LinkUp"
	}
	mac := strings.ToUpper(s.mac)
	return map[string]any{
		"@odata.type":           "#EthernetInterface.v1_9_0.EthernetInterface",
		"@odata.id":             s.path() + "/EthernetInterfaces/NIC1",
		"@odata.context":        odataContext("EthernetInterface.EthernetInterface"),
		"Id":                    "NIC1",
		"Name":                  "Ethernet Interface",
		"Description":           "System NIC 1 (PXE)",
		"Status":                map[string]any{"State": "Enabled", "Health": "OK"},
		"EthernetInterfaceType": "Physical",
		"InterfaceEnabled":      true,
		"LinkStatus":            link,
		"MACAddress":            mac,
		"PermanentMACAddress":   mac,
		"SpeedMbps":             s.hardware().nicSpeedMbps,
		"FullDuplex":            true,
	}
}

func (s *System) storagesDoc() map[string]any {
	return map[string]any{
		"@odata.type":         "#StorageCollection.StorageCollection",
		"@odata.id":           s.path() + "/Storage",
		"@odata.context":      odataContext("StorageCollection.StorageCollection"),
		"Name":                "Storage Collection",
		"Members@odata.count": 1,
		"Members":             []any{odataID(s.path() + "/Storage/1")},
	}
}

func (s *System) storageDoc() map[string]any {
	s.mu.Lock()
	n := max(1, s.fault.DuplicateDriveLinks)
	s.mu.Unlock()
	drives := make([]any, n)
	for i := range drives {
		drives[i] = odataID(s.path() + "/Storage/1/Drives/0")
	}
	return map[string]any{
		"@odata.type":        "#Storage.v1_15_0.Storage",
		"@odata.id":          s.path() + "/Storage/1",
		"@odata.context":     odataContext("Storage.Storage"),
		"Id":                 "1",
		"Name":               "Local Storage Controller",
		"Status":             map[string]any{"State": "Enabled", "Health": "OK", "HealthRollup": "OK"},
		"Drives@odata.count": len(drives),
		"Drives":             drives,
	}
}

func (s *System) driveDoc() map[string]any {
	hw := s.hardware()
	return map[string]any{
		"@odata.type":    "#Drive.v1_17_0.Drive",
		"@odata.id":      s.path() + "/Storage/1/Drives/0",
		"@odata.context": odataContext("Drive.Drive"),
		"Id":             "0",
		"Name":           "Disk 0",
		"Model":          hw.diskModel,
		"Manufacturer":   "OpenBareMetal Lab",
		"SerialNumber":   s.serial + "-D0",
		"CapacityBytes":  hw.diskBytes,
		"MediaType":      hw.diskMedia,
		"Protocol":       "SATA",
		"Status":         map[string]any{"State": "Enabled", "Health": "OK"},
	}
}

func (s *System) managerDoc() map[string]any {
	hw := s.hardware()
	return map[string]any{
		"@odata.type":     "#Manager.v1_17_0.Manager",
		"@odata.id":       redfishRoot + "/Managers/" + s.name,
		"@odata.context":  odataContext("Manager.Manager"),
		"Id":              s.name,
		"Name":            "Manager",
		"Description":     "BMC of " + s.name,
		"ManagerType":     "BMC",
		"Model":           hw.managerModel,
		"FirmwareVersion": hw.bmcFwVers,
		"UUID":            uuidFrom("openbaremetal-lab-bmc/" + s.name),
		"PowerState":      "On",
		"Status":          map[string]any{"State": "Enabled", "Health": "OK"},
		"Links": map[string]any{
			"ManagerForServers": []any{odataID(s.path())},
		},
	}
}
