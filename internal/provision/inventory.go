package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// readInventory reads the machine's inventory and stamps it with its read
// time and hardware fingerprint.
func (r *Reconciler) readInventory(ctx context.Context, c model.BMC) (*model.Inventory, error) {
	inv, err := r.bmc.Inventory(ctx, c)
	if err != nil {
		return nil, err
	}
	if inv == nil {
		inv = &model.Inventory{}
	}
	if inv.CollectedAt.IsZero() {
		inv.CollectedAt = r.cfg.Now()
	}
	inv.Fingerprint = inv.HardwareFingerprint()
	return inv, nil
}

// reinspect reads a settled machine's inventory again. A failure is not
// the machine's: it shows in bmc_status and last_error, and the read is
// tried again at the next period.
func (r *Reconciler) reinspect(ctx context.Context, m *model.Machine) {
	cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeouts.Inspect)
	inv, err := r.readInventory(cctx, m.BMC)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			r.met.bmcErrors.WithLabelValues("inventory").Inc()
			r.bmcUnhealthy(ctx, m, describeBMCError(m.BMC.Endpoint, err, r.cfg.Timeouts.Inspect)+" while re-reading the inventory", err)
		}
		return
	}
	_ = r.recordInventory(ctx, m, inv) // a stale write requeues the machine, which reads again when due
}

// recordInventory stores a re-read inventory; a hardware fingerprint
// other than the accepted one is recorded as an event (the API shows both).
func (r *Reconciler) recordInventory(ctx context.Context, m *model.Machine, inv *model.Inventory) error {
	_, err := r.commitErr(ctx, m, func(x *model.Machine) {
		x.Status.Inventory = inv
		if x.Status.AcceptedFingerprint == "" {
			x.Status.AcceptedFingerprint = inv.Fingerprint
		}
		setBMCStatus(x, model.BMCStatusOK, inv.CollectedAt)
	}, driftEvents(m, inv)...)
	return err
}

// driftEvents is the inventory_drift event for inv, once per new
// fingerprint that differs from the accepted one.
func driftEvents(m *model.Machine, inv *model.Inventory) []model.Event {
	acc := m.Status.AcceptedFingerprint
	if acc == "" || inv.Fingerprint == acc || (m.Status.Inventory != nil && m.Status.Inventory.Fingerprint == inv.Fingerprint) {
		return nil
	}
	return []model.Event{{Type: model.EventInventoryDrift,
		Message: fmt.Sprintf("hardware changed: fingerprint %s, accepted %s (%s)", inv.Fingerprint, acc, inventoryDiff(m.Status.Inventory, inv)),
		Data:    map[string]string{"fingerprint": inv.Fingerprint, "accepted": acc}}}
}

// inventoryDiff names what changed between two inventories, for the
// drift event.
func inventoryDiff(a, b *model.Inventory) string {
	if a == nil {
		return "no earlier inventory"
	}
	var d []string
	if a.CPUs != b.CPUs || a.CPUCores != b.CPUCores || a.CPUThreads != b.CPUThreads || a.CPUModel != b.CPUModel {
		d = append(d, fmt.Sprintf("CPUs %d/%d cores → %d/%d cores", a.CPUs, a.CPUCores, b.CPUs, b.CPUCores))
	}
	if a.MemoryGiB != b.MemoryGiB {
		d = append(d, fmt.Sprintf("memory %g GiB → %g GiB", a.MemoryGiB, b.MemoryGiB))
	}
	if len(a.Disks) != len(b.Disks) {
		d = append(d, fmt.Sprintf("disks %d → %d", len(a.Disks), len(b.Disks)))
	}
	if len(a.NICs) != len(b.NICs) {
		d = append(d, fmt.Sprintf("NICs %d → %d", len(a.NICs), len(b.NICs)))
	}
	if len(d) == 0 {
		return "disk, NIC or accelerator details"
	}
	return strings.Join(d, ", ")
}

func (r *Reconciler) inspect(ctx context.Context, m *model.Machine, p plan) {
	var inv *model.Inventory
	if !r.bmcStep(ctx, m, "reading the inventory", r.cfg.Timeouts.Inspect, false, func(ctx context.Context) (err error) {
		inv, err = r.readInventory(ctx, m.BMC)
		return err
	}) {
		return
	}
	now := r.cfg.Now()
	macs := m.MACs
	if len(macs) == 0 {
		macs = inventoryMACs(inv)
	}
	why := fmt.Sprintf("inventory read: %d NICs, %d disks, power %s", len(inv.NICs), len(inv.Disks), orDash(inv.PowerState))
	if len(m.MACs) == 0 && len(macs) > 0 {
		why += "; MACs from the inventory: " + strings.Join(macs, ", ")
	}
	apply := func(withMACs bool) func(x *model.Machine) {
		return func(x *model.Machine) {
			x.Status.Inventory = inv
			if x.Status.AcceptedFingerprint == "" {
				x.Status.AcceptedFingerprint = inv.Fingerprint
			}
			if inv.PowerState != "" {
				x.Status.PowerState = inv.PowerState
				x.Status.PowerCheckedAt = now
			}
			if withMACs && len(x.MACs) == 0 {
				// Discovered, not asked for: a status write, so the operator's
				// spec version does not move under a pending update.
				x.MACs = macs
			}
			setPhase(x, p.Phase, p.Step, now)
			x.Status.LastError = ""
		}
	}
	if _, err := r.commitErr(ctx, m, apply(true), phaseEvent(m, p.Phase, p.Step, why)); errors.Is(err, store.ErrMACInUse) {
		// Another machine claims a discovered MAC: keep the inventory and
		// say so; provisioning waits for macs to be set explicitly.
		r.commit(ctx, m, apply(false), phaseEvent(m, p.Phase, p.Step,
			why+"; discovered MACs "+strings.Join(macs, ", ")+" are claimed by another machine, set macs explicitly"))
	}
}

func inventoryMACs(inv *model.Inventory) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range inv.NICs {
		mac, err := model.NormalizeMAC(n.MAC)
		if err != nil || seen[mac] {
			continue
		}
		seen[mac] = true
		out = append(out, mac)
	}
	return out
}
