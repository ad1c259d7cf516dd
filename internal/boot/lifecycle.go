package boot

import (
	"context"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// Lifecycle is how the boot edge reports what it saw to the reconciler,
// which owns every decision about a machine's phase.
type Lifecycle interface {
	// Signal records a boot-chain observation for a machine (machine "" for
	// an unknown MAC). It must not block for long: the boot edge calls it
	// while a PXE client waits.
	Signal(ctx context.Context, machine string, sig model.Signal, data map[string]string)
	// Callback consumes a run's one-time token. It returns an error wrapping
	// model.ErrTokenRejected for a wrong, replayed or foreign token, and for
	// a machine that does not exist: the boot edge is unauthenticated, and
	// must not tell which machine names exist.
	Callback(ctx context.Context, machine, token string, report model.CallbackReport) error
	// DeployDisks answers a deploy ramdisk's disks with what to write,
	// or an error wrapping model.ErrTokenRejected or model.ErrDeployRefused.
	DeployDisks(ctx context.Context, machine, token string, disks []model.SeenDisk) (model.DeployTarget, error)
	// DeployProgress records how many bytes a deploy ramdisk has written.
	DeployProgress(ctx context.Context, machine, token string, written int64, elapsed time.Duration) error
}
