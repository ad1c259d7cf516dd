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
	Site    *model.Site
}

// RedactedToken stands in for the run token in dry runs and previews: the
// token is a credential and a preview is read by people.
const RedactedToken = "<token>"

// ErrNoProfile: neither the machine nor its cluster role names a profile.
var ErrNoProfile = errors.New("no boot profile (neither the machine nor its cluster role names one)")

type loader struct {
	st   Reader
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

func (l loader) site(ctx context.Context) (*model.Site, error) {
	if l.prop.Site != nil {
		return l.prop.Site, nil
	}
	site, err := l.st.GetSite(ctx)
	if err != nil {
		return nil, fmt.Errorf("site params: %w", err)
	}
	return site, nil
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
		return in, ErrNoProfile
	}
	p, err := l.profile(ctx, profile)
	if err != nil {
		return in, fmt.Errorf("boot profile %q: %w", profile, err)
	}
	in.profile = p
	if in.snippets, err = l.snippets(ctx); err != nil {
		return in, err
	}
	if in.site, err = l.site(ctx); err != nil {
		return in, err
	}
	return in, nil
}

// redactedSecrets is the secret source of dry runs and previews: every
// secret the machine has renders as its placeholder, and one it lacks
// fails as it would in the run.
func redactedSecrets(in renderInput) *secretSource {
	params, _ := in.secretLayers().Effective()
	return &secretSource{redact: true, params: params}
}

// EffectiveParams returns machine m's params as its templates would see
// them now (site < profile < cluster < machine), with the layer each came
// from, and the names of its effective secret params. A machine without a
// usable profile gets the layers it has.
func EffectiveParams(ctx context.Context, st Reader, m *model.Machine) (params, sources map[string]string, secrets []string, err error) {
	in, err := loadInput(ctx, loader{st: st}, m, m.Run.Serving())
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, ErrNoProfile) {
		return nil, nil, nil, fmt.Errorf("machine %q: %w", m.Name, err)
	}
	if in.site == nil {
		// loadInput stopped before the site; params still have a site layer.
		if in.site, err = (loader{st: st}).site(ctx); err != nil {
			return nil, nil, nil, err
		}
	}
	params, sources = in.paramLayers().Effective()
	sec, _ := in.secretLayers().Effective()
	return params, sources, model.Secrets(sec).Names(), nil
}

// CheckError is a machine's dry run that did not render.
type CheckError struct {
	Machine string
	Err     error
}

func (e *CheckError) Error() string { return fmt.Sprintf("machine %q: %v", e.Machine, e.Err) }
func (e *CheckError) Unwrap() error { return e.Err }

// Check dry-renders everything machine m's profile would serve it (the
// boot script and each template) as if a run started now, with prop in
// place of stored objects. A machine without a profile has nothing to
// check, and a missing profile or cluster is the reconciler's to report.
// A render failure is a *CheckError naming the machine, the profile, the
// template (or snippet), its line and column and a missing or refused
// param; other errors are the store's.
func Check(ctx context.Context, st Reader, bootURL string, m *model.Machine, prop Proposed) error {
	l := loader{st: st, prop: prop}
	if m.Cluster == "" && m.BootProfile == "" {
		return nil
	}
	in, err := loadInput(ctx, l, m, false)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, ErrNoProfile) {
		return nil
	}
	if err != nil {
		return err
	}
	in.token = RedactedToken
	in.secrets = redactedSecrets(in)
	s := &Server{bootURL: strings.TrimRight(bootURL, "/")}
	if _, err := s.renderIPXE(in); err != nil && !notYetKnown(err) {
		return &CheckError{Machine: m.Name, Err: err}
	}
	names := make([]string, 0, len(in.profile.Templates))
	for n := range in.profile.Templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, _, err := s.renderTemplate(in, n); err != nil && !notYetKnown(err) {
			return &CheckError{Machine: m.Name, Err: err}
		}
	}
	return nil
}

// notYetKnown reports a render that required stopped: the template is
// checked up to a value that only a later event supplies (a worker's
// user-data before its control plane reports an address), which the
// machine waits for, so a save is no place to refuse it.
func notYetKnown(err error) bool {
	var te *TemplateError
	return errors.As(err, &te) && te.NotYetKnown
}

// Preview renders template name of machine m's profile exactly as the
// machine would receive it now (the profile of its current run, if any),
// with the run token and every secret redacted. It returns the profile's name, and found
// false when the profile has no such template. A render failure is a
// *CheckError.
func Preview(ctx context.Context, st Reader, bootURL string, m *model.Machine, name string) (out, profile string, found bool, err error) {
	in, err := loadInput(ctx, loader{st: st}, m, m.Run.Serving())
	if err != nil {
		return "", "", false, fmt.Errorf("machine %q: %w", m.Name, err)
	}
	in.token = RedactedToken
	in.secrets = redactedSecrets(in)
	s := &Server{bootURL: strings.TrimRight(bootURL, "/")}
	out, found, err = s.renderTemplate(in, name)
	if err != nil {
		return "", in.profile.Name, found, &CheckError{Machine: m.Name, Err: err}
	}
	return out, in.profile.Name, found, nil
}

// SnippetVersions lists the site snippets p includes, transitively, with
// their versions; stock snippets no site snippet overrides are not listed.
// A run records it, and a change of it re-provisions p's machines.
func SnippetVersions(p *model.BootProfile, site map[string]*model.Template) map[string]uint64 {
	out := map[string]uint64{}
	seen := map[string]bool{}
	queue := append([]string(nil), p.Snippets...)
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if seen[n] {
			continue
		}
		seen[n] = true
		if t, ok := site[n]; ok {
			out[n] = t.Version
			queue = append(queue, t.Snippets...)
		} else if text, ok := StockSnippet(n); ok {
			if refs, err := SnippetRefs(n, text); err == nil {
				queue = append(queue, refs...)
			}
		}
	}
	return out
}

// ProfileSnippets checks the syntax of each text of p (cmdline,
// ipxe_script, templates) together with the snippets it includes, site
// ones before stock ones, and returns the snippets the texts include
// directly, sorted. On error, field names the text at fault ("cmdline",
// "ipxe_script" or "templates.<name>").
func ProfileSnippets(p *model.BootProfile, site map[string]*model.Template) (refs []string, field string, err error) {
	texts := map[string]string{"cmdline": p.Cmdline, "ipxe_script": p.IPXEScript}
	for n, t := range p.Templates {
		texts["templates."+n] = t
	}
	fields := make([]string, 0, len(texts))
	for f := range texts {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	seen := map[string]bool{}
	fm := funcs(&RenderContext{}, nil, nil)
	for _, f := range fields {
		if texts[f] == "" {
			continue
		}
		text, err := resolveTemplateText(texts[f])
		if err != nil {
			return nil, f, err
		}
		name := strings.TrimPrefix(f, "templates.")
		if _, err := parseWithSnippets(name, text, fm, site); err != nil {
			return nil, f, err
		}
		direct, err := SnippetRefs(name, text)
		if err != nil {
			return nil, f, err
		}
		for _, r := range direct {
			if !seen[r] {
				seen[r] = true
				refs = append(refs, r)
			}
		}
	}
	sort.Strings(refs)
	return refs, "", nil
}
