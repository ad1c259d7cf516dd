package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/boot"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

// siteSnippets returns the stored snippets by name, with proposed (when not
// nil) in place of the stored one of its name.
func (s *Server) siteSnippets(ctx context.Context, proposed *model.Template) (map[string]*model.Template, error) {
	ts, err := s.store.ListTemplates(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing templates: %w", err)
	}
	out := make(map[string]*model.Template, len(ts)+1)
	for _, t := range ts {
		out[t.Name] = t
	}
	if proposed != nil {
		out[proposed.Name] = proposed
	}
	return out, nil
}

// dryRun renders, for each machine given, what a run starting now would
// serve it, with prop in place of stored objects: a template error or a
// missing or refused param is a 422 at save, not a hung install. Only
// machines meant to be provisioned are rendered.
func (s *Server) dryRun(ctx context.Context, field string, ms []*model.Machine, prop boot.Proposed) error {
	for _, m := range ms {
		if m.State != model.StateProvisioned {
			continue
		}
		if err := boot.Check(ctx, s.store, s.bootURL, m, prop); err != nil {
			var ce *boot.CheckError
			if errors.As(err, &ce) {
				return invalid(field, "%v", err)
			}
			return fmt.Errorf("dry run of machine %q: %w", m.Name, err)
		}
	}
	return nil
}

// machinesWithProfile lists the machines that install with a profile
// accepted by use (their cluster role's, else their own), as prop would
// have them.
func (s *Server) machinesWithProfile(ctx context.Context, prop boot.Proposed, use func(profile string) bool) ([]*model.Machine, error) {
	ms, err := s.store.ListMachines(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing machines: %w", err)
	}
	clusters := map[string]*model.Cluster{}
	var out []*model.Machine
	for _, m := range ms {
		var c *model.Cluster
		if m.Cluster != "" {
			if prop.Cluster != nil && prop.Cluster.Name == m.Cluster {
				c = prop.Cluster
			} else if c = clusters[m.Cluster]; c == nil {
				c, err = s.store.GetCluster(ctx, m.Cluster)
				if errors.Is(err, store.ErrNotFound) {
					c, err = nil, nil
				}
				if err != nil {
					return nil, err
				}
				clusters[m.Cluster] = c
			}
		}
		if p := boot.ProfileOf(m, c); p != "" && use(p) {
			out = append(out, m)
		}
	}
	return out, nil
}

// snippetUsers names the profiles whose texts include snippet name,
// directly or through other snippets, with site as the site's snippets.
func (s *Server) snippetUsers(ctx context.Context, name string, site map[string]*model.Template) ([]string, error) {
	ps, err := s.store.ListProfiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing boot profiles: %w", err)
	}
	var out []string
	for _, p := range ps {
		if usesSnippet(p, name, site) {
			out = append(out, p.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

func usesSnippet(p *model.BootProfile, name string, site map[string]*model.Template) bool {
	_, ok := boot.SnippetVersions(p, site)[name]
	return ok
}

func (s *Server) templateToAPI(ctx context.Context, t *model.Template, site map[string]*model.Template) (api.Template, error) {
	users, err := s.snippetUsers(ctx, t.Name, site)
	if err != nil {
		return api.Template{}, err
	}
	refs := t.Snippets
	if refs == nil {
		refs = []string{}
	}
	if users == nil {
		users = []string{}
	}
	return api.Template{ID: t.Name, Name: t.Name, Content: t.Content, Description: t.Description, Snippets: refs,
		UsedBy: users, Version: t.Version, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}, nil
}

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) error {
	site, err := s.siteSnippets(r.Context(), nil)
	if err != nil {
		return err
	}
	out := api.TemplateList{Items: make([]api.Template, 0, len(site))}
	names := make([]string, 0, len(site))
	for n := range site {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		t, err := s.templateToAPI(r.Context(), site[n], site)
		if err != nil {
			return err
		}
		out.Items = append(out.Items, t)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getTemplate(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	t, err := s.store.GetTemplate(r.Context(), name)
	if err != nil {
		return storeError(err, "template", name)
	}
	site, err := s.siteSnippets(r.Context(), nil)
	if err != nil {
		return err
	}
	out, err := s.templateToAPI(r.Context(), t, site)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// checkTemplate validates a snippet about to be saved as t: its syntax,
// the snippets it includes, and a dry run of every machine whose profile
// includes it. It fills t.Snippets.
func (s *Server) checkTemplate(ctx context.Context, t *model.Template) error {
	if err := validateName(t.Name); err != nil {
		return err
	}
	refs, err := boot.SnippetRefs(t.Name, t.Content)
	if err != nil {
		return invalid("content", "%v", err)
	}
	t.Snippets = refs
	site, err := s.siteSnippets(ctx, t)
	if err != nil {
		return err
	}
	for _, ref := range refs {
		if _, ok := site[ref]; ok {
			continue
		}
		if _, ok := boot.StockSnippet(ref); !ok {
			return invalid("content", "template %q includes snippet %q, which does not exist (stock snippets: %s)",
				t.Name, ref, strings.Join(boot.StockSnippets(), ", "))
		}
	}
	prop := boot.Proposed{Snippet: t}
	ps, err := s.store.ListProfiles(ctx)
	if err != nil {
		return fmt.Errorf("listing boot profiles: %w", err)
	}
	users := map[string]bool{}
	for _, p := range ps {
		if usesSnippet(p, t.Name, site) {
			users[p.Name] = true
		}
	}
	if len(users) == 0 {
		return nil
	}
	ms, err := s.machinesWithProfile(ctx, prop, func(p string) bool { return users[p] })
	if err != nil {
		return err
	}
	return s.dryRun(ctx, "content", ms, prop)
}

func (s *Server) createTemplate(w http.ResponseWriter, r *http.Request) error {
	var req api.TemplateRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	s.specMu.Lock()
	defer s.specMu.Unlock()
	t := &model.Template{Name: req.Name, Content: req.Content, Description: req.Description}
	if err := s.checkTemplate(r.Context(), t); err != nil {
		return err
	}
	created, err := s.store.CreateTemplate(r.Context(), t)
	if err != nil {
		return storeError(err, "template", req.Name)
	}
	site, err := s.siteSnippets(r.Context(), nil)
	if err != nil {
		return err
	}
	out, err := s.templateToAPI(r.Context(), created, site)
	if err != nil {
		return err
	}
	w.Header().Set("Location", api.PathTemplates+"/"+created.Name)
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) updateTemplate(w http.ResponseWriter, r *http.Request) error {
	var req api.TemplateRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	name, err := nameFor(req.Name, r.PathValue("name"))
	if err != nil {
		return err
	}
	s.specMu.Lock()
	defer s.specMu.Unlock()
	existing, err := s.store.GetTemplate(r.Context(), name)
	if err != nil {
		return storeError(err, "template", name)
	}
	t := &model.Template{Name: name, Content: req.Content, Description: req.Description, Version: existing.Version + 1}
	if err := s.checkTemplate(r.Context(), t); err != nil {
		return err
	}
	updated, err := s.store.UpdateTemplate(r.Context(), name, func(x *model.Template) error {
		if req.Version != 0 && req.Version != x.Version {
			return staleVersion("template", name, req.Version, x.Version)
		}
		x.Content, x.Description, x.Snippets = t.Content, t.Description, t.Snippets
		return nil
	})
	if err != nil {
		return storeError(err, "template", name)
	}
	site, err := s.siteSnippets(r.Context(), nil)
	if err != nil {
		return err
	}
	out, err := s.templateToAPI(r.Context(), updated, site)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// deleteTemplate refuses to delete a snippet a profile includes, unless a
// stock snippet of that name takes its place.
func (s *Server) deleteTemplate(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	s.specMu.Lock()
	defer s.specMu.Unlock()
	if _, err := s.store.GetTemplate(r.Context(), name); err != nil {
		return storeError(err, "template", name)
	}
	if _, stock := boot.StockSnippet(name); !stock {
		site, err := s.siteSnippets(r.Context(), nil)
		if err != nil {
			return err
		}
		users, err := s.snippetUsers(r.Context(), name, site)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return conflict("", "template %q is included by boot profile(s) %s; change those first", name, strings.Join(users, ", "))
		}
	}
	if err := s.store.DeleteTemplate(r.Context(), name, nil); err != nil {
		return storeError(err, "template", name)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// renderedTemplate previews template of the machine's profile exactly as
// the machine would receive it now, the run token redacted.
func (s *Server) renderedTemplate(w http.ResponseWriter, r *http.Request) error {
	name, tmpl := r.PathValue("name"), r.PathValue("template")
	m, err := s.store.GetMachine(r.Context(), name)
	if err != nil {
		return storeError(err, "machine", name)
	}
	out, profile, found, err := boot.Preview(r.Context(), s.store, s.bootURL, m, tmpl)
	var ce *boot.CheckError
	switch {
	case errors.As(err, &ce), errors.Is(err, store.ErrNotFound), errors.Is(err, boot.ErrNoProfile):
		return invalid("template", "%v", err)
	case err != nil:
		return err
	case !found:
		return notFound("template", tmpl)
	}
	writeJSON(w, http.StatusOK, api.RenderedTemplate{Machine: m.Name, Profile: profile, Template: tmpl, Content: out})
	return nil
}
