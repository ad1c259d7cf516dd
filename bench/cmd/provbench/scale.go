package main

import (
	"context"
	"fmt"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// provisionResult is one run of N machines from registered to provisioned.
type provisionResult struct {
	machines           int
	wall               time.Duration
	cpu                time.Duration // agent CPU during the run
	use                usage         // at the end of the run
	creates, gets, lst []float64     // ms
	apiErrors          int
	wait               phaseWait
}

// runProvision registers every lab machine of f with state "provisioned"
// (apiWorkers at a time) and waits until each is provisioned or failed:
// the wall time runs from the first create to the last machine's arrival.
func runProvision(ctx context.Context, f *fleet) (provisionResult, error) {
	r := provisionResult{machines: len(f.inventory)}
	before, err := f.usage()
	if err != nil {
		return r, err
	}
	var creates, gets, lists latencies
	names := make([]string, len(f.inventory))
	for i, e := range f.inventory {
		names[i] = e.Name
	}
	start := time.Now()
	parallel(len(f.inventory), apiWorkers, func(i int) {
		t := time.Now()
		_, err := f.client.CreateMachine(ctx, machineRequest(f.inventory[i], "provisioned"))
		creates.observe(t, err)
		if err != nil {
			logf("create %s: %v", f.inventory[i].Name, err)
		}
	})
	if r.wait, err = f.waitConverged(ctx, names, 0, &gets, &lists); err != nil {
		return r, err
	}
	r.wall = until(start, r.wait.last)
	if r.use, err = f.usage(); err != nil {
		return r, err
	}
	r.cpu = r.use.cpu - before.cpu
	var e1, e2, e3 int
	r.creates, e1 = creates.snapshot()
	r.gets, e2 = gets.snapshot()
	r.lst, e3 = lists.snapshot()
	r.apiErrors = e1 + e2 + e3
	return r, nil
}

// twoPhaseResult is a fleet provisioned once, then re-provisioned all at
// once by one change of its boot profile.
type twoPhaseResult struct {
	machines  int
	register  time.Duration // creates until every machine is provisioned
	powerOn   time.Duration // from the profile update until every machine is re-provisioned
	cpu       time.Duration // agent CPU over both phases
	use       usage
	apiErrors int
	off, wait phaseWait // first provisioning, re-provisioning
}

// runTwoPhase provisions every machine (the register phase), then changes
// the boot profile they share with one API call: every machine starts a
// new run at the same moment — power cycle into PXE, boot script, kernel,
// installer callback — bounded only by the agent's provisioning limit and
// BMC concurrency. With a limit as large as the fleet it is a boot storm
// (all machines PXE-boot from the agent together, as after a rollout or a
// power outage); with slow BMCs it measures how the agent's BMC
// concurrency bounds the time to power-cycle a fleet.
func runTwoPhase(ctx context.Context, f *fleet) (twoPhaseResult, error) {
	r := twoPhaseResult{machines: len(f.inventory)}
	before, err := f.usage()
	if err != nil {
		return r, err
	}
	var calls, gets, lists latencies
	names := make([]string, len(f.inventory))
	for i, e := range f.inventory {
		names[i] = e.Name
	}
	start := time.Now()
	parallel(len(f.inventory), apiWorkers, func(i int) {
		t := time.Now()
		_, err := f.client.CreateMachine(ctx, machineRequest(f.inventory[i], "provisioned"))
		calls.observe(t, err)
		if err != nil {
			logf("create %s: %v", f.inventory[i].Name, err)
		}
	})
	if r.off, err = f.waitConverged(ctx, names, 0, &gets, &lists); err != nil {
		return r, err
	}
	r.register = until(start, r.off.last)

	prof, err := f.client.GetBootProfile(ctx, profileName)
	if err != nil {
		return r, err
	}
	start = time.Now()
	updated, err := f.client.UpdateBootProfile(ctx, profileName, api.BootProfileRequest{
		Name: profileName, Kernel: prof.Kernel, Initrds: prof.Initrds, Templates: prof.Templates,
		Cmdline: prof.Cmdline + " storm=1",
	})
	if err != nil {
		return r, fmt.Errorf("updating the boot profile: %w", err)
	}
	if r.wait, err = f.waitConverged(ctx, names, updated.Version, &gets, &lists); err != nil {
		return r, err
	}
	r.powerOn = until(start, r.wait.last)
	if r.use, err = f.usage(); err != nil {
		return r, err
	}
	r.cpu = r.use.cpu - before.cpu
	_, e1 := calls.snapshot()
	_, e2 := gets.snapshot()
	_, e3 := lists.snapshot()
	r.apiErrors = e1 + e2 + e3
	return r, nil
}

// until is the time from start to the last machine's arrival as the agent
// recorded it; when no machine arrived (all failed) it is the time until
// the benchmark saw the end.
func until(start, last time.Time) time.Duration {
	if last.IsZero() || last.Before(start) {
		return time.Since(start)
	}
	return last.Sub(start)
}

// failures describes the machines that ended failed (or "0").
func failures(w phaseWait, n int) string {
	if w.failed == 0 {
		return fmt.Sprintf("0/%d", n)
	}
	return fmt.Sprintf("%d/%d (e.g. %s)", w.failed, n, w.firstError)
}
