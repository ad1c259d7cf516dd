package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/boot"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
	"github.com/openbaremetal/terraform-provider-baremetal/internal/store"
)

func siteToAPI(site *model.Site) api.SiteParams {
	return api.SiteParams{Params: site.Params, SecretParamNames: site.SecretParams.Names(), Version: site.Version, UpdatedAt: site.UpdatedAt}
}

func (s *Server) getSiteParams(w http.ResponseWriter, r *http.Request) error {
	site, err := s.store.GetSite(r.Context())
	if err != nil {
		return fmt.Errorf("reading site params: %w", err)
	}
	writeJSON(w, http.StatusOK, siteToAPI(site))
	return nil
}

func (s *Server) putSiteParams(w http.ResponseWriter, r *http.Request) error {
	var req api.SiteParamsRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := validateParams("params", req.Params); err != nil {
		return err
	}
	if err := validateSecretParams("secret_params", req.SecretParams); err != nil {
		return err
	}
	return s.writeSite(w, r, req.Version, func(site *model.Site) {
		site.Params = req.Params
		applySecrets(&site.SecretParams, &site.SecretsRevision, req.SecretParams)
	})
}

// deleteSiteParams puts the site back to no params and no secret params
// (what destroying the Terraform resource means); it answers like a PUT.
func (s *Server) deleteSiteParams(w http.ResponseWriter, r *http.Request) error {
	none := map[string]string{}
	return s.writeSite(w, r, 0, func(site *model.Site) {
		site.Params = nil
		applySecrets(&site.SecretParams, &site.SecretsRevision, &none)
	})
}

// writeSite dry-renders every machine with the site as apply would leave
// it, writes it, and answers with the machines whose installs it changes.
func (s *Server) writeSite(w http.ResponseWriter, r *http.Request, version uint64, apply func(*model.Site)) error {
	ctx := r.Context()
	s.specMu.Lock()
	defer s.specMu.Unlock()
	cur, err := s.store.GetSite(ctx)
	if err != nil {
		return fmt.Errorf("reading site params: %w", err)
	}
	if version != 0 && version != cur.Version {
		return staleVersion("site params", "site", version, cur.Version)
	}
	proposed := *cur
	apply(&proposed)
	prop := boot.Proposed{Site: &proposed}
	ms, err := s.machinesWithProfile(ctx, prop, func(string) bool { return true })
	if err != nil {
		return err
	}
	if err := s.dryRun(ctx, "params", ms, prop); err != nil {
		return err
	}
	changed, err := s.siteChanges(ctx, ms, cur, &proposed)
	if err != nil {
		return err
	}
	updated, err := s.store.UpdateSite(ctx, func(site *model.Site) error {
		if site.Version != cur.Version {
			// Another writer got in since the read above; specMu keeps
			// API writers out, so this is a second agent on the store.
			return staleVersion("site params", "site", cur.Version, site.Version)
		}
		apply(site)
		return nil
	})
	if err != nil {
		return err
	}
	out := siteToAPI(updated)
	out.Reprovisioning = changed
	writeJSON(w, http.StatusOK, out)
	return nil
}

// siteChanges names the machines meant to be provisioned whose installs
// change when the site goes from before to after: the same comparison the
// reconciler makes (model.SiteAndSecrets), so these are the machines it
// re-provisions.
func (s *Server) siteChanges(ctx context.Context, ms []*model.Machine, before, after *model.Site) ([]string, error) {
	profiles := map[string]*model.BootProfile{}
	var out []string
	for _, m := range ms {
		if m.State != model.StateProvisioned {
			continue
		}
		var c *model.Cluster
		if m.Cluster != "" {
			var err error
			if c, err = s.store.GetCluster(ctx, m.Cluster); err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
		}
		name := boot.ProfileOf(m, c)
		p, ok := profiles[name]
		if !ok {
			var err error
			if p, err = s.store.GetProfile(ctx, name); err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			profiles[name] = p
		}
		if p == nil {
			continue
		}
		if !reflect.DeepEqual(model.SiteAndSecrets(before, p, c, m), model.SiteAndSecrets(after, p, c, m)) {
			out = append(out, m.Name)
		}
	}
	return out, nil
}

func (s *Server) generatedSecretMachine(r *http.Request) (machine, secret string, err error) {
	machine, secret = r.PathValue("name"), r.PathValue("secret")
	if !model.SecretNameRE.MatchString(secret) {
		return "", "", badRequest("secret", "a secret's name is 1 to 63 letters, digits, '_', '.' or '-', not starting with '.' or '-'")
	}
	return machine, secret, nil
}

// getGeneratedSecret reads a machine's generated secret (404 before the
// machine's templates or a POST made it).
func (s *Server) getGeneratedSecret(w http.ResponseWriter, r *http.Request) error {
	machine, secret, err := s.generatedSecretMachine(r)
	if err != nil {
		return err
	}
	m, err := s.store.GetMachine(r.Context(), machine)
	if err != nil {
		return storeError(err, "machine", machine)
	}
	v, ok := m.GeneratedSecrets[secret]
	if !ok {
		return missingSecret("machine %q has no generated secret %q yet: its templates make it on first use, or a POST to this path makes it now", machine, secret)
	}
	writeJSON(w, http.StatusOK, api.GeneratedSecret{Machine: machine, Name: secret, Value: v})
	return nil
}

// ensureGeneratedSecret reads a machine's generated secret, making it
// first if need be (201 then), so that Terraform can hand it to other
// systems before the machine installs.
func (s *Server) ensureGeneratedSecret(w http.ResponseWriter, r *http.Request) error {
	machine, secret, err := s.generatedSecretMachine(r)
	if err != nil {
		return err
	}
	v, created, err := store.EnsureGeneratedSecret(r.Context(), s.store, machine, secret)
	if err != nil {
		return storeError(err, "machine", machine)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		s.secretEvent(r.Context(), machine, "generated secret "+secret+" made by the API")
	}
	writeJSON(w, status, api.GeneratedSecret{Machine: machine, Name: secret, Value: v})
	return nil
}

// rotateGeneratedSecret forgets a machine's generated secret: its next use
// makes a new value. Installed systems keep the old one until they are
// re-provisioned.
func (s *Server) rotateGeneratedSecret(w http.ResponseWriter, r *http.Request) error {
	machine, secret, err := s.generatedSecretMachine(r)
	if err != nil {
		return err
	}
	_, err = s.store.UpdateMachine(r.Context(), machine, func(m *model.Machine) (bool, error) {
		if _, ok := m.GeneratedSecrets[secret]; !ok {
			return false, missingSecret("machine %q has no generated secret %q", machine, secret)
		}
		delete(m.GeneratedSecrets, secret)
		return false, nil
	})
	if err != nil {
		return storeError(err, "machine", machine)
	}
	s.secretEvent(r.Context(), machine, "generated secret "+secret+" rotated: its next use makes a new value")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func missingSecret(format string, args ...any) *apiError {
	return &apiError{status: http.StatusNotFound, code: api.CodeNotFound, field: "secret", message: fmt.Sprintf(format, args...), cause: store.ErrNotFound}
}

// secretEvent records what happened to a generated secret, by name.
func (s *Server) secretEvent(ctx context.Context, machine, what string) {
	if _, err := s.store.AppendEvent(ctx, model.Event{Machine: machine, Type: model.EventGeneratedSecret, Message: what}); err != nil {
		s.log.Warn("recording generated secret event", "machine", machine, "err", err)
	}
}
