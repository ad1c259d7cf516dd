package boot

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/openbaremetal/terraform-provider-baremetal/internal/model"
)

// Stock snippets are the pieces the stock templates are built from
// (templates/snippets/<name>.tmpl). A site snippet of the same name
// replaces one for every template that includes it.

// StockSnippets lists the embedded snippets' names, sorted.
func StockSnippets() []string {
	entries, err := fs.ReadDir(stockFS, "templates/snippets")
	if err != nil {
		panic(err) // embedded at build time; unreachable
	}
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".tmpl"))
	}
	sort.Strings(names)
	return names
}

// StockSnippet returns the text of the embedded snippet name.
func StockSnippet(name string) (string, bool) {
	if strings.ContainsAny(name, "/\\.") {
		return "", false
	}
	b, err := stockFS.ReadFile("templates/snippets/" + name + ".tmpl")
	if err != nil {
		return "", false
	}
	return string(b), true
}

// maxIncludeDepth bounds include's recursion: a snippet that includes
// itself without end is a template error, not a stack overflow.
const maxIncludeDepth = 32

// parseWithSnippets parses text as template name together with every
// snippet it includes, transitively: site snippets first, then stock ones.
func parseWithSnippets(name, text string, fm template.FuncMap, site map[string]*model.Template) (*template.Template, error) {
	root := template.New(name).Option("missingkey=error").Funcs(fm)
	if _, err := root.Parse(text); err != nil {
		return nil, templateError(name, text, err)
	}
	queue := refsOf(root)
	for len(queue) > 0 {
		ref := queue[0]
		queue = queue[1:]
		if root.Lookup(ref) != nil {
			continue
		}
		stext, ok := snippetText(ref, site)
		if !ok {
			return nil, fmt.Errorf("template %q: snippet %q does not exist (define it with a baremetal_template, or use one of the stock snippets: %s)",
				name, ref, strings.Join(StockSnippets(), ", "))
		}
		t, err := root.New(ref).Parse(stext)
		if err != nil {
			err = templateError(ref, stext, err)
			if te, ok := err.(*TemplateError); ok {
				te.In = name
			}
			return nil, err
		}
		queue = append(queue, refsOf(t)...)
	}
	return root, nil
}

func snippetText(name string, site map[string]*model.Template) (string, bool) {
	if t, ok := site[name]; ok {
		return t.Content, true
	}
	return StockSnippet(name)
}

// refsOf lists the snippets t's trees name in {{ template "x" }} and
// {{ include "x" ... }}. Names of templates t defines itself are listed
// too; the caller skips those it finds defined.
func refsOf(t *template.Template) []string {
	var out []string
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			walkRefs(tt.Root, &out)
		}
	}
	return out
}

func walkRefs(n parse.Node, out *[]string) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, c := range n.Nodes {
				walkRefs(c, out)
			}
		}
	case *parse.TemplateNode:
		*out = append(*out, n.Name)
		if n.Pipe != nil {
			walkRefs(n.Pipe, out)
		}
	case *parse.ActionNode:
		walkRefs(n.Pipe, out)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walkRefs(c, out)
		}
	case *parse.CommandNode:
		if len(n.Args) >= 2 {
			if id, ok := n.Args[0].(*parse.IdentifierNode); ok && id.Ident == "include" {
				if s, ok := n.Args[1].(*parse.StringNode); ok {
					*out = append(*out, s.Text)
				}
			}
		}
		for _, a := range n.Args {
			walkRefs(a, out)
		}
	case *parse.IfNode:
		walkBranch(&n.BranchNode, out)
	case *parse.RangeNode:
		walkBranch(&n.BranchNode, out)
	case *parse.WithNode:
		walkBranch(&n.BranchNode, out)
	}
}

func walkBranch(b *parse.BranchNode, out *[]string) {
	walkRefs(b.Pipe, out)
	walkRefs(b.List, out)
	if b.ElseList != nil {
		walkRefs(b.ElseList, out)
	}
}

// SnippetRefs checks text's syntax as a template (or snippet) named name
// and returns the snippets it includes directly, sorted and unique. A
// syntax error is a *TemplateError.
func SnippetRefs(name, text string) ([]string, error) {
	t := template.New(name).Funcs(funcs(&RenderContext{}, nil, nil))
	if _, err := t.Parse(text); err != nil {
		return nil, templateError(name, text, err)
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range refsOf(t) {
		if !seen[r] && t.Lookup(r) == nil {
			seen[r] = true
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out, nil
}

// TemplateError is a template's syntax or execution error, located.
type TemplateError struct {
	// In is the template being rendered when the error is in a snippet it
	// includes (Template), else "".
	In       string
	Template string
	Line     int
	Column   int // 0 when unknown
	Message  string
	// NotYetKnown marks a render stopped by required: a value the
	// document needs is not known yet (a cluster's control plane has not
	// reported its address), so the text is not wrong, only early.
	NotYetKnown bool
}

// ErrNotYetKnown is what required stops a render with (errors.Is).
var ErrNotYetKnown = errors.New("not known yet")

// requiredError says which value required found missing.
type requiredError string

func (e requiredError) Error() string        { return "required: " + string(e) }
func (e requiredError) Is(target error) bool { return target == ErrNotYetKnown }

func (e *TemplateError) Error() string {
	where := fmt.Sprintf("template %q", e.Template)
	if e.In != "" {
		where = fmt.Sprintf("template %q, snippet %q", e.In, e.Template)
	}
	if e.Column > 0 {
		return fmt.Sprintf("%s line %d column %d: %s", where, e.Line, e.Column, e.Message)
	}
	return fmt.Sprintf("%s line %d: %s", where, e.Line, e.Message)
}

// text/template reports "template: NAME:LINE: msg" for syntax errors and
// "template: NAME:LINE:COL: executing "NAME" at <node>: msg" at run time.
var (
	tmplErrRE = regexp.MustCompile(`^template: (.+?):(\d+):(?:(\d+):)? (.*)$`)
	execRE    = regexp.MustCompile(`^executing "[^"]*" at <(.*?)>: (.*)$`)
	noKeyRE   = regexp.MustCompile(`^map has no entry for key "(.*)"$`)
	startedRE = regexp.MustCompile(` started at .+:(\d+)$`)
	callRE    = regexp.MustCompile(`^error calling [A-Za-z0-9_]+: (.*)$`)
)

// templateError locates a text/template error. Syntax errors carry a line
// only; the column is that of the first action on the line that does not
// parse alone, which is where the error is in every case but a missing
// {{ end }} (reported at the end of the text).
func templateError(name, text string, err error) error {
	m := tmplErrRE.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	te := &TemplateError{Template: m[1], Message: m[4], NotYetKnown: errors.Is(err, ErrNotYetKnown)}
	te.Line, _ = strconv.Atoi(m[2])
	// An unclosed action is reported where the text ends; where it starts
	// is what an author needs.
	if st := startedRE.FindStringSubmatch(te.Message); st != nil {
		te.Line, _ = strconv.Atoi(st[1])
	}
	if m[3] != "" {
		te.Column, _ = strconv.Atoi(m[3])
	} else if te.Template == name {
		te.Column = syntaxColumn(text, te.Line)
	}
	if x := execRE.FindStringSubmatch(te.Message); x != nil {
		node, msg := x[1], x[2]
		if c := callRE.FindStringSubmatch(msg); c != nil {
			msg = c[1]
			// An error inside an included snippet is located there.
			var inner *TemplateError
			if errors.As(templateError("", "", errors.New(msg)), &inner) {
				inner.NotYetKnown = errors.Is(err, ErrNotYetKnown)
				return inner
			}
		}
		if k := noKeyRE.FindStringSubmatch(msg); k != nil && strings.Contains(node, "Params") {
			msg = fmt.Sprintf("param %q is not set", k[1])
		}
		te.Message = msg
	}
	return te
}

func syntaxColumn(text string, line int) int {
	lines := strings.SplitAfter(text, "\n")
	if line < 1 || line > len(lines) {
		return 0
	}
	start := 0
	for _, l := range lines[:line-1] {
		start += len(l)
	}
	l := lines[line-1]
	fm := funcs(&RenderContext{}, nil, nil)
	for i := 0; i < len(l); {
		j := strings.Index(l[i:], "{{")
		if j < 0 {
			break
		}
		at := start + i + j
		end := strings.Index(text[at:], "}}")
		action := text[at:]
		if end >= 0 {
			action = text[at : at+end+2]
		}
		_, err := template.New("x").Funcs(fm).Parse(action)
		if err != nil && !strings.Contains(err.Error(), "unexpected EOF") {
			return i + j + 1
		}
		i += j + 2
	}
	return 0
}

// includeFunc is the "include" template function: it renders a snippet to
// a string, so its output can be piped (to indent, for example).
func includeFunc(set **template.Template) func(string, any) (string, error) {
	depth := 0
	return func(name string, data any) (string, error) {
		if depth >= maxIncludeDepth {
			return "", fmt.Errorf("include %q: more than %d nested includes", name, maxIncludeDepth)
		}
		depth++
		defer func() { depth-- }()
		var buf bytes.Buffer
		if set == nil || *set == nil {
			return "", errors.New("include is only available while rendering")
		}
		if err := (*set).ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
}
