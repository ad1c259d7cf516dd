package boot

import (
	"strings"
	"testing"
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
