package boot

import (
	"strings"
	"testing"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// FuzzStockTemplateParams renders every stock install template with an
// arbitrary value in an arbitrary param and asserts, with the real
// parsers (pykickstart; the debconf format as debconf-set-selections
// reads it; YAML; JSON and Ignition's), that the value is refused naming the param or adds no command,
// section, question or key and arrives unchanged.
func FuzzStockTemplateParams(f *testing.F) {
	// Each injection once, through a different param each time; the
	// tests above cross them all.
	i := 0
	for _, v := range injections {
		f.Add(uint8(i), v)
		i++
	}
	s := testRenderServer(f)
	bases := map[string]string{}
	tmpls := []string{"kickstart", "preseed", "ubuntu-autoinstall", "lab-user-data", "ignition"}
	for _, tmpl := range tmpls {
		base, _, err := s.renderTemplate(stockInput(baseParams()), tmpl)
		if err != nil {
			f.Fatal(err)
		}
		bases[tmpl] = base
	}
	f.Fuzz(func(t *testing.T, which uint8, value string) {
		param := stockParams[int(which)%len(stockParams)]
		if value == "" {
			// An empty optional param drops the one command it feeds
			// (no disk: no ignoredisk); that is the template's meaning,
			// not an injection.
			return
		}
		p := baseParams()
		p[param] = value
		for _, tmpl := range tmpls {
			out, _, err := s.renderTemplate(stockInput(p), tmpl)
			if err != nil {
				if !strings.Contains(err.Error(), `param "`+param+`"`) {
					t.Fatalf("%s: an error that does not name the param %s: %v", tmpl, param, err)
				}
				continue
			}
			c := injCase{tmpl: tmpl, param: param, value: value, out: out}
			var ks, ksBase ksParsed
			if tmpl == "kickstart" {
				parsed := pykickstartParse(t, bases[tmpl], out)
				ksBase, ks = parsed[0], parsed[1]
			}
			checkAccepted(t, c, bases[tmpl], ks, ksBase)
		}
	})
}

// FuzzTemplateText: any template text an operator saves is parsed and,
// when it does not parse, located without panicking; when it does, it
// renders for a machine or fails with an error, never a crash.
func FuzzTemplateText(f *testing.F) {
	for _, seed := range []string{
		"rootpw {{ .Params.x\n", "a\n{{ if }}", "{{ nosuch }}", `{{ template "loop" . }}`, `{{ include "loop" . | indent 2 }}`,
		"{{ define \"d\" }}x{{ end }}{{ template \"d\" . }}", "{{ end }}", "{{ ksQuote .Params.disk }}", "{{/* unclosed",
	} {
		f.Add(seed)
	}
	s := testRenderServer(f)
	f.Fuzz(func(t *testing.T, text string) {
		if _, err := SnippetRefs("t", text); err != nil {
			return
		}
		in := stockInput(baseParams())
		in.profile.Templates = map[string]string{"t": text}
		in.snippets = map[string]*model.Template{"loop": {Name: "loop", Content: `{{ include "loop" . }}`}}
		_, _, _ = s.renderTemplate(in, "t")
	})
}
