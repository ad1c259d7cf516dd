package boot

import (
	"context"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// Reader is the part of the store the boot edge reads. The boot edge
// answers unauthenticated requests, so it is handed no way to change a
// machine, profile or cluster: what it sees goes to the Lifecycle, and its
// one write, a generated secret, goes through GenerateSecret.
type Reader interface {
	GetMachine(ctx context.Context, name string) (*model.Machine, error)
	MachineByMAC(ctx context.Context, mac string) (*model.Machine, error)
	GetProfile(ctx context.Context, name string) (*model.BootProfile, error)
	GetCluster(ctx context.Context, name string) (*model.Cluster, error)
	GetSite(ctx context.Context) (*model.Site, error)
	ListTemplates(ctx context.Context) ([]*model.Template, error)
}

// GenerateSecret returns machine's generated secret name, making it the
// first time a template fetched with the run's live token uses it.
type GenerateSecret func(ctx context.Context, machine, name string) (string, error)

// StoreSecrets is GenerateSecret on st (store.EnsureGeneratedSecret).
func StoreSecrets(st store.Store) GenerateSecret {
	return func(ctx context.Context, machine, name string) (string, error) {
		v, _, err := store.EnsureGeneratedSecret(ctx, st, machine, name)
		return v, err
	}
}
