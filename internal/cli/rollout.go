package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/client"
)

func rolloutFlags(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.watch, "watch", false, "keep showing progress until the rollout is done or failed")
	fs.BoolVar(&o.watch, "w", false, "short for --watch")
	fs.DurationVar(&o.interval, "interval", 2*time.Second, "with --watch, how often to refresh at most")
}

// rollout is the state of a cluster's or a profile's rollout.
type rollout struct {
	Kind    string `json:"kind"` // cluster or boot_profile
	Name    string `json:"name"`
	Phase   string `json:"phase"` // converging, ready, failed (clusters: the cluster's own phase)
	Message string `json:"message,omitempty"`
	// Done: nothing left to do; Failed: a member failed, so the rollout
	// stopped. Neither: still converging.
	Done    bool            `json:"done"`
	Failed  bool            `json:"failed"`
	Ready   int             `json:"ready"`
	Total   int             `json:"total"`
	Members []rolloutMember `json:"members"`
}

type rolloutMember struct {
	Machine   string `json:"machine"`
	Role      string `json:"role,omitempty"`
	Phase     string `json:"phase"`
	Step      string `json:"step,omitempty"`
	Ready     bool   `json:"ready"`
	LastError string `json:"last_error,omitempty"`
}

// rolloutStatus shows how far a cluster (or, when no cluster has that name,
// every machine installed with a boot profile) is from done. Exit codes:
// 0 done, 7 failed or paused, 8 still converging (without --watch, or when
// --timeout ends the watch).
func rolloutStatus(ctx context.Context, a *app, args []string) error {
	name := args[0]
	read, err := a.rolloutReader(ctx, name)
	if err != nil {
		return err
	}
	var (
		shown      string
		drawnLines int
	)
	for {
		r, err := read(ctx)
		if err != nil {
			if ctx.Err() != nil && a.o.watch {
				return &exitError{code: ExitPending, msg: fmt.Sprintf("%s %s: still converging when the watch ended", r.kindText(), name)}
			}
			return err
		}
		out, err := a.renderRollout(r)
		if err != nil {
			return err
		}
		if out != shown {
			if a.tty && drawnLines > 0 {
				// Redraw in place: up over the last rendering, clear below.
				fmt.Fprintf(a.stdout, "\x1b[%dA\x1b[J", drawnLines)
			} else if shown != "" && !a.json() {
				fmt.Fprintln(a.stdout)
			}
			fmt.Fprint(a.stdout, out)
			shown, drawnLines = out, strings.Count(out, "\n")
		}
		switch {
		case r.Failed:
			return &exitError{code: ExitFailed}
		case r.Done:
			return nil
		case !a.o.watch:
			return &exitError{code: ExitPending}
		}
	}
}

func (r *rollout) kindText() string {
	if r == nil || r.Kind == "" {
		return "rollout of"
	}
	return strings.ReplaceAll(r.Kind, "_", " ")
}

// rolloutReader picks the cluster or the profile called name and returns
// a function that reads its rollout; with --watch each read after the
// first waits for a change (or the interval).
func (a *app) rolloutReader(ctx context.Context, name string) (func(context.Context) (*rollout, error), error) {
	c, err := a.client.GetCluster(ctx, name)
	switch {
	case err == nil:
		rev := c.Revision
		first := true
		return func(ctx context.Context) (*rollout, error) {
			if !first {
				// A long poll that returns early on any change to the
				// cluster; the interval bounds it because member phases
				// can change without the cluster's revision moving.
				nc, err := a.client.WatchCluster(ctx, name, rev, a.o.interval)
				if err != nil {
					return &rollout{Kind: "cluster"}, err
				}
				c, rev = nc, nc.Revision
			}
			first = false
			return clusterRollout(c), nil
		}, nil
	case !errors.Is(err, client.ErrNotFound):
		return nil, err
	}
	if _, err := a.client.GetBootProfile(ctx, name); err != nil {
		if errors.Is(err, client.ErrNotFound) {
			return nil, &exitError{code: ExitNotFound, msg: fmt.Sprintf("no cluster or boot profile named %q", name)}
		}
		return nil, err
	}
	first := true
	return func(ctx context.Context) (*rollout, error) {
		if !first {
			// Machines of a profile have no single object to long-poll,
			// so the watch refreshes on the interval.
			t := time.NewTimer(a.o.interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return &rollout{Kind: "boot_profile"}, ctx.Err()
			case <-t.C:
			}
		}
		first = false
		return a.profileRollout(ctx, name)
	}, nil
}

func clusterRollout(c *api.Cluster) *rollout {
	r := &rollout{Kind: "cluster", Name: c.Name, Phase: string(c.Phase), Message: c.Message, Total: len(c.Members), Members: []rolloutMember{}}
	for _, m := range c.Members {
		ready := m.Phase == api.PhaseProvisioned
		if ready {
			r.Ready++
		}
		r.Members = append(r.Members, rolloutMember{Machine: m.Machine, Role: m.Role, Phase: string(m.Phase), Ready: ready, LastError: m.LastError})
	}
	// The agent's own verdict: it knows which members must be on the
	// latest profile version, which the member list does not show.
	r.Done = c.Phase == api.ClusterReady
	r.Failed = c.Phase == api.ClusterPaused
	return r
}

// profileRollout covers the machines that use a profile, directly or
// through a cluster role, and want to be provisioned: each is ready once
// installed with the profile's current version.
func (a *app) profileRollout(ctx context.Context, name string) (*rollout, error) {
	p, err := a.client.GetBootProfile(ctx, name)
	if err != nil {
		return &rollout{Kind: "boot_profile"}, err
	}
	ms, err := a.client.ListMachines(ctx, client.MachineFilter{})
	if err != nil {
		return &rollout{Kind: "boot_profile"}, err
	}
	cs, err := a.client.ListClusters(ctx)
	if err != nil {
		return &rollout{Kind: "boot_profile"}, err
	}
	viaRole := map[[2]string]bool{} // cluster, role
	for _, c := range cs {
		for _, role := range c.Roles {
			if role.BootProfile == name {
				viaRole[[2]string{c.Name, role.Name}] = true
			}
		}
	}
	r := &rollout{Kind: "boot_profile", Name: name, Members: []rolloutMember{}}
	for _, m := range ms {
		uses := m.BootProfile == name || (m.Cluster != "" && viaRole[[2]string{m.Cluster, m.Role}])
		if !uses || m.State != api.StateProvisioned {
			continue
		}
		ready := m.Phase == api.PhaseProvisioned && m.ProvisionedProfile == name && m.ProvisionedProfileVersion >= p.Version
		r.Total++
		if ready {
			r.Ready++
		}
		if m.Phase == api.PhaseFailed {
			r.Failed = true
		}
		r.Members = append(r.Members, rolloutMember{Machine: m.Name, Role: m.Role, Phase: string(m.Phase), Step: string(m.Step), Ready: ready, LastError: m.LastError})
	}
	r.Done = !r.Failed && r.Ready == r.Total
	switch {
	case r.Failed:
		r.Phase, r.Message = "failed", "a machine failed"
	case r.Done:
		r.Phase, r.Message = "ready", fmt.Sprintf("all %d machines on version %d", r.Total, p.Version)
	default:
		r.Phase, r.Message = "converging", fmt.Sprintf("%d of %d machines on version %d", r.Ready, r.Total, p.Version)
	}
	return r, nil
}

// renderRollout is one frame: a progress bar and the members, or one JSON
// line (a stream of them under --watch).
func (a *app) renderRollout(r *rollout) (string, error) {
	var b bytes.Buffer
	if a.json() {
		err := writeJSON(&b, r, a.o.watch)
		return b.String(), err
	}
	fmt.Fprintf(&b, "%s %s: %s %s %d/%d ready", r.kindText(), safe(r.Name), r.Phase, bar(r.Ready, r.Total, 20), r.Ready, r.Total)
	if r.Message != "" {
		fmt.Fprintf(&b, " — %s", safe(r.Message))
	}
	b.WriteString("\n")
	t := newTable(&b, "MACHINE", "ROLE", "PHASE", "STEP", "READY", "LAST ERROR")
	for _, m := range r.Members {
		ready := "no"
		if m.Ready {
			ready = "yes"
		}
		t.row(m.Machine, m.Role, m.Phase, m.Step, ready, truncate(m.LastError, 60))
	}
	err := t.flush()
	return b.String(), err
}

func bar(done, total, width int) string {
	filled := 0
	if total > 0 {
		filled = done * width / total
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]"
}
