// Command baremetal-agent is the on-site agent: it keeps the site's machines,
// boot profiles and clusters, serves the REST API the Terraform provider
// talks to, and (with `lab`) runs a virtual lab of Redfish BMCs for tests
// and demos.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `Usage: baremetal-agent <command> [flags]

Commands:
  serve     run the agent (REST API; store in --data-dir)
  lab       run a virtual lab of Redfish BMCs
  version   print the version

Run "baremetal-agent <command> -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "baremetal-agent:", err)
		os.Exit(1)
	}
}

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		return serveCommand(ctx, args[1:], stderr)
	case "lab":
		return labCommand(ctx, args[1:], stdout, stderr)
	case "lab-forward":
		// Run by QEMU for the lab's VMs; not for people.
		return lab.RunForward(ctx, args[1:], os.Stdin, stdout)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "baremetal-agent %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
