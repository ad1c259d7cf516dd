// Package store persists the agent's machines, boot profiles, clusters and
// events behind one interface. Bolt (bbolt) is the embedded default.
//
// Implementations seal secrets (BMC passwords, run tokens, secret params,
// generated secrets) at rest; callers see plaintext. Writes are transactional read-modify-write: the mutate
// function runs inside the write transaction on a fresh copy, so concurrent
// writers never lose each other's changes.
package store

import (
	"context"
	"errors"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

var (
	// ErrNotFound: no object by that name.
	ErrNotFound = errors.New("not found")
	// ErrExists: an object by that name exists already.
	ErrExists = errors.New("already exists")
	// ErrConflict: the caller's version is stale. Mutate functions return it
	// (wrapped is fine) to abort a write.
	ErrConflict = errors.New("version conflict")
	// ErrMACInUse: another machine claims one of the MACs.
	ErrMACInUse = errors.New("mac address in use by another machine")
)

// Kind names an object collection in Change notifications.
type Kind string

const (
	KindMachine Kind = "machine"
	KindProfile Kind = "profile"
	KindCluster Kind = "cluster"
	KindEvent   Kind = "event"
	// KindTemplate is a snippet (model.Template); Revision is its Version.
	KindTemplate Kind = "template"
)

// Change tells subscribers that an object was written or deleted.
type Change struct {
	Kind     Kind
	Name     string // object name; for KindEvent the machine name
	Revision uint64 // the object's Revision after the write (machines, clusters), a profile's Version, or the event Seq
	Deleted  bool
}

// Store is the agent's persistence.
//
// Version semantics: Create* sets Version=1 and Revision=1. Update* runs
// mutate on a copy of the stored object; if mutate returns an error nothing
// is written and the error is returned as is. After mutate, Revision is
// always bumped; Version is bumped only when the mutate function says so by
// returning specChanged=true (spec writes), so reconciler status writes do
// not make an operator's version stale.
//
// Concurrent writes may share one transaction (group commit). When a write
// in it fails midway, the transaction is rolled back and the others run
// again, so a mutate or check function may be called more than once for
// one call; only what its last call did is written. They must therefore act
// on their argument alone (plain assignments to captured variables are
// fine, appending to or counting in them is not).
type Store interface {
	CreateMachine(ctx context.Context, m *model.Machine) (*model.Machine, error)
	GetMachine(ctx context.Context, name string) (*model.Machine, error)
	// MachineByMAC finds the machine that lists mac (normalised form).
	MachineByMAC(ctx context.Context, mac string) (*model.Machine, error)
	ListMachines(ctx context.Context) ([]*model.Machine, error)
	UpdateMachine(ctx context.Context, name string, mutate func(m *model.Machine) (specChanged bool, err error)) (*model.Machine, error)
	// UpdateMachineRecording is UpdateMachine whose mutate also returns
	// events for the machine, appended in the same transaction: a crash
	// never keeps a status change without the events that explain it. The
	// store sets each event's Machine, Seq and (when zero) Time.
	UpdateMachineRecording(ctx context.Context, name string, mutate func(m *model.Machine) (specChanged bool, events []model.Event, err error)) (*model.Machine, []model.Event, error)
	// DeleteMachine removes the machine and its events. check, when not nil,
	// runs in the transaction on the stored object and may veto with an error.
	DeleteMachine(ctx context.Context, name string, check func(m *model.Machine) error) error

	CreateProfile(ctx context.Context, p *model.BootProfile) (*model.BootProfile, error)
	GetProfile(ctx context.Context, name string) (*model.BootProfile, error)
	ListProfiles(ctx context.Context) ([]*model.BootProfile, error)
	// UpdateProfile always bumps Version (a profile has no status).
	UpdateProfile(ctx context.Context, name string, mutate func(p *model.BootProfile) error) (*model.BootProfile, error)
	DeleteProfile(ctx context.Context, name string, check func(p *model.BootProfile) error) error

	CreateTemplate(ctx context.Context, t *model.Template) (*model.Template, error)
	GetTemplate(ctx context.Context, name string) (*model.Template, error)
	ListTemplates(ctx context.Context) ([]*model.Template, error)
	// UpdateTemplate always bumps Version.
	UpdateTemplate(ctx context.Context, name string, mutate func(t *model.Template) error) (*model.Template, error)
	DeleteTemplate(ctx context.Context, name string, check func(t *model.Template) error) error

	// GetSite returns the site's params and secret params (the zero Site
	// before they were ever written).
	GetSite(ctx context.Context) (*model.Site, error)
	// UpdateSite always bumps Version.
	UpdateSite(ctx context.Context, mutate func(site *model.Site) error) (*model.Site, error)

	CreateCluster(ctx context.Context, c *model.Cluster) (*model.Cluster, error)
	GetCluster(ctx context.Context, name string) (*model.Cluster, error)
	ListClusters(ctx context.Context) ([]*model.Cluster, error)
	UpdateCluster(ctx context.Context, name string, mutate func(c *model.Cluster) (specChanged bool, err error)) (*model.Cluster, error)
	DeleteCluster(ctx context.Context, name string, check func(c *model.Cluster) error) error

	// AppendEvent assigns Seq (global, strictly increasing) and Time when zero.
	// Events of one machine are capped (oldest dropped) so a flood cannot
	// grow the file without bound. An event for a machine the store does not
	// hold fails with ErrNotFound (deleting a machine drops its events).
	AppendEvent(ctx context.Context, e model.Event) (model.Event, error)
	// ListEvents returns events with Seq > after, oldest first, at most limit
	// (limit <= 0 means a default of 1000). machine "" lists agent-wide events
	// (those recorded with Machine ""), not all events. An unknown machine
	// gives ErrNotFound.
	ListEvents(ctx context.Context, machine string, after uint64, limit int) ([]model.Event, error)

	// Subscribe delivers a Change after every committed write. The channel is
	// buffered; a slow subscriber loses changes rather than blocking writers,
	// and is told so by a Change with Kind "" (resync: list everything).
	// cancel stops delivery and closes the channel.
	Subscribe() (changes <-chan Change, cancel func())

	Close() error
}
