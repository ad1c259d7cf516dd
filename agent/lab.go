package main

import (
	"context"
	"io"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/lab"
)

func labCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return lab.RunCommand(ctx, args, stdout, stderr)
}
