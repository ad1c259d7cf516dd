// Package monitoring holds the agent's Grafana dashboard and Prometheus
// alert rules; its tests check them with promtool and against the metrics
// the agent's code registers.
package monitoring

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

const (
	rulesFile     = "baremetal-agent.rules.yml"
	rulesTestFile = "baremetal-agent.rules_test.yml"
	dashboardFile = "grafana-dashboard.json"
)

// promtool finds Debian's promtool (package prometheus). make test sets
// BAREMETAL_REQUIRE_TOOLS so that a missing promtool fails there instead
// of skipping.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("BAREMETAL_REQUIRE_TOOLS") != "" {
			t.Fatal("promtool not found: apt-get install --no-install-recommends prometheus")
		}
		t.Skip("promtool not found (Debian package prometheus)")
	}
	return p
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestAlertRules(t *testing.T) {
	runPromtool(t, "check", "rules", rulesFile)
	// Each alert fires on the series meant to trigger it and not on
	// healthy ones.
	runPromtool(t, "test", "rules", rulesTestFile)
}

type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name  string `yaml:"name"`
	Rules []rule `yaml:"rules"`
}

type rule struct {
	Alert  string `yaml:"alert,omitempty"`
	Record string `yaml:"record,omitempty"`
	Expr   string `yaml:"expr"`
}

type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(data, &d))
	return d
}

// dashboardExprs returns every panel query with Grafana's variables
// replaced by values Prometheus accepts.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	vars := strings.NewReplacer("$__rate_interval", "5m", "$job", "baremetal-agent", "$instance", ".*")
	out := map[string]string{}
	for _, p := range loadDashboard(t).Panels {
		if p.Type == "row" {
			continue
		}
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for i, tg := range p.Targets {
			require.NotEmpty(t, tg.Expr, "panel %q query %d is empty", p.Title, i)
			out[p.Title+" #"+strconv.Itoa(i)] = vars.Replace(tg.Expr)
		}
	}
	return out
}

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	assert.Equal(t, "baremetal-agent", d.UID)
	ids := map[int]bool{}
	for _, p := range d.Panels {
		assert.False(t, ids[p.ID], "panel id %d used twice", p.ID)
		ids[p.ID] = true
	}

	// promtool parses rule expressions, so the panel queries, written out
	// as recording rules, get Prometheus's own PromQL parser.
	var rules []rule
	exprs := dashboardExprs(t)
	for _, title := range slices.Sorted(maps.Keys(exprs)) {
		rules = append(rules, rule{Record: "dashboard:panel_" + strconv.Itoa(len(rules)), Expr: exprs[title]})
	}
	rf := ruleFile{Groups: []ruleGroup{{Name: "dashboard", Rules: rules}}}
	data, err := yaml.Marshal(rf)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	runPromtool(t, "check", "rules", path)
}

// TestMetricNames keeps the dashboard and the rules in step with the code:
// every agent metric they query is one the agent registers, and every
// metric the agent registers has a panel.
func TestMetricNames(t *testing.T) {
	registered := registeredMetrics(t)
	require.NotEmpty(t, registered)

	var rf ruleFile
	data, err := os.ReadFile(rulesFile)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(data, &rf))
	queries := map[string]string{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			queries["rule "+r.Alert] = r.Expr
		}
	}
	for title, e := range dashboardExprs(t) {
		queries["panel "+title] = e
	}

	name := regexp.MustCompile(`\bbaremetal_[a-z_]+\b`)
	onDashboard := map[string]bool{}
	for where, q := range queries {
		for _, m := range name.FindAllString(q, -1) {
			base := m
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(m, suffix); ok && registered[b] {
					base = b
				}
			}
			assert.True(t, registered[base], "%s queries %s, which the agent does not register", where, m)
			if strings.HasPrefix(where, "panel ") {
				onDashboard[base] = true
			}
		}
	}
	for m := range registered {
		assert.True(t, onDashboard[m], "the agent registers %s but the dashboard has no panel for it", m)
	}
}

// registeredMetrics reads the metric names from the prometheus.*Opts
// literals in the agent's code (internal/*/metrics.go and the assembly's
// own build_info and token-file gauge), joining Namespace, Subsystem and Name as the client does.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("../internal/*/metrics.go")
	require.NoError(t, err)
	files = append(files, "../internal/agentd/agentd.go")
	out := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, 0)
		require.NoError(t, err)
		ast.Inspect(file, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			sel, ok := lit.Type.(*ast.SelectorExpr)
			if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
				return true
			}
			parts := map[string]string{}
			for _, el := range lit.Elts {
				kv, ok := el.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				key, _ := kv.Key.(*ast.Ident)
				val, _ := kv.Value.(*ast.BasicLit)
				if key == nil || val == nil || val.Kind != token.STRING {
					continue
				}
				s, err := strconv.Unquote(val.Value)
				require.NoError(t, err)
				parts[key.Name] = s
			}
			var name []string
			for _, k := range []string{"Namespace", "Subsystem", "Name"} {
				if parts[k] != "" {
					name = append(name, parts[k])
				}
			}
			if len(name) > 0 {
				out[strings.Join(name, "_")] = true
			}
			return true
		})
	}
	return out
}
