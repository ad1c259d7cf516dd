// Command provbench measures provisioning at scale with the real agent
// process (`baremetal-agent serve`) and the memory lab as its own process
// (`baremetal-agent lab --backend memory`), whose simulated machines
// PXE-boot from the agent, and rewrites its sections of BENCHMARKS.md:
//
//   - provisioning: N machines from registered to provisioned through the
//     API (wall time, client-side API latency, the agent's peak RSS, CPU
//     seconds and store size, and the cost per machine);
//   - bootstorm: a fleet registered powered off, then switched on at once;
//   - redfish: the same with slow BMCs (latency added by the lab) at two
//     BMC concurrency limits;
//   - terraform: `terraform apply` of N baremetal_machine resources against
//     N terraform_data resources.
//
// It runs the binaries `make build` leaves in bin/.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/bench/internal/report"
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

type options struct {
	quick        bool
	out          string
	agentBin     string
	providerDir  string
	terraformBin string
	sizes        []int
	provLimit    int
	bmcMax       int
	storm        int
	redfishN     int
	redfishLat   time.Duration
	redfishLims  []int
	tfResources  int
	reps         int
	timeout      time.Duration
	note         string
}

// extraAgentArgs are appended to every agent's command line (-agent-args).
var extraAgentArgs []string

// keepDirs leaves the temp directories behind (-keep).
var keepDirs bool

// removeAll removes a temp directory unless -keep was given.
func removeAll(dir string) {
	if keepDirs {
		logf("kept %s", dir)
		return
	}
	_ = os.RemoveAll(dir)
}

var sections = []string{"provisioning", "bootstorm", "redfish", "terraform"}

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		logf("%s: stopping the agents and labs", s)
		stopAllFleets()
		os.Exit(130)
	}()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "provbench:", err)
		os.Exit(1)
	}
}

func run() error {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "smaller fleets and one repetition (about 2 minutes)")
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "file whose provbench sections are rewritten")
	only := flag.String("only", "", "comma-separated sections to run: "+strings.Join(sections, ", ")+" (default all)")
	flag.StringVar(&o.agentBin, "agent", "bin/baremetal-agent", "the agent binary (make build)")
	flag.StringVar(&o.providerDir, "provider-dir", "bin", "directory holding terraform-provider-baremetal (make build), used through dev_overrides")
	flag.StringVar(&o.terraformBin, "terraform", "terraform", "the terraform CLI")
	sizes := flag.String("sizes", "", "fleet sizes of the provisioning section (default 100,1000,5000, or 100,1000 with -quick)")
	flag.IntVar(&o.provLimit, "provisioning-limit", 100, "agent --provisioning-limit of the provisioning and terraform sections")
	flag.IntVar(&o.bmcMax, "bmc-max-concurrent", 100, "agent --bmc-max-concurrent of the provisioning and terraform sections")
	flag.IntVar(&o.storm, "storm", 0, "machines switched on at once in the bootstorm section (default 1000, or 500 with -quick)")
	flag.IntVar(&o.redfishN, "redfish-machines", 0, "machines of the redfish section (default 1000, or 100 with -quick)")
	flag.DurationVar(&o.redfishLat, "redfish-latency", 50*time.Millisecond, "latency the lab adds to every Redfish response in the redfish section")
	lims := flag.String("redfish-limits", "20,100", "BMC concurrency limits (--bmc-max-concurrent and --provisioning-limit) of the redfish section")
	flag.IntVar(&o.tfResources, "tf-resources", 0, "resources per terraform apply (default 100, or 50 with -quick)")
	flag.IntVar(&o.reps, "reps", 0, "repetitions of the storm and terraform runs (default 3, or 1 with -quick); the redfish runs take at most 2")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "give up on one fleet after this long")
	agentArgs := flag.String("agent-args", "", "extra `baremetal-agent serve` flags, space-separated, for experiments (e.g. '--power-poll-interval 0')")
	flag.BoolVar(&keepDirs, "keep", false, "keep the temp directories (agent and lab logs, Terraform workspaces) for a post-mortem")
	flag.StringVar(&o.note, "note", "", "a remark printed in the sections' headers (e.g. why the numbers are preliminary)")
	flag.Parse()

	extraAgentArgs = strings.Fields(*agentArgs)
	var err error
	def := map[bool]string{false: "100,1000,5000", true: "100,1000"}[o.quick]
	if *sizes == "" {
		*sizes = def
	}
	if o.sizes, err = ints("-sizes", *sizes); err != nil {
		return err
	}
	if o.redfishLims, err = ints("-redfish-limits", *lims); err != nil {
		return err
	}
	if o.redfishN <= 0 {
		o.redfishN = map[bool]int{false: 1000, true: 100}[o.quick]
	}
	if o.storm <= 0 {
		o.storm = map[bool]int{false: 1000, true: 500}[o.quick]
	}
	if o.tfResources <= 0 {
		o.tfResources = map[bool]int{false: 100, true: 50}[o.quick]
	}
	if o.reps <= 0 {
		o.reps = map[bool]int{false: 3, true: 1}[o.quick]
	}
	run := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !contains(sections, s) {
			return fmt.Errorf("-only %q: want some of %s", s, strings.Join(sections, ", "))
		}
		run[s] = true
	}
	if len(run) == 0 {
		for _, s := range sections {
			run[s] = true
		}
	}
	if _, err := os.Stat(o.agentBin); err != nil {
		return fmt.Errorf("agent binary: %w (run make build)", err)
	}

	header := sectionHeader(o.note)
	began := time.Now()
	for _, name := range sections {
		if !run[name] {
			continue
		}
		t0 := time.Now()
		var body string
		switch name {
		case "provisioning":
			body, err = benchProvisioning(o)
		case "bootstorm":
			body, err = benchStorm(o)
		case "redfish":
			body, err = benchRedfish(o)
		case "terraform":
			body, err = benchTerraform(o)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		body += fmt.Sprintf("\nThis section took %s to measure.\n", time.Since(t0).Round(time.Second))
		if err := report.WriteSection(o.out, name, header+body); err != nil {
			return err
		}
		logf("wrote the %s section of %s", name, o.out)
	}
	logf("done in %s", time.Since(began).Round(time.Second))
	return nil
}

func ints(flagName, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%s %q: want positive integers separated by commas", flagName, s)
		}
		out = append(out, n)
	}
	return out, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func sectionHeader(note string) string {
	return report.Header("./bench/cmd/provbench", note)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func secs(d time.Duration) float64 { return d.Seconds() }

// withTimeout bounds one fleet's run.
func withTimeout(o options) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), o.timeout)
}
