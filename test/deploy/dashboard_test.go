// Package deploy_test keeps deploy/ from rotting: the example
// configuration files load through each daemon's real configuration
// parser, the systemd units verify, and every metric the Grafana dashboard
// queries is exported by a real daemon of a running cluster.
package deploy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// repoFile is the path of a file of the repository (the test runs in
// test/deploy).
func repoFile(t testing.TB, rel string) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root not found above test/deploy: %v", err)
	}
	return filepath.Join(root, rel)
}

// dashboard is the part of a Grafana dashboard the tests look at.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type variable struct {
	Name  string          `json:"name"`
	Type  string          `json:"type"`
	Query json.RawMessage `json:"query"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource json.RawMessage          `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

func loadDashboard(t testing.TB) dashboard {
	t.Helper()
	b, err := os.ReadFile(repoFile(t, "deploy/grafana/strata.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("deploy/grafana/strata.json: %v", err)
	}
	return d
}

// allPanels flattens rows.
func (d dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// queries are every PromQL expression of the dashboard: panel targets and
// the metrics of label_values() variable queries.
func (d dashboard) queries(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		if json.Unmarshal(v.Query, &q) != nil {
			var obj struct{ Query string }
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				t.Fatalf("variable %s: query is neither a string nor {query: ...}: %s", v.Name, v.Query)
			}
			q = obj.Query
		}
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Fatalf("variable %s: want label_values(<metric selector>, <label>), got %q", v.Name, q)
		}
		out = append(out, m[1])
	}
	return out
}

var labelValues = regexp.MustCompile(`^\s*label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)

var (
	strLiteral = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	matchers   = regexp.MustCompile(`\{[^{}]*\}`)
	ranges     = regexp.MustCompile(`\[[^\]]*\]`)
	labelLists = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	variables  = regexp.MustCompile(`\$\{?\w+\}?`)
	identifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// keywords of PromQL that look like metric names.
var keywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "and": true, "or": true, "unless": true, "offset": true, "inf": true, "nan": true,
}

// metricNames returns the metric names a PromQL expression selects:
// identifiers that are not functions, keywords, label names (in
// matchers, by/on lists) or Grafana variables.
func metricNames(expr string) []string {
	s := strLiteral.ReplaceAllString(expr, `""`)
	s = matchers.ReplaceAllString(s, " ")
	s = ranges.ReplaceAllString(s, " ")
	s = labelLists.ReplaceAllString(s, " ")
	s = variables.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range identifier.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // the exponent or unit of a number: 1e-3
		}
		if keywords[strings.ToLower(name)] {
			continue
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function or an aggregation
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// dashboardMetrics are the metric names of every dashboard query, sorted.
func dashboardMetrics(t testing.TB, d dashboard) []string {
	t.Helper()
	seen := map[string]bool{}
	for _, q := range d.queries(t) {
		for _, n := range metricNames(q) {
			seen[n] = true
		}
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`histogram_quantile(0.99, sum by (le, instance) (rate(foo_seconds_bucket{a="b", c=~"$x"}[$__rate_interval])))`, []string{"foo_seconds_bucket"}},
		{`max by (tenant_id, timeline_id) (a_lsn{t=~"$t"}) - on (tenant_id, timeline_id) max by (tenant_id, timeline_id) (b_lsn)`, []string{"a_lsn", "b_lsn"}},
		{`clamp_min(a - b, 0)`, []string{"a", "b"}},
		{`time() - c_seconds{l="v}"}`, []string{"c_seconds"}},
		{`sum(x_total) - sum without (job) (y_total) > bool 1e-3`, []string{"x_total", "y_total"}},
		{`rate(z[5m] offset 1h)`, []string{"z"}},
		{`up`, []string{"up"}},
		{`a_total and on() vector(1)`, []string{"a_total"}},
	} {
		if got := metricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("metricNames(%s) = %q, want %q", c.expr, got, c.want)
		}
	}
}

// The dashboard is well formed: unique panel ids, every graph queries the
// dashboard's data source variable with at least one expression, panels
// fit the 24-column grid, and it covers every daemon.
func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are needed to import and link the dashboard", d.UID, d.Title)
	}
	if !slices.ContainsFunc(d.Templating.List, func(v variable) bool { return v.Name == "datasource" && v.Type == "datasource" }) {
		t.Error(`no "datasource" variable: panels could not choose the Prometheus to query`)
	}
	ids := map[int]string{}
	graphs := 0
	for _, p := range d.allPanels() {
		if prev, ok := ids[p.ID]; ok {
			t.Errorf("panel id %d used by %q and %q", p.ID, prev, p.Title)
		}
		ids[p.ID] = p.Title
		if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
			t.Errorf("panel %q: gridPos %+v does not fit the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		graphs++
		if !strings.Contains(string(p.Datasource), "${datasource}") {
			t.Errorf("panel %q: data source %s, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || len(metricNames(tg.Expr)) == 0 {
				t.Errorf("panel %q: query %s %q selects no metric", p.Title, tg.RefID, tg.Expr)
			}
			if refs[tg.RefID] {
				t.Errorf("panel %q: refId %s twice", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
		}
	}
	names := dashboardMetrics(t, d)
	for _, prefix := range []string{"safekeeper_", "walproposer_", "pageserver_wal_redo_", "pageserver_smgr_", "pageserver_wait_lsn_", "pageserver_layer_", "pageserver_wal_ingest_"} {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, prefix) }) {
			t.Errorf("no panel queries a %s* metric", prefix)
		}
	}
	t.Logf("%d graphs querying %d metrics", graphs, len(names))
}
