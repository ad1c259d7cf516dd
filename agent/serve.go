package main

import (
	"context"
	"io"
	"os"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/agentd"
)

// serveCommand is `baremetal-agent serve`: the agent assembled by agentd
// with the operator's configuration, until ctx ends.
func serveCommand(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := loadConfig(args, os.Getenv, stderr)
	if err != nil {
		return err
	}
	a, err := agentd.New(cfg.Config, agentd.WithLogger(newLogger(cfg, stderr)))
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
