package boot

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// Proposed holds objects about to be saved. A dry run renders with them in
// place of the stored objects of the same name, so a change is checked
// before it is written.
type Proposed struct {
	Machine *model.Machine
	Profile *model.BootProfile
	Cluster *model.Cluster
	Snippet *model.Template
}

// RedactedToken stands in for the run token in dry runs and previews: the
// token is a credential and a preview is read by people.
const RedactedToken = "<token>"

type loader struct {
	st   store.Store
	prop Proposed
}

func (l loader) machine(ctx context.Context, name string) (*model.Machine, error) {
	if m := l.prop.Machine; m != nil && m.Name == name {
		return m, nil
	}
	return l.st.GetMachine(ctx, name)
}

func (l loader) profile(ctx context.Context, name string) (*model.BootProfile, error) {
	if p := l.prop.Profile; p != nil && p.Name == name {
		return p, nil
	}
	return l.st.GetProfile(ctx, name)
}

func (l loader) cluster(ctx context.Context, name string) (*model.Cluster, error) {
	if c := l.prop.Cluster; c != nil && c.Name == name {
		return c, nil
	}
	return l.st.GetCluster(ctx, name)
}

func (l loader) snippets(ctx context.Context) (map[string]*model.Template, error) {
	ts, err := l.st.ListTemplates(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing snippets: %w", err)
	}
	out := make(map[string]*model.Template, len(ts)+1)
	for _, t := range ts {
		out[t.Name] = t
	}
	if t := l.prop.Snippet; t != nil {
		out[t.Name] = t
	}
	return out, nil
}

// ProfileOf names the profile m installs with when a run starts now: its
// cluster role's, else its own boot_profile ("" for none). The cluster is
// nil when m is not a member.
func ProfileOf(m *model.Machine, c *model.Cluster) string {
	if c != nil {
		for _, r := range c.Roles {
			if r.Name == m.Role && r.BootProfile != "" {
				return r.BootProfile
			}
		}
	}
	return m.BootProfile
}

// loadInput loads m's effective profile, its cluster, the cluster's
// members and the site's snippets for rendering. With useRun, the profile
// the current run started with wins: a run renders what it started with.
func loadInput(ctx context.Context, l loader, m *model.Machine, useRun bool) (renderInput, error) {
	in := renderInput{machine: m, members: map[string]*model.Machine{}}
	if m.Run != nil {
		in.token = m.Run.Token
	}
	if m.Cluster != "" {
		c, err := l.cluster(ctx, m.Cluster)
		if err != nil {
			return in, fmt.Errorf("cluster %q: %w", m.Cluster, err)
		}
		in.cluster = c
		for _, mem := range c.Members {
			if mem.Machine == m.Name {
				in.members[m.Name] = m
				continue
			}
			mm, err := l.machine(ctx, mem.Machine)
			if err == nil {
				in.members[mem.Machine] = mm
			} else if !errors.Is(err, store.ErrNotFound) {
				return in, fmt.Errorf("cluster %q member %q: %w", c.Name, mem.Machine, err)
			}
		}
	}
	profile := ProfileOf(m, in.cluster)
	if useRun && m.Run != nil && m.Run.Profile != "" {
		profile = m.Run.Profile
	}
	if profile == "" {
		return in, errors.New("no boot profile (neither the machine nor its cluster role names one)")
	}
	p, err := l.profile(ctx, profile)
	if err != nil {
		return in, fmt.Errorf("boot profile %q: %w", profile, err)
	}
	in.profile = p
	if in.snippets, err = l.snippets(ctx); err != nil {
		return in, err
	}
	return in, nil
}

// Check dry-renders everything machine m's profile would serve it (the
// boot script and each template) as if a run started now, with prop in
// place of stored objects. A machine without a profile has nothing to
// check. The error names the machine, the profile, the template (or
// snippet), its line and column and a missing or refused param.
func Check(ctx context.Context, st store.Store, bootURL string, m *model.Machine, prop Proposed) error {
	l := loader{st: st, prop: prop}
	if m.Cluster == "" && m.BootProfile == "" {
		return nil
	}
	in, err := loadInput(ctx, l, m, false)
	if err != nil {
		return fmt.Errorf("machine %q: %w", m.Name, err)
	}
	in.token = RedactedToken
	s := &Server{bootURL: strings.TrimRight(bootURL, "/")}
	if _, err := s.renderIPXE(in); err != nil {
		return fmt.Errorf("machine %q: %w", m.Name, err)
	}
	names := make([]string, 0, len(in.profile.Templates))
	for n := range in.profile.Templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, _, err := s.renderTemplate(in, n); err != nil {
			return fmt.Errorf("machine %q: %w", m.Name, err)
		}
	}
	return nil
}

// Preview renders template name of machine m's profile exactly as the
// machine would receive it now (the profile of its current run, if any),
// with the run token redacted. The bool is false when the profile has no
// such template.
func Preview(ctx context.Context, st store.Store, bootURL string, m *model.Machine, name string) (string, bool, error) {
	in, err := loadInput(ctx, loader{st: st}, m, true)
	if err != nil {
		return "", false, fmt.Errorf("machine %q: %w", m.Name, err)
	}
	in.token = RedactedToken
	s := &Server{bootURL: strings.TrimRight(bootURL, "/")}
	return s.renderTemplate(in, name)
}

// SnippetVersions lists the site snippets p includes, transitively, with
// their versions; stock snippets no site snippet overrides are not listed.
// A run records it, and a change of it re-provisions p's machines.
func SnippetVersions(p *model.BootProfile, site map[string]*model.Template) map[string]uint64 {
	out := map[string]uint64{}
	queue := append([]string(nil), p.Snippets...)
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if _, seen := out[n]; seen {
			continue
		}
		if t, ok := site[n]; ok {
			out[n] = t.Version
			queue = append(queue, t.Snippets...)
		} else if text, ok := StockSnippet(n); ok {
			out[n] = 0
			if refs, err := SnippetRefs(n, text); err == nil {
				queue = append(queue, refs...)
			}
		}
	}
	for n, v := range out {
		if v == 0 {
			delete(out, n)
		}
	}
	return out
}
