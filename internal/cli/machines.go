package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

func machineFilterFlags(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.filter.Cluster, "cluster", "", "only members of this cluster")
	fs.StringVar(&o.filter.Role, "role", "", "only machines in this role")
	fs.Func("phase", "only machines in this phase", func(s string) error { o.filter.Phase = api.MachinePhase(s); return nil })
	fs.Func("state", "only machines with this desired state", func(s string) error { o.filter.State = api.DesiredState(s); return nil })
}

func eventsFlags(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.follow, "follow", false, "keep printing new events until interrupted or the machine is gone")
	fs.BoolVar(&o.follow, "f", false, "short for --follow")
	fs.IntVar(&o.limit, "limit", 0, "print at most the last N events (0: all)")
	fs.DurationVar(&o.interval, "interval", 2*time.Second, "with --follow, how long to wait at most between two reads")
}

func waitFlags(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.wait, "wait", false, "wait until the machine is provisioned (exit 7 if it fails)")
}

func deleteFlags(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.force, "force", false, "remove at once, without powering the machine off")
	fs.BoolVar(&o.wait, "wait", false, "wait until the machine is gone")
}

func machinesList(ctx context.Context, a *app, _ []string) error {
	ms, err := a.client.ListMachines(ctx, a.o.filter)
	if err != nil {
		return err
	}
	if a.json() {
		return writeJSON(a.stdout, api.MachineList{Items: ms}, false)
	}
	t := newTable(a.stdout, "NAME", "PHASE", "STEP", "POWER", "STATE", "PROFILE", "CLUSTER", "ROLE", "ADDRESSES", "LAST ERROR")
	for _, m := range ms {
		power := m.PowerState
		if m.PowerDrift {
			power += " (drift)"
		}
		t.row(m.Name, string(m.Phase), string(m.Step), power, string(m.State), m.BootProfile, m.Cluster, m.Role,
			strings.Join(m.Addresses, ","), truncate(m.LastError, 60))
	}
	return t.flush()
}

func machinesShow(ctx context.Context, a *app, args []string) error {
	m, err := a.client.GetMachine(ctx, args[0])
	if err != nil {
		return err
	}
	if a.json() {
		return writeJSON(a.stdout, m, false)
	}
	k := newKV(a.stdout)
	k.add("Name", m.Name)
	k.add("Phase", string(m.Phase))
	k.add("Step", string(m.Step))
	k.add("Desired state", string(m.State))
	k.add("Power", m.PowerState)
	if m.PowerDrift {
		k.add("Power drift", "yes: the power differs from what the phase expects")
	}
	k.add("Boot profile", m.BootProfile)
	k.add("Boot mode", string(m.BootMode))
	k.add("Cluster", m.Cluster)
	k.add("Role", m.Role)
	k.add("BMC", m.BMC.Endpoint)
	k.add("MACs", strings.Join(m.MACs, ", "))
	k.add("Addresses", strings.Join(m.Addresses, ", "))
	if m.ProvisionedProfile != "" {
		k.add("Provisioned with", fmt.Sprintf("%s version %d at %s", m.ProvisionedProfile, m.ProvisionedProfileVersion, m.ProvisionedAt.Format(time.RFC3339)))
	}
	if inv := m.Inventory; inv != nil {
		k.add("Hardware", strings.TrimSpace(inv.Manufacturer+" "+inv.Model))
		k.add("Serial", inv.Serial)
		if inv.CPUs > 0 {
			k.add("CPU", fmt.Sprintf("%d x %s, %d cores", inv.CPUs, inv.CPUModel, inv.CPUCores))
		}
		if inv.MemoryGiB > 0 {
			k.add("Memory", strconv.FormatFloat(inv.MemoryGiB, 'f', -1, 64)+" GiB")
		}
	}
	k.add("Version", strconv.FormatUint(m.Version, 10))
	k.add("Last error", m.LastError)
	return k.flush()
}

// machinesEvents prints a machine's events oldest first. With --follow it
// then waits for more: a long poll on the machine wakes it on every change,
// bounded by --interval because some events (a power action that leaves
// the power as it was) do not change the machine.
func machinesEvents(ctx context.Context, a *app, args []string) error {
	name := args[0]
	// The machine's revision before reading events: a change after it
	// wakes the follow loop, so no event recorded in between is missed.
	m, err := a.client.GetMachine(ctx, name)
	if err != nil {
		return err
	}
	evs, next, err := a.allEvents(ctx, name, 0)
	if err != nil {
		return err
	}
	if a.o.limit > 0 && len(evs) > a.o.limit {
		evs = evs[len(evs)-a.o.limit:]
	}
	if !a.o.follow {
		if a.json() {
			if evs == nil {
				evs = []api.Event{}
			}
			return writeJSON(a.stdout, evs, false)
		}
		return a.printEvents(evs, true)
	}
	if err := a.printEvents(evs, true); err != nil {
		return err
	}
	rev := m.Revision
	for {
		m, err := a.client.WatchMachine(ctx, name, rev, a.o.interval)
		if err == nil {
			rev = m.Revision
			evs, next, err = a.allEvents(ctx, name, next)
		}
		switch {
		case errors.Is(err, client.ErrNotFound):
			// Deleted, between the watch and the events or before.
			if !a.json() {
				fmt.Fprintf(a.stderr, "machine %s is gone\n", name)
			}
			return nil
		case ctx.Err() != nil:
			// Interrupted or --timeout: following ends there by design.
			return nil
		case err != nil:
			return err
		}
		if err := a.printEvents(evs, false); err != nil {
			return err
		}
	}
}

// allEvents reads every event after the cursor, page by page.
func (a *app) allEvents(ctx context.Context, name string, after uint64) ([]api.Event, uint64, error) {
	var out []api.Event
	for {
		page, err := a.client.MachineEvents(ctx, name, after, api.MaxEventLimit)
		if err != nil {
			return nil, after, err
		}
		out = append(out, page.Events...)
		if len(page.Events) == 0 || page.Next <= after {
			return out, after, nil
		}
		after = page.Next
	}
}

// printEvents writes events as table rows, or one JSON object per line
// when following, so a script can consume the stream as it comes.
func (a *app) printEvents(evs []api.Event, header bool) error {
	if a.json() {
		for _, e := range evs {
			if err := writeJSON(a.stdout, e, true); err != nil {
				return err
			}
		}
		return nil
	}
	t := &table{tw: newTable(a.stdout).tw}
	if header {
		t.row("SEQ", "TIME", "TYPE", "PHASE", "STEP", "MESSAGE")
	}
	for _, e := range evs {
		t.row(strconv.FormatUint(e.Seq, 10), e.Time.UTC().Format(time.RFC3339), e.Type, string(e.Phase), string(e.Step), e.Message)
	}
	return t.flush()
}

// provision starts a run through the agent's provision action. Without
// reinstall it refuses a machine that is already provisioned or
// provisioning, because a run overwrites the disk: reprovision says so
// explicitly.
func provision(reinstall bool) func(ctx context.Context, a *app, args []string) error {
	return func(ctx context.Context, a *app, args []string) error {
		name := args[0]
		if !reinstall {
			m, err := a.client.GetMachine(ctx, name)
			if err != nil {
				return err
			}
			if m.Phase == api.PhaseProvisioned || m.Phase == api.PhaseProvisioning {
				return &exitError{code: ExitRejected, msg: fmt.Sprintf(
					"machine %s is %s already; use reprovision to install it again (its disk is overwritten)", name, m.Phase)}
			}
		}
		m, err := a.client.MachineAction(ctx, name, api.ActionProvision)
		if err != nil {
			return err
		}
		if !a.o.wait {
			return a.actionDone(m, "provisioning started")
		}
		return a.waitProvisioned(ctx, m)
	}
}

// waitProvisioned waits for the run the action started to end. The agent
// moves the machine to provisioning before it answers the action, so the
// next provisioned or failed phase is this run's outcome.
func (a *app) waitProvisioned(ctx context.Context, started *api.Machine) error {
	m, err := a.client.WaitMachine(ctx, started.Name, func(m *api.Machine) (bool, error) {
		return m.Phase == api.PhaseProvisioned || m.Phase == api.PhaseFailed, nil
	})
	if err != nil {
		return err
	}
	if err := a.actionDone(m, "machine "+string(m.Phase)); err != nil {
		return err
	}
	if m.Phase == api.PhaseFailed {
		return &exitError{code: ExitFailed, msg: fmt.Sprintf("machine %s failed: %s", m.Name, safe(m.LastError))}
	}
	return nil
}

// actionDone reports the machine after an action: a line for people, the
// machine for scripts.
func (a *app) actionDone(m *api.Machine, what string) error {
	if a.json() {
		return writeJSON(a.stdout, m, false)
	}
	line := fmt.Sprintf("%s: %s (phase %s", m.Name, what, m.Phase)
	if m.Step != "" {
		line += ", step " + string(m.Step)
	}
	if m.PowerState != "" {
		line += ", power " + m.PowerState
	}
	_, err := fmt.Fprintln(a.stdout, safe(line)+")")
	return err
}

// powerAction runs reboot and power on/off/cycle. The agent carries out
// each power action synchronously (it answers once the BMC did it), so a
// cycle is an off that has completed followed by an on.
func powerAction(verb string) func(ctx context.Context, a *app, args []string) error {
	return func(ctx context.Context, a *app, args []string) error {
		name := args[0]
		var (
			actions []api.Action
			what    string
		)
		switch verb {
		case "reboot":
			actions, what = []api.Action{api.ActionReset}, "reset"
		case "on":
			actions, what = []api.Action{api.ActionPowerOn}, "powered on"
		case "off":
			actions, what = []api.Action{api.ActionPowerOff}, "powered off"
		case "cycle":
			actions, what = []api.Action{api.ActionPowerOff, api.ActionPowerOn}, "power cycled"
		}
		var m *api.Machine
		for _, act := range actions {
			var err error
			if m, err = a.client.MachineAction(ctx, name, act); err != nil {
				return err
			}
		}
		return a.actionDone(m, what)
	}
}

// deleteMachine asks the agent to delete a machine. Without --force the
// agent powers it off first and removes it afterwards; --force removes the
// record at once, which is how an operator frees a machine whose BMC is
// gone or whose run is stuck.
func deleteMachine(ctx context.Context, a *app, args []string) error {
	name := args[0]
	if err := a.client.DeleteMachine(ctx, name, a.o.force); err != nil {
		return err
	}
	what := "deletion requested"
	if a.o.force {
		what = "deleted (forced)"
	}
	if a.o.wait {
		_, err := a.client.WaitMachine(ctx, name, func(*api.Machine) (bool, error) { return false, nil })
		if !errors.Is(err, client.ErrNotFound) {
			return err
		}
		what = "deleted"
	}
	if a.json() {
		return writeJSON(a.stdout, map[string]any{"name": name, "deleted": what == "deleted" || a.o.force, "force": a.o.force}, false)
	}
	_, err := fmt.Fprintf(a.stdout, "%s: %s\n", safe(name), what)
	return err
}
