package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

// defaultLeaseRenewEvery paces renewals until the agent says how long its
// leases last: a third of an agent's default.
const defaultLeaseRenewEvery = api.DefaultLeaseDuration / 3

// leaseKeeper renews this run's lease on one machine while the provider
// waits on it. Without renewals the lease would lapse a lease duration
// after the run's last write, and during a provisioning wait of tens of minutes
// another configuration could write the machine and interleave power
// actions with this run's.
type leaseKeeper struct {
	client *client.Client
	name   string
	stop   context.CancelFunc
	done   chan struct{}
	// lost is the refusal that ended the renewals when another holder took
	// the lease; it is written before done is closed.
	lost error
}

// keepLease renews the lease on name every third of its duration until
// end is called. The write the wait follows took the lease, so when the
// agent has told its lease duration the first renewal comes a third of it
// later; otherwise the first renewal, at once, is how the duration is
// learnt. The returned context is the wait's: it ends early if another
// holder takes the lease, and end then says who.
func keepLease(ctx context.Context, c *client.Client, name string) (context.Context, *leaseKeeper) {
	waitCtx, cancel := context.WithCancel(ctx)
	k := &leaseKeeper{client: c, name: name, stop: cancel, done: make(chan struct{})}
	go k.run(waitCtx, cancel)
	return waitCtx, k
}

func (k *leaseKeeper) run(ctx context.Context, cancelWait context.CancelFunc) {
	defer close(k.done)
	every, wait := defaultLeaseRenewEvery, time.Duration(0)
	if d := k.client.LeaseDuration(); d > 0 {
		every, wait = d/3, d/3
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lease, err := k.client.RenewLease(ctx, k.name)
		switch {
		case err == nil && lease == nil:
			return // the provider runs without a lease holder
		case err == nil:
			if d := time.Duration(lease.DurationSeconds * float64(time.Second)); d > 0 {
				every = d / 3
			}
			tflog.Debug(ctx, "renewed the machine's lease", map[string]any{"machine": k.name, "expires_at": lease.ExpiresAt})
		case ctx.Err() != nil:
			return
		case errors.Is(err, client.ErrNotFound):
			return // the machine is gone; the wait sees that itself
		case client.LeaseHeld(err):
			k.lost = err
			cancelWait()
			return
		default:
			// The client already retried; the lease outlasts a few misses.
			tflog.Warn(ctx, "renewing the machine's lease failed; trying again", map[string]any{"machine": k.name, "error": err.Error()})
		}
		t.Reset(every)
	}
}

// end stops the renewals and returns why the wait was cut short, if another
// holder took the lease.
func (k *leaseKeeper) end() error {
	k.stop()
	<-k.done
	if k.lost != nil {
		return fmt.Errorf("another writer took the lease on machine %q while this run waited for it: %w", k.name, k.lost)
	}
	return nil
}

// releaseLease frees a machine for other writers as soon as this run is
// done with it. Failing to is harmless, since the lease runs out on its
// own, so it only warns.
func releaseLease(ctx context.Context, c *client.Client, name string) {
	if err := c.ReleaseLease(ctx, name); err != nil {
		tflog.Warn(ctx, "releasing the machine's lease failed; it runs out on its own", map[string]any{"machine": name, "error": err.Error()})
	}
}
