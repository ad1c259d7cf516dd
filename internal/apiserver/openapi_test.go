package apiserver

import (
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/api"
)

type openAPIDoc struct {
	OpenAPI    string                          `yaml:"openapi"`
	Paths      map[string]map[string]yaml.Node `yaml:"paths"`
	Components struct {
		Schemas map[string]struct {
			Properties map[string]yaml.Node `yaml:"properties"`
		} `yaml:"schemas"`
	} `yaml:"components"`
}

func loadOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := yaml.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	return doc
}

// TestOpenAPIMatchesRoutes fails when a route is served but not documented,
// or documented but not served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	methods := map[string]bool{"get": true, "put": true, "post": true, "delete": true, "patch": true, "head": true, "options": true}
	var documented, served []string
	for path, item := range doc.Paths {
		for key := range item {
			if methods[key] {
				documented = append(documented, strings.ToUpper(key)+" "+path)
			}
		}
	}
	for _, rt := range routes {
		served = append(served, rt.method+" "+rt.path)
	}
	sort.Strings(documented)
	sort.Strings(served)
	for _, d := range documented {
		if !slices.Contains(served, d) {
			t.Errorf("openapi.yaml documents %s, which the server does not serve", d)
		}
	}
	for _, s := range served {
		if !slices.Contains(documented, s) {
			t.Errorf("the server serves %s, which openapi.yaml does not document", s)
		}
	}
}

// TestOpenAPISchemasMatchTypes keeps each schema's properties equal to the
// JSON fields of the Go type it describes.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	types := map[string]any{
		"Info": api.Info{}, "ErrorBody": api.ErrorBody{}, "ErrorDetail": api.ErrorDetail{},
		"BMCRequest": api.BMCRequest{}, "BMCInfo": api.BMCInfo{}, "MachineRequest": api.MachineRequest{},
		"Machine": api.Machine{}, "MachineList": api.MachineList{}, "ActionResponse": api.ActionResponse{},
		"BootProfileRequest": api.BootProfileRequest{}, "BootProfile": api.BootProfile{}, "BootProfileList": api.BootProfileList{},
		"TemplateRequest": api.TemplateRequest{}, "Template": api.Template{}, "TemplateList": api.TemplateList{},
		"RenderedTemplate": api.RenderedTemplate{}, "SiteParamsRequest": api.SiteParamsRequest{}, "SiteParams": api.SiteParams{},
		"GeneratedSecret": api.GeneratedSecret{},
		"ClusterMember":   api.ClusterMember{}, "ClusterRole": api.ClusterRole{}, "Rollout": api.Rollout{},
		"ClusterRequest": api.ClusterRequest{}, "ClusterMemberStatus": api.ClusterMemberStatus{}, "Cluster": api.Cluster{},
		"ClusterList": api.ClusterList{}, "EventList": api.EventList{}, "Event": api.Event{},
		"Inventory": api.Inventory{}, "NIC": api.NIC{}, "Disk": api.Disk{}, "Status": statusBody{},
	}
	for name, v := range types {
		schema, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("openapi.yaml has no schema %s", name)
			continue
		}
		var want, got []string
		for f := range jsonFields(reflect.TypeOf(v)) {
			want = append(want, f)
		}
		for p := range schema.Properties {
			got = append(got, p)
		}
		sort.Strings(want)
		sort.Strings(got)
		if !slices.Equal(want, got) {
			t.Errorf("schema %s has properties %v, the Go type has %v", name, got, want)
		}
	}
}

// TestOpenAPINamesEveryEventType keeps the documented event vocabulary
// the one the agent records.
func TestOpenAPINamesEveryEventType(t *testing.T) {
	doc := loadOpenAPI(t)
	node, ok := doc.Components.Schemas["Event"].Properties["type"]
	require.True(t, ok, "schema Event has no property type")
	var typ struct {
		Description string `yaml:"description"`
	}
	require.NoError(t, node.Decode(&typ))
	for _, e := range api.EventTypes {
		assert.Regexp(t, `\b`+e+`\b`, typ.Description, "Event.type does not name %s", e)
	}
}

// TestOpenAPIEnumsMatchVocabulary keeps the document's enums on the values
// internal/api declares, so the two cannot drift apart.
func TestOpenAPIEnumsMatchVocabulary(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Enum       []string `yaml:"enum"`
				Properties map[string]struct {
					Enum []string `yaml:"enum"`
				} `yaml:"properties"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	require.NoError(t, yaml.Unmarshal(OpenAPI, &doc))
	schemas := doc.Components.Schemas
	assert.Equal(t, api.Strings(api.DesiredStates), schemas["DesiredState"].Enum, "DesiredState")
	assert.Equal(t, api.Strings(api.MachinePhases), schemas["Phase"].Enum, "Phase")
	assert.Equal(t, api.Strings(api.BootModes), schemas["BootMode"].Enum, "BootMode")
	assert.Equal(t, api.Strings(api.ClusterPhases), schemas["Cluster"].Properties["phase"].Enum, "Cluster.phase")
}
