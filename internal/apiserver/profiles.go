package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/boot"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

func (s *Server) listProfiles(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.store.ListProfiles(r.Context())
	if err != nil {
		return fmt.Errorf("listing boot profiles: %w", err)
	}
	slices.SortFunc(ps, func(a, b *model.BootProfile) int { return strings.Compare(a.Name, b.Name) })
	out := api.BootProfileList{Items: make([]api.BootProfile, 0, len(ps))}
	for _, p := range ps {
		out.Items = append(out.Items, profileToAPI(p))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getProfile(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	p, err := s.store.GetProfile(r.Context(), name)
	if err != nil {
		return storeError(err, "boot profile", name)
	}
	writeJSON(w, http.StatusOK, profileToAPI(p))
	return nil
}

func (s *Server) createProfile(w http.ResponseWriter, r *http.Request) error {
	var req api.BootProfileRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	s.specMu.Lock()
	defer s.specMu.Unlock()
	if err := s.validateProfile(r.Context(), &req); err != nil {
		return err
	}
	p := &model.BootProfile{Name: req.Name}
	applyProfileSpec(p, &req)
	if err := s.checkProfile(r.Context(), p); err != nil {
		return err
	}
	created, err := s.store.CreateProfile(r.Context(), p)
	if err != nil {
		return storeError(err, "boot profile", req.Name)
	}
	w.Header().Set("Location", api.PathProfiles+"/"+created.Name)
	writeJSON(w, http.StatusCreated, profileToAPI(created))
	return nil
}

func (s *Server) updateProfile(w http.ResponseWriter, r *http.Request) error {
	var req api.BootProfileRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	name, err := nameFor(req.Name, r.PathValue("name"))
	if err != nil {
		return err
	}
	req.Name = name
	s.specMu.Lock()
	defer s.specMu.Unlock()
	if err := s.validateProfile(r.Context(), &req); err != nil {
		return err
	}
	existing, err := s.store.GetProfile(r.Context(), name)
	if err != nil {
		return storeError(err, "boot profile", name)
	}
	applyProfileSpec(existing, &req)
	if err := s.checkProfile(r.Context(), existing); err != nil {
		return err
	}
	updated, err := s.store.UpdateProfile(r.Context(), name, func(p *model.BootProfile) error {
		if req.Version != 0 && req.Version != p.Version {
			return staleVersion("boot profile", name, req.Version, p.Version)
		}
		applyProfileSpec(p, &req)
		p.Snippets = existing.Snippets
		return nil
	})
	if err != nil {
		return storeError(err, "boot profile", name)
	}
	writeJSON(w, http.StatusOK, profileToAPI(updated))
	return nil
}

// checkProfile checks the syntax of p's texts with the snippets they
// include, records those in p.Snippets, and dry-renders every machine that
// installs with p.
func (s *Server) checkProfile(ctx context.Context, p *model.BootProfile) error {
	site, err := s.siteSnippets(ctx, nil)
	if err != nil {
		return err
	}
	refs, field, err := boot.ProfileSnippets(p, site)
	if err != nil {
		return invalid(field, "boot profile %q %s: %v", p.Name, field, err)
	}
	p.Snippets = refs
	prop := boot.Proposed{Profile: p}
	ms, err := s.machinesWithProfile(ctx, prop, func(name string) bool { return name == p.Name })
	if err != nil {
		return err
	}
	return s.dryRun(ctx, "templates", ms, prop)
}

func (s *Server) deleteProfile(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	s.specMu.Lock()
	defer s.specMu.Unlock()
	if _, err := s.store.GetProfile(r.Context(), name); err != nil {
		return storeError(err, "boot profile", name)
	}
	users, err := s.profileUsers(r, name)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		more := ""
		if len(users) > 5 {
			more = fmt.Sprintf(" and %d more", len(users)-5)
			users = users[:5]
		}
		return conflict("", "boot profile %q is in use by %s%s; change or delete those first", name, strings.Join(users, ", "), more)
	}
	if err := s.store.DeleteProfile(r.Context(), name, nil); err != nil {
		return storeError(err, "boot profile", name)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// profileUsers names every object that refers to profile name.
func (s *Server) profileUsers(r *http.Request, name string) ([]string, error) {
	var users []string
	ms, err := s.store.ListMachines(r.Context())
	if err != nil {
		return nil, fmt.Errorf("listing machines: %w", err)
	}
	for _, m := range ms {
		if m.BootProfile == name {
			users = append(users, fmt.Sprintf("machine %q", m.Name))
		}
	}
	cs, err := s.store.ListClusters(r.Context())
	if err != nil {
		return nil, fmt.Errorf("listing clusters: %w", err)
	}
	for _, c := range cs {
		for _, role := range c.Roles {
			if role.BootProfile == name {
				users = append(users, fmt.Sprintf("cluster %q role %q", c.Name, role.Name))
			}
		}
	}
	ps, err := s.store.ListProfiles(r.Context())
	if err != nil {
		return nil, fmt.Errorf("listing boot profiles: %w", err)
	}
	for _, p := range ps {
		if p.WipeProfile == name && p.Name != name {
			users = append(users, fmt.Sprintf("boot profile %q (wipe_profile)", p.Name))
		}
	}
	return users, nil
}
