package boot

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// Stock templates ship inside the agent. A profile uses one by giving a
// template (or its ipxe_script) the exact content "stock:<name>"; anything
// else is the template text itself.
//
//go:embed templates/*.tmpl templates/snippets/*.tmpl
var stockFS embed.FS

// StockPrefix marks a profile template that names a stock template.
const StockPrefix = "stock:"

// StockTemplates lists the embedded templates' names, sorted.
func StockTemplates() []string {
	entries, err := fs.ReadDir(stockFS, "templates")
	if err != nil {
		panic(err) // embedded at build time; unreachable
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, strings.TrimSuffix(e.Name(), ".tmpl"))
		}
	}
	sort.Strings(names)
	return names
}

// StockTemplate returns the text of the embedded template name.
func StockTemplate(name string) (string, bool) {
	if strings.ContainsAny(name, "/\\.") {
		return "", false
	}
	b, err := stockFS.ReadFile("templates/" + name + ".tmpl")
	if err != nil {
		return "", false
	}
	return string(b), true
}

// resolveTemplateText returns the template text a profile field denotes.
func resolveTemplateText(content string) (string, error) {
	if !strings.HasPrefix(content, StockPrefix) {
		return content, nil
	}
	name := strings.TrimSpace(strings.TrimPrefix(content, StockPrefix))
	text, ok := StockTemplate(name)
	if !ok {
		return "", fmt.Errorf("unknown stock template %q (stock templates: %s)", name, strings.Join(StockTemplates(), ", "))
	}
	return text, nil
}
