// Command baremetalctl is the operator's command line for an agent's
// day-2 work; see internal/cli and `baremetalctl help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
