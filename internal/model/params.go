package model

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

// Site holds what applies to every machine of the agent: params below
// every profile's, cluster's and machine's, and secret params likewise.
type Site struct {
	Params map[string]string `json:"params,omitempty"`
	// SecretParams are sealed at rest and never serialised (see Secrets).
	SecretParams    Secrets   `json:"-"`
	SecretsRevision uint64    `json:"secrets_revision,omitempty"`
	Version         uint64    `json:"version"`
	UpdatedAt       time.Time `json:"updated_at,omitzero"`
}

// Secrets maps secret names to values: secret params, which templates read
// with {{ secret "name" }}, and generated secrets. They are tagged json:"-"
// wherever they appear, so no JSON of an object (on disk, in an event, in a
// log line) carries one; the store seals them beside the object.
type Secrets map[string]string

// Names returns the names, sorted: what may be shown of secrets.
func (s Secrets) Names() []string {
	return slices.Sorted(maps.Keys(s))
}

// SecretNameRE is what a secret's name may be (see api.SecretNameRE).
var SecretNameRE = api.SecretNameRE

// Param layers, lowest precedence first: a machine's templates see the
// site's params, overridden by its profile's, by its cluster's, and by its
// own.
const (
	LayerSite    = "site"
	LayerProfile = "profile"
	LayerCluster = "cluster"
	LayerMachine = "machine"
)

// ParamLayers are the params (or secret params) of a machine's four
// layers; a nil map is an empty layer.
type ParamLayers struct {
	Site, Profile, Cluster, Machine map[string]string
}

// ordered returns the layers lowest first, with their names.
func (l ParamLayers) ordered() ([4]string, [4]map[string]string) {
	return [4]string{LayerSite, LayerProfile, LayerCluster, LayerMachine},
		[4]map[string]string{l.Site, l.Profile, l.Cluster, l.Machine}
}

// Effective merges the layers by precedence (site < profile < cluster <
// machine) and says which layer each value came from.
func (l ParamLayers) Effective() (values, sources map[string]string) {
	values, sources = map[string]string{}, map[string]string{}
	names, layers := l.ordered()
	for i, layer := range layers {
		for k, v := range layer {
			values[k], sources[k] = v, names[i]
		}
	}
	return values, sources
}

// SiteContribution is the part of the site layer a machine actually sees:
// the site params no higher layer overrides. Only a change of these
// changes what the machine renders.
func (l ParamLayers) SiteContribution() map[string]string {
	out := map[string]string{}
	for k, v := range l.Site {
		if _, ok := l.Profile[k]; ok {
			continue
		}
		if _, ok := l.Cluster[k]; ok {
			continue
		}
		if _, ok := l.Machine[k]; ok {
			continue
		}
		out[k] = v
	}
	return out
}

// NewGeneratedSecret is a value for {{ generatedSecret }}: 32 random bytes
// (256 bits), base64url without padding, so it is one word in a shell, a
// kickstart, a preseed line, YAML or a URL.
func NewGeneratedSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// SiteAndSecrets is what the site params and the secret params add to what
// machine m installs with profile p (and cluster c, nil for none): the
// site params no higher layer overrides, and for each effective secret
// param the layer it comes from with that layer's secrets revision (a
// counter, so no secret is hashed). The reconciler folds it into the
// machine's params hash, so a change of it re-provisions m; it is nil when
// there is neither, so machines of an agent without them keep their hash.
func SiteAndSecrets(site *Site, p *BootProfile, c *Cluster, m *Machine) map[string]any {
	layers := ParamLayers{Site: site.Params, Profile: p.Params, Machine: m.Params}
	secrets := ParamLayers{Site: site.SecretParams, Profile: p.SecretParams, Machine: m.SecretParams}
	revs := map[string]uint64{LayerSite: site.SecretsRevision, LayerProfile: p.SecretsRevision, LayerMachine: m.SecretsRevision}
	if c != nil {
		layers.Cluster, secrets.Cluster, revs[LayerCluster] = c.Params, c.SecretParams, c.SecretsRevision
	}
	fromSite := layers.SiteContribution()
	_, sources := secrets.Effective()
	if len(fromSite) == 0 && len(sources) == 0 {
		return nil
	}
	secretRevs := make(map[string]string, len(sources))
	for name, layer := range sources {
		secretRevs[name] = fmt.Sprintf("%s:%d", layer, revs[layer])
	}
	return map[string]any{"site_params": fromSite, "secret_params": secretRevs}
}
