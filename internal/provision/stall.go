package provision

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// A stall is a run in a waiting step with no new boot step for the boot
// stall warning period. The run still fails only at its step's timeout;
// the stall note gets the operator looking at the right place long before
// that: last_error names the last step seen, its age and the step that
// did not come. These functions are part of the pure decision core.

// bootPlan is what the run's profile makes the machine fetch from this
// agent, so a stall can name the step that did not come. Anything fetched
// from another server (an http(s) kernel or initrd URL) is invisible here.
type bootPlan struct {
	Kernel    bool     // the kernel is served by this agent
	Initrds   []string // asset paths of the initrds this agent serves
	Templates bool     // the profile has templates for the installer to fetch
}

// planOf reads p's boot plan the way the boot edge signals it: asset
// paths without their leading "/".
func planOf(p *model.BootProfile) bootPlan {
	if p.Image != nil {
		// The deploy ramdisk (boot.imagePlan) fetches its config drive's
		// user-data as a template.
		return bootPlan{Kernel: true, Initrds: []string{"deploy-image/initrd.img"}, Templates: true}
	}
	b := bootPlan{Kernel: servedHere(p.Kernel), Templates: len(p.Templates) > 0}
	for _, ird := range p.Initrds {
		if servedHere(ird) {
			b.Initrds = append(b.Initrds, strings.TrimPrefix(ird, "/"))
		}
	}
	return b
}

// cleanPlan is a clean run's: the deploy ramdisk, whatever the profile
// is now, and no config drive to fetch.
var cleanPlan = bootPlan{Kernel: true, Initrds: []string{"deploy-image/initrd.img"}}

// unknownPlan stands in when the run's profile is gone: the usual local
// kernel and templates, so the messages still name the next likely step.
var unknownPlan = bootPlan{Kernel: true, Templates: true}

func servedHere(asset string) bool {
	return asset != "" && !strings.HasPrefix(asset, "http://") && !strings.HasPrefix(asset, "https://")
}

// stallSince is when the run's boot last made progress: its latest boot
// step, else its power-on; zero when this run has not powered on yet.
func stallSince(r *model.Run) time.Time {
	if s, ok := r.LastStep(); ok {
		return s.At
	}
	return r.PoweredOnAt
}

// stallPlan decides about the stall note of a run in a waiting step: it is
// written (with the boot_stalled event) once no step came for the warning
// period, its age is refreshed every period while the stall lasts, and it
// is cleared once the boot moves on. With op opWait, wake is when the note
// next falls due (zero: never).
func stallPlan(v view) (p plan, wake time.Time) {
	r := v.M.Run
	since, noted := stallSince(r), r.StallNotedAt
	switch {
	case !noted.IsZero() && since.After(noted):
		return plan{Op: opStall, StallOf: since}, time.Time{}
	case v.StallWarning <= 0 || since.IsZero():
		return plan{Op: opWait}, time.Time{}
	}
	due := since.Add(v.StallWarning)
	if !noted.IsZero() {
		due = noted.Add(v.StallWarning)
	}
	if v.Now.Before(due) {
		return plan{Op: opWait}, due
	}
	return plan{Op: opStall, Reason: describeStall(r, v.Boot, v.Now), StallOf: since, NewStall: noted.IsZero()}, time.Time{}
}

// describeStall says where the run's boot is: the last step seen, its age,
// the step that did not come and what to check. It is "" before the run
// powered the machine on.
func describeStall(r *model.Run, b bootPlan, now time.Time) string {
	last, ok := r.LastStep()
	if !ok {
		if r.PoweredOnAt.IsZero() {
			return ""
		}
		return fmt.Sprintf("no boot script requested since power-on %s ago: check the PXE/DHCP setup and the boot order", age(now.Sub(r.PoweredOnAt)))
	}
	ago := age(now.Sub(last.At))
	next := "no template fetched since"
	if !b.Templates {
		next = "no callback since"
	}
	remote := " (the kernel comes from another server, which the agent does not see)"
	templates := stepNames(r, model.SignalTemplatesFetched)
	initrds := stepNames(r, model.SignalInitrdFetched)
	kernel := hasStep(r, model.SignalKernelFetched)
	switch {
	case len(templates) > 0:
		return fmt.Sprintf("%s fetched %s ago, no callback since: the installer may still be running, or it is stuck; check the console",
			named("template", templates), ago)
	case kernel || len(initrds) > 0:
		served := servedPhrase(kernel, initrds, b)
		if missing := missingInitrds(b, initrds); len(missing) > 0 {
			return fmt.Sprintf("%s served %s ago, no %s fetched since: iPXE did not load it; check the console and the profile's initrd paths",
				served, ago, named("initrd", missing))
		}
		return fmt.Sprintf("%s served %s ago, %s: the kernel may not have started; check the console", served, ago, next)
	case hasStep(r, model.SignalScriptServed):
		switch {
		case b.Kernel:
			return fmt.Sprintf("boot script served %s ago, no kernel fetched since: iPXE did not load it; check the console and the profile's kernel path", ago)
		case len(b.Initrds) > 0:
			return fmt.Sprintf("boot script served %s ago, no initrd fetched since%s: check the console", ago, remote)
		}
		return fmt.Sprintf("boot script served %s ago, %s%s: the kernel may not have started; check the console", ago, next, remote)
	case slices.Contains(stepNames(r, model.SignalPXERequested), ""):
		return fmt.Sprintf("boot script requested %s ago, none served: rendering it failed (see the render_failed event); check the boot profile", ago)
	}
	return fmt.Sprintf("PXE request answered by ProxyDHCP %s ago, no boot script requested since: check that the machine loads the iPXE binary over TFTP and that iPXE reaches the boot URL", ago)
}

func hasStep(r *model.Run, sig model.Signal) bool {
	return slices.ContainsFunc(r.Steps, func(s model.BootStep) bool { return s.Signal == sig })
}

func stepNames(r *model.Run, sig model.Signal) []string {
	var out []string
	for _, s := range r.Steps {
		if s.Signal == sig {
			out = append(out, s.Name)
		}
	}
	return out
}

func missingInitrds(b bootPlan, seen []string) []string {
	var out []string
	for _, ird := range b.Initrds {
		if !slices.Contains(seen, ird) {
			out = append(out, ird)
		}
	}
	return out
}

// servedPhrase names the assets served: "kernel and initrd" when the
// profile has that one initrd, the initrds by name when it has several.
func servedPhrase(kernel bool, initrds []string, b bootPlan) string {
	var parts []string
	if kernel {
		parts = append(parts, "kernel")
	}
	switch {
	case len(initrds) == 1 && len(b.Initrds) <= 1:
		parts = append(parts, "initrd")
	case len(initrds) > 0:
		parts = append(parts, named("initrd", initrds))
	}
	return strings.Join(parts, " and ")
}

// named is "initrd a" or "initrds a, b".
func named(what string, names []string) string {
	if len(names) == 1 {
		return what + " " + names[0]
	}
	return what + "s " + strings.Join(names, ", ")
}

// age is a duration as an operator reads it: 300ms, 45s, 5m, 1h5m.
func age(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
}
