package apiserver

import (
	"maps"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// Conversions between the store's model and the wire types live here and
// only here, so what leaves the agent is decided in one place. The BMC
// password and the run token never cross: the API types have no field for them.

func machineToAPI(m *model.Machine) api.Machine {
	macs := m.MACs
	if macs == nil {
		macs = []string{}
	}
	return api.Machine{
		ID:   m.Name,
		Name: m.Name,
		BMC: api.BMCInfo{
			Endpoint:  m.BMC.Endpoint,
			Username:  m.BMC.Username,
			Insecure:  m.BMC.Insecure,
			CACertPEM: m.BMC.CACertPEM,
		},
		MACs:                      macs,
		BootProfile:               m.BootProfile,
		Params:                    m.Params,
		State:                     api.DesiredState(m.State),
		BootMode:                  api.BootMode(m.BootMode),
		RootDevice:                rootDeviceToAPI(m.RootDevice),
		Adopt:                     m.Adopt,
		Cluster:                   m.Cluster,
		Role:                      m.Role,
		Version:                   m.Version,
		Revision:                  m.Revision,
		SecretParamNames:          m.SecretParams.Names(),
		GeneratedSecrets:          m.GeneratedSecrets.Names(),
		Phase:                     api.MachinePhase(m.Status.Phase),
		Step:                      api.Step(m.Status.Step),
		PowerState:                m.Status.PowerState,
		PowerDrift:                m.Status.PowerDrift,
		LastError:                 m.Status.LastError,
		Addresses:                 m.Status.Addresses,
		Inventory:                 inventoryToAPI(m.Status.Inventory),
		ObservedVersion:           m.Status.ObservedVersion,
		Converged:                 m.Converged(),
		BMCStatus:                 m.Status.BMCStatus,
		BMCStatusSince:            m.Status.BMCStatusSince,
		HardwareFingerprint:       m.Status.AcceptedFingerprint,
		ProvisionedProfile:        m.Status.ProvisionedProfile,
		ProvisionedProfileVersion: m.Status.ProvisionedProfileVersion,
		ProvisionedAt:             m.Status.ProvisionedAt,
		CleanPending:              m.Status.CleanPending,
		CreatedAt:                 m.CreatedAt,
		UpdatedAt:                 m.UpdatedAt,
	}
}

// applyMachineSpec copies a validated request's spec onto m. An empty
// password keeps the stored one (the API never returns it, so a client
// cannot send it back).
func applyMachineSpec(m *model.Machine, v *validMachine) {
	m.BMC.Endpoint = v.req.BMC.Endpoint
	m.BMC.Username = v.req.BMC.Username
	if v.req.BMC.Password != "" {
		m.BMC.Password = v.req.BMC.Password
	}
	m.BMC.Insecure = v.req.BMC.Insecure
	m.BMC.CACertPEM = v.req.BMC.CACertPEM
	m.MACs = v.macs
	m.BootProfile = v.req.BootProfile
	m.Params = v.req.Params
	m.State = v.state
	m.BootMode = model.BootMode(v.req.BootMode)
	m.RootDevice = rootDeviceFromAPI(v.req.RootDevice)
	m.Adopt = v.req.Adopt
	applySecrets(&m.SecretParams, &m.SecretsRevision, v.req.SecretParams)
}

// applySecrets replaces *dst with a request's secret params when it gives
// them (nil keeps the stored ones: the API never returns them, so a client
// cannot send them back) and bumps *rev when the values change, which
// re-provisions the machines that read them.
func applySecrets(dst *model.Secrets, rev *uint64, req *map[string]string) {
	if req == nil {
		return
	}
	var next model.Secrets
	if len(*req) > 0 {
		next = maps.Clone(*req)
	}
	if maps.Equal(*dst, next) {
		return
	}
	*dst = next
	*rev++
}

func profileToAPI(p *model.BootProfile) api.BootProfile {
	return api.BootProfile{
		ID:          p.Name,
		Name:        p.Name,
		Kernel:      p.Kernel,
		Initrds:     p.Initrds,
		Cmdline:     p.Cmdline,
		IPXEScript:  p.IPXEScript,
		Image:       imageToAPI(p.Image),
		RootDevice:  rootDeviceToAPI(p.RootDevice),
		Templates:   p.Templates,
		Params:      p.Params,
		WipeProfile: p.WipeProfile,
		Version:     p.Version,
		CreatedAt:   p.CreatedAt,
		UpdatedAt:   p.UpdatedAt,
		Snippets:    p.Snippets,

		CallbackAnySource: p.CallbackAnySource,
		SecretParamNames:  p.SecretParams.Names(),
	}
}

func applyProfileSpec(p *model.BootProfile, req *api.BootProfileRequest) {
	p.Kernel = req.Kernel
	p.Initrds = req.Initrds
	p.Cmdline = req.Cmdline
	p.IPXEScript = req.IPXEScript
	p.Image = nil
	if req.Image != nil {
		p.Image = &model.Image{URL: req.Image.URL, Checksum: req.Image.Checksum, Format: req.Image.Format, Wipe: req.Image.Wipe}
		if p.Image.Wipe == "" {
			// Stored as it is read back: the level an empty wipe means.
			p.Image.Wipe = model.WipeConfigDrive
		}
	}
	p.RootDevice = rootDeviceFromAPI(req.RootDevice)
	p.Templates = req.Templates
	p.Params = req.Params
	p.WipeProfile = req.WipeProfile
	p.CallbackAnySource = req.CallbackAnySource
	applySecrets(&p.SecretParams, &p.SecretsRevision, req.SecretParams)
}

func applyClusterSpec(c *model.Cluster, req *api.ClusterRequest) {
	c.Members = make([]model.ClusterMember, len(req.Members))
	for i, m := range req.Members {
		c.Members[i] = model.ClusterMember{Machine: m.Machine, Role: m.Role}
	}
	c.Roles = make([]model.ClusterRole, len(req.Roles))
	for i, r := range req.Roles {
		c.Roles[i] = model.ClusterRole{Name: r.Name, BootProfile: r.BootProfile}
	}
	c.Params = req.Params
	applySecrets(&c.SecretParams, &c.SecretsRevision, req.SecretParams)
	c.Rollout = model.Rollout{MaxUnavailable: 1}
	if req.Rollout != nil && req.Rollout.MaxUnavailable > 0 {
		c.Rollout.MaxUnavailable = req.Rollout.MaxUnavailable
	}
}

// clusterToAPI computes a cluster's view from its members' machines
// (machines maps name to machine; a missing member shows with no phase) and
// the reconciler's status. A failed member pauses the cluster at once.
// "ready" needs both every member provisioned and the reconciler's word:
// only it knows whether a provisioned member still runs its current target
// (a changed profile or params means it is about to be re-provisioned), and
// every spec write resets its status (resetClusterStatus) so a "ready" from
// before the write cannot end a wait early.
func clusterToAPI(c *model.Cluster, machines map[string]*model.Machine) api.Cluster {
	out := api.Cluster{
		ID:               c.Name,
		Name:             c.Name,
		Members:          make([]api.ClusterMemberStatus, 0, len(c.Members)),
		Roles:            make([]api.ClusterRole, 0, len(c.Roles)),
		Params:           c.Params,
		SecretParamNames: c.SecretParams.Names(),
		Rollout:          api.Rollout{MaxUnavailable: c.Rollout.MaxUnavailable},
		Version:          c.Version,
		Revision:         c.Revision,
		Endpoints:        map[string][]string{},
		CreatedAt:        c.CreatedAt,
		UpdatedAt:        c.UpdatedAt,
	}
	for _, r := range c.Roles {
		out.Roles = append(out.Roles, api.ClusterRole{Name: r.Name, BootProfile: r.BootProfile})
		out.Endpoints[r.Name] = []string{}
	}
	for _, mem := range c.Members {
		ms := api.ClusterMemberStatus{Machine: mem.Machine, Role: mem.Role}
		if m := machines[mem.Machine]; m != nil {
			ms.Phase = api.MachinePhase(m.Status.Phase)
			ms.LastError = m.Status.LastError
			ms.Addresses = m.Status.Addresses
			ms.Version = m.Version
			ms.ObservedVersion = m.Status.ObservedVersion
			out.Endpoints[mem.Role] = append(out.Endpoints[mem.Role], m.Status.Addresses...)
		}
		out.Members = append(out.Members, ms)
	}
	r := c.Readiness(machines)
	out.Phase, out.Message, out.Converged = r.Phase, r.Message, r.Converged
	return out
}

// resetClusterStatus marks the reconciler's status as not yet reflecting
// the spec being written.
func resetClusterStatus(c *model.Cluster) {
	c.Status = model.ClusterStatus{Phase: string(api.ClusterPending), Message: "spec changed; waiting for the reconciler"}
	if len(c.Members) > 0 {
		c.Status.Phase = string(api.ClusterConverging)
	}
}

func inventoryToAPI(inv *model.Inventory) *api.Inventory {
	if inv == nil {
		return nil
	}
	out := &api.Inventory{
		Manufacturer: inv.Manufacturer, Model: inv.Model, Serial: inv.Serial, UUID: inv.UUID,
		BIOSVersion: inv.BIOSVersion, PowerState: inv.PowerState,
		CPUs: inv.CPUs, CPUModel: inv.CPUModel, CPUCores: inv.CPUCores, CPUThreads: inv.CPUThreads,
		GPUs: inv.GPUs, GPUModel: inv.GPUModel, Accelerators: inv.Accelerators, AcceleratorModel: inv.AcceleratorModel,
		MemoryGiB: inv.MemoryGiB, BootMode: inv.BootMode, BootModes: inv.BootModes,
		CollectedAt: inv.CollectedAt, Fingerprint: inv.Fingerprint,
	}
	for _, n := range inv.NICs {
		out.NICs = append(out.NICs, api.NIC{Name: n.Name, MAC: n.MAC, LinkState: n.LinkState, SpeedMbps: n.SpeedMbps})
	}
	for _, d := range inv.Disks {
		out.Disks = append(out.Disks, api.Disk{Name: d.Name, Model: d.Model, Serial: d.Serial, SizeGiB: d.SizeGiB, MediaType: d.MediaType, Rotational: d.Rotational})
	}
	return out
}

func imageToAPI(img *model.Image) *api.Image {
	if img == nil {
		return nil
	}
	return &api.Image{URL: img.URL, Checksum: img.Checksum, Format: img.Format, Wipe: img.Wipe}
}

func rootDeviceToAPI(h *model.RootDeviceHints) *api.RootDeviceHints {
	if h == nil {
		return nil
	}
	return &api.RootDeviceHints{Name: h.Name, MinSizeGiB: h.MinSizeGiB, MaxSizeGiB: h.MaxSizeGiB, Model: h.Model, Serial: h.Serial, WWN: h.WWN, Rotational: h.Rotational}
}

func rootDeviceFromAPI(h *api.RootDeviceHints) *model.RootDeviceHints {
	if h == nil {
		return nil
	}
	return &model.RootDeviceHints{Name: h.Name, MinSizeGiB: h.MinSizeGiB, MaxSizeGiB: h.MaxSizeGiB, Model: h.Model, Serial: h.Serial, WWN: h.WWN, Rotational: h.Rotational}
}

func eventToAPI(e model.Event) api.Event {
	return api.Event{Seq: e.Seq, Time: e.Time, Machine: e.Machine, Type: e.Type, Phase: api.MachinePhase(e.Phase), Step: api.Step(e.Step), Message: e.Message, Data: e.Data}
}

func eventsToAPI(es []model.Event) []api.Event {
	out := make([]api.Event, len(es))
	for i, e := range es {
		out[i] = eventToAPI(e)
	}
	return out
}
