package main

import (
	"context"
	"fmt"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
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
	if r.wait, err = f.waitPhase(ctx, names, "provisioned", &gets, &lists); err != nil {
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

// twoPhaseResult is a fleet registered powered off, then switched on.
type twoPhaseResult struct {
	machines  int
	register  time.Duration // creates with state "off" until every machine is off
	updates   time.Duration // the PUTs that set state "provisioned", all of them
	powerOn   time.Duration // from the first PUT until every machine is provisioned
	cpu       time.Duration // agent CPU over both phases
	use       usage
	apiErrors int
	off, wait phaseWait
}

// runTwoPhase registers every machine with state "off" and waits until all
// are off (the agent inspects each through its BMC and powers it off), then
// sets state "provisioned" on all of them as fast as the API takes it: with
// a provisioning limit as large as the fleet, every machine powers on at
// once and PXE-boots from the agent together — a boot storm after a power
// outage. With slow BMCs and a small limit it measures how the agent's
// BMC concurrency bounds the time to power a fleet on.
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
		_, err := f.client.CreateMachine(ctx, machineRequest(f.inventory[i], "off"))
		calls.observe(t, err)
		if err != nil {
			logf("create %s: %v", f.inventory[i].Name, err)
		}
	})
	if r.off, err = f.waitPhase(ctx, names, "off", &gets, &lists); err != nil {
		return r, err
	}
	r.register = until(start, r.off.last)

	start = time.Now()
	parallel(len(f.inventory), apiWorkers, func(i int) {
		t := time.Now()
		_, err := f.client.UpdateMachine(ctx, f.inventory[i].Name, updateRequest(f.inventory[i]))
		calls.observe(t, err)
		if err != nil {
			logf("update %s: %v", f.inventory[i].Name, err)
		}
	})
	r.updates = time.Since(start)
	if r.wait, err = f.waitPhase(ctx, names, "provisioned", &gets, &lists); err != nil {
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

// updateRequest switches a registered machine to "provisioned"; the empty
// password keeps the stored one.
func updateRequest(e lab.InventoryEntry) api.MachineRequest {
	req := machineRequest(e, "provisioned")
	req.BMC.Password = ""
	return req
}

// failures describes the machines that ended failed (or "0").
func failures(w phaseWait, n int) string {
	if w.failed == 0 {
		return fmt.Sprintf("0/%d", n)
	}
	return fmt.Sprintf("%d/%d (e.g. %s)", w.failed, n, w.firstError)
}
