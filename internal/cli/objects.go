package cli

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

func profilesList(ctx context.Context, a *app, _ []string) error {
	ps, err := a.client.ListBootProfiles(ctx)
	if err != nil {
		return err
	}
	if a.json() {
		return writeJSON(a.stdout, api.BootProfileList{Items: ps}, false)
	}
	t := newTable(a.stdout, "NAME", "VERSION", "KERNEL", "TEMPLATES", "UPDATED")
	for _, p := range ps {
		kernel := p.Kernel
		if p.IPXEScript != "" {
			kernel = "(ipxe script)"
		}
		t.row(p.Name, strconv.FormatUint(p.Version, 10), truncate(kernel, 60), strings.Join(sortedKeys(p.Templates), ","),
			p.UpdatedAt.UTC().Format("2006-01-02 15:04:05"))
	}
	return t.flush()
}

func profilesShow(ctx context.Context, a *app, args []string) error {
	p, err := a.client.GetBootProfile(ctx, args[0])
	if err != nil {
		return err
	}
	if a.json() {
		return writeJSON(a.stdout, p, false)
	}
	k := newKV(a.stdout)
	k.add("Name", p.Name)
	k.add("Version", strconv.FormatUint(p.Version, 10))
	k.add("Kernel", p.Kernel)
	k.add("Initrds", strings.Join(p.Initrds, ", "))
	k.add("Cmdline", p.Cmdline)
	k.add("Wipe profile", p.WipeProfile)
	k.add("Templates", strings.Join(sortedKeys(p.Templates), ", "))
	for _, key := range sortedKeys(p.Params) {
		k.add("Param "+key, p.Params[key])
	}
	if p.IPXEScript != "" {
		k.add("iPXE script", fmt.Sprintf("%d lines (see -o json)", strings.Count(p.IPXEScript, "\n")+1))
	}
	return k.flush()
}

// templatesList lists the site's snippets, or with PROFILE that profile's
// install templates (they live in the profile, so PROFILE names where to
// look).
func templatesList(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 {
		return snippetsList(ctx, a)
	}
	p, err := a.client.GetBootProfile(ctx, args[0])
	if err != nil {
		return err
	}
	type entry struct {
		Profile string `json:"profile"`
		Name    string `json:"name"`
		Bytes   int    `json:"bytes"`
	}
	out := []entry{}
	for _, name := range sortedKeys(p.Templates) {
		out = append(out, entry{Profile: p.Name, Name: name, Bytes: len(p.Templates[name])})
	}
	if a.json() {
		return writeJSON(a.stdout, out, false)
	}
	t := newTable(a.stdout, "PROFILE", "TEMPLATE", "BYTES", "FETCH PATH")
	for _, e := range out {
		t.row(e.Profile, e.Name, strconv.Itoa(e.Bytes), "/machines/{id}/templates/"+e.Name)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(p.Snippets) > 0 {
		// Where the text a machine receives also comes from.
		_, err = fmt.Fprintf(a.stdout, "\nSnippets included: %s\n", strings.Join(p.Snippets, ", "))
	}
	return err
}

// snippetsList lists the site's snippets (/v1/templates) and the profiles
// that use each, the ones a change to it re-provisions.
func snippetsList(ctx context.Context, a *app) error {
	ts, err := a.client.ListTemplates(ctx)
	if err != nil {
		return err
	}
	if a.json() {
		return writeJSON(a.stdout, api.TemplateList{Items: ts}, false)
	}
	t := newTable(a.stdout, "SNIPPET", "VERSION", "USED BY", "DESCRIPTION", "UPDATED")
	for _, tp := range ts {
		t.row(tp.Name, strconv.FormatUint(tp.Version, 10), orDash(strings.Join(tp.UsedBy, ",")), truncate(orDash(tp.Description), 60),
			tp.UpdatedAt.UTC().Format("2006-01-02 15:04:05"))
	}
	return t.flush()
}

// templatesShow prints a snippet's source, or with PROFILE a profile
// template's, as stored, unrendered: the agent renders it per machine when
// the installer fetches it.
func templatesShow(ctx context.Context, a *app, args []string) error {
	var body string
	if len(args) == 1 {
		tp, err := a.client.GetTemplate(ctx, args[0])
		if err != nil {
			return err
		}
		if a.json() {
			return writeJSON(a.stdout, tp, false)
		}
		body = tp.Content
	} else {
		p, err := a.client.GetBootProfile(ctx, args[0])
		if err != nil {
			return err
		}
		var ok bool
		if body, ok = p.Templates[args[1]]; !ok {
			return &exitError{code: ExitNotFound, msg: fmt.Sprintf("profile %s has no template %q (it has: %s)",
				p.Name, args[1], strings.Join(sortedKeys(p.Templates), ", "))}
		}
		if a.json() {
			return writeJSON(a.stdout, map[string]string{"profile": p.Name, "name": args[1], "template": body}, false)
		}
	}
	// The raw text is the point of this command; it is written as is, with
	// a final newline, so it can be redirected into a file and edited.
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	_, err := fmt.Fprint(a.stdout, body)
	return err
}

func clustersList(ctx context.Context, a *app, _ []string) error {
	cs, err := a.client.ListClusters(ctx)
	if err != nil {
		return err
	}
	if a.json() {
		return writeJSON(a.stdout, api.ClusterList{Items: cs}, false)
	}
	t := newTable(a.stdout, "NAME", "PHASE", "MEMBERS", "PROVISIONED", "ROLES", "MESSAGE")
	for _, c := range cs {
		roles := make([]string, 0, len(c.Roles))
		for _, r := range c.Roles {
			roles = append(roles, r.Name)
		}
		t.row(c.Name, string(c.Phase), strconv.Itoa(len(c.Members)), strconv.Itoa(countPhase(c.Members, api.PhaseProvisioned)),
			strings.Join(roles, ","), truncate(c.Message, 60))
	}
	return t.flush()
}

func clustersShow(ctx context.Context, a *app, args []string) error {
	c, err := a.client.GetCluster(ctx, args[0])
	if err != nil {
		return err
	}
	if a.json() {
		return writeJSON(a.stdout, c, false)
	}
	k := newKV(a.stdout)
	k.add("Name", c.Name)
	k.add("Phase", string(c.Phase))
	k.add("Message", c.Message)
	k.add("Max unavailable", strconv.Itoa(c.Rollout.MaxUnavailable))
	for _, r := range c.Roles {
		k.add("Role "+r.Name, "boot profile "+r.BootProfile+", endpoints "+orDash(strings.Join(c.Endpoints[r.Name], ", ")))
	}
	if err := k.flush(); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout)
	return membersTable(a, c.Members)
}

func membersTable(a *app, ms []api.ClusterMemberStatus) error {
	t := newTable(a.stdout, "MACHINE", "ROLE", "PHASE", "ADDRESSES", "LAST ERROR")
	for _, m := range ms {
		t.row(m.Machine, m.Role, string(m.Phase), strings.Join(m.Addresses, ","), truncate(m.LastError, 60))
	}
	return t.flush()
}

func countPhase(ms []api.ClusterMemberStatus, phase api.MachinePhase) int {
	n := 0
	for _, m := range ms {
		if m.Phase == phase {
			n++
		}
	}
	return n
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
