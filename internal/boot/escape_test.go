package boot

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

func TestEscapers(t *testing.T) {
	tests := []struct {
		name    string
		f       func(string) (string, error)
		in      string
		want    string
		refused string
	}{
		{"shell plain", shellQuote, "a b", "'a b'", ""},
		{"shell quote", shellQuote, "it's", `'it'\''s'`, ""},
		{"shell newline", shellQuote, "a\nb", "", "contains a line break"},
		{"ks plain", ksQuote, "Europe/Paris", `"Europe/Paris"`, ""},
		{"ks quotes and backslash", ksQuote, `a"b\c`, `"a\"b\\c"`, ""},
		{"ks U+2028", ksQuote, "a\u2028%pre", "", "contains a line break"},
		{"ks NEL", ksQuote, "a\u0085b", "", "contains a line break"},
		{"ks DEL", ksQuote, "a\x7fb", "", "control character U+007F"},
		{"ks invalid UTF-8", ksQuote, "a\xffb", "", "not valid UTF-8"},
		{"preseed plain", preseedValue, "deb.debian.org", "deb.debian.org", ""},
		{"preseed CR", preseedValue, "a\rb", "", "contains a line break"},
		{"preseed trailing backslash", preseedValue, `a\`, "", "ends with a backslash"},
		{"kernel plain", kernelArg, "ttyS0", "ttyS0", ""},
		{"kernel spaces", kernelArg, "a b", `"a b"`, ""},
		{"kernel quote", kernelArg, `a"b`, "", "double quote"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.f(tt.in)
			if tt.refused != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.refused)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestToJSONIsYAMLSafe(t *testing.T) {
	got, err := toJSON(map[string]string{"k": "a\x7fb\u0085c\u009bd\ufeffe"})
	require.NoError(t, err)
	assert.Equal(t, `{"k":"a\u007fb\u0085c\u009bd\ufeffe"}`, got)
}

func TestRefusalNamesParamNotValue(t *testing.T) {
	refused := &errRefused{why: "contains a line break", format: "one line"}
	for _, tt := range []struct {
		name    string
		params  map[string]string
		secrets []string
		want    string
	}{
		{"one param", map[string]string{"disk": "x\nsecret", "other": "y"}, nil, `param "disk" contains a line break; one line`},
		{"two params", map[string]string{"disk": "x\nsecret", "root": "x\nsecret"}, nil, `param "disk", param "root" contains a line break; one line`},
		{"a secret", map[string]string{"other": "y"}, []string{"join_token"}, `secret "join_token" contains a line break; one line`},
		{"nobody's", nil, nil, `a value contains a line break; one line`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.EqualError(t, paramRefusal(tt.params, tt.secrets, "x\nsecret", refused), tt.want)
		})
	}
}

// TestSnippets: a site snippet replaces the stock one of its name, include
// pipes into indent, and errors are located in the snippet.
func TestSnippets(t *testing.T) {
	s := testRenderServer(t)
	site := map[string]*model.Template{
		"kickstart-partitioning": {Name: "kickstart-partitioning", Content: "\nautopart --type=plain"},
		"list":                   {Name: "list", Content: "a: 1\nb: {{ .Params.b }}"},
		"loop":                   {Name: "loop", Content: `{{ include "loop" . }}`},
	}
	in := stockInput(baseParams())
	in.snippets = site
	out, _, err := s.renderTemplate(in, "kickstart")
	require.NoError(t, err)
	assert.Contains(t, out, "\nautopart --type=plain\n")
	assert.NotContains(t, out, "autopart --type=lvm")

	in.profile.Templates = map[string]string{"y": "top:\n{{ include \"list\" . | indent 2 }}", "loop": `{{ include "loop" . }}`}
	in.machine.Params = map[string]string{"b": "2"}
	out, _, err = s.renderTemplate(in, "y")
	require.NoError(t, err)
	assert.Equal(t, "top:\n  a: 1\n  b: 2", out)

	in.machine.Params = nil
	_, _, err = s.renderTemplate(in, "y")
	assert.ErrorContains(t, err, `template "y", snippet "list" line 2 column 13: param "b" is not set`)
	_, _, err = s.renderTemplate(in, "loop")
	assert.ErrorContains(t, err, "nested includes")
}
