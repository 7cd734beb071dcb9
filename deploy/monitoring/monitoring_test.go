// Tests of the monitoring files (netd-alerts.yaml, netd-dashboard.json):
// every metric they read is one netd exports (derived from the code and
// from the daemon's registry, never from a list), every alert has a
// promtool unit test, and every dashboard query is valid PromQL. CI also
// runs `promtool check rules` and `promtool test rules` on them.
package monitoring_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ducksnest/netd/internal/testutil"
)

// prometheusSeries are the series Prometheus itself makes, which the files
// may read besides netd's.
var prometheusSeries = map[string]string{
	"up":     "recorded by Prometheus for every scrape target",
	"ALERTS": "Prometheus' series of pending and firing alerts",
}

type query struct {
	where string // "netd-alerts.yaml: alert NetdDown"
	expr  string
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert  string `yaml:"alert"`
			Record string `yaml:"record"`
			Expr   string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	data, err := os.ReadFile("netd-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(data, &rf); err != nil {
		t.Fatalf("netd-alerts.yaml: %v", err)
	}
	return rf
}

func ruleQueries(t *testing.T) []query {
	t.Helper()
	var out []query
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			out = append(out, query{fmt.Sprintf("netd-alerts.yaml: alert %s%s", r.Alert, r.Record), r.Expr})
		}
	}
	if len(out) == 0 {
		t.Fatal("netd-alerts.yaml has no rules")
	}
	return out
}

// dashboardQueries returns every PromQL expression of the dashboard: the
// panels' targets (rows' nested panels too), the annotation queries, and
// the query variables (label_values(EXPR, label) gives EXPR).
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	data, err := os.ReadFile("netd-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID         string  `json:"uid"`
		Panels      []panel `json:"panels"`
		Annotations struct {
			List []struct {
				Name string `json:"name"`
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("netd-dashboard.json: %v", err)
	}
	if d.UID == "" {
		t.Error("netd-dashboard.json has no uid (provisioning keys dashboards by it)")
	}
	var out []query
	ids := map[int]string{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup {
				t.Errorf("netd-dashboard.json: panels %q and %q share id %d", prev, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Errorf("netd-dashboard.json: panel %q has a target without expr", p.Title)
				}
				out = append(out, query{fmt.Sprintf("netd-dashboard.json: panel %q", p.Title), tg.Expr})
			}
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("netd-dashboard.json: panel %q has no query", p.Title)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			out = append(out, query{fmt.Sprintf("netd-dashboard.json: annotation %q", a.Name), a.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				t.Errorf("netd-dashboard.json: variable %s: query is neither a string nor an object", v.Name)
				continue
			}
		}
		expr := q.Query
		if inner, ok := strings.CutPrefix(expr, "label_values("); ok {
			// label_values(EXPR, label): the label is not a metric.
			if i := strings.LastIndex(inner, ","); i >= 0 {
				expr = inner[:i]
			}
		}
		out = append(out, query{fmt.Sprintf("netd-dashboard.json: variable %s", v.Name), expr})
	}
	if len(out) == 0 {
		t.Fatal("netd-dashboard.json has no queries")
	}
	return out
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr       string `json:"expr"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// TestDashboardLayout: every panel lies inside Grafana's 24 columns
// without overlapping another, and every panel and query reads the
// dashboard's data source variable (so the dashboard works with whatever
// the Prometheus data source is called).
func TestDashboardLayout(t *testing.T) {
	data, err := os.ReadFile("netd-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
				Type string `json:"type"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	dsVar := ""
	for _, v := range d.Templating.List {
		if v.Type == "datasource" {
			dsVar = "${" + v.Name + "}"
		}
	}
	if dsVar == "" {
		t.Fatal("no data source variable")
	}
	var all []panel
	var flatten func([]panel)
	flatten = func(ps []panel) {
		for _, p := range ps {
			all = append(all, p)
			flatten(p.Panels)
		}
	}
	flatten(d.Panels)
	for i, p := range all {
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24 columns", p.Title, g)
		}
		for _, q := range all[:i] {
			o := q.GridPos
			if g.X < o.X+o.W && o.X < g.X+g.W && g.Y < o.Y+o.H && o.Y < g.Y+g.H {
				t.Errorf("panels %q %+v and %q %+v overlap", q.Title, o, p.Title, g)
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != dsVar {
			t.Errorf("panel %q does not use the data source variable %s", p.Title, dsVar)
		}
		for _, tg := range p.Targets {
			if tg.Datasource != nil && tg.Datasource.UID != dsVar {
				t.Errorf("panel %q: a query uses data source %q, not %s", p.Title, tg.Datasource.UID, dsVar)
			}
		}
	}
}

// TestOnlyExportedMetrics: the alert rules and the dashboard read only
// metrics netd exports (and the series Prometheus makes).
func TestOnlyExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	for _, want := range []string{"process_resident_memory_bytes", "process_start_time_seconds"} {
		if _, ok := exported[want]; !ok {
			t.Errorf("%s is not among the exported metrics: the daemon's registry lost its process collector?", want)
		}
	}
	used := map[string]bool{}
	for _, q := range slices.Concat(ruleQueries(t), dashboardQueries(t)) {
		names, err := metricNames(q.expr)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: reads no metric: %s", q.where, q.expr)
		}
		for _, n := range names {
			used[n] = true
			if _, ok := exported[n]; ok {
				continue
			}
			if _, ok := prometheusSeries[n]; ok {
				continue
			}
			t.Errorf("%s reads %s, which netd does not export (%s)", q.where, n, near(n, exported))
		}
	}
	var unused []string
	for n := range exported {
		if strings.HasPrefix(n, "netd_") && !used[n] && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_count") {
			unused = append(unused, n)
		}
	}
	sort.Strings(unused)
	t.Logf("%d of %d exported series names read by the rules and the dashboard; netd_ series read nowhere: %v", len(used), len(exported), unused)
}

// near names the exported metrics sharing the name's first two words, to
// make a typo obvious.
func near(name string, exported map[string]string) string {
	parts := strings.SplitN(name, "_", 3)
	prefix := strings.Join(parts[:min(2, len(parts))], "_") + "_"
	var out []string
	for n := range exported {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "no exported metric starts with " + prefix
	}
	return "exported with that prefix: " + strings.Join(out, ", ")
}

// TestEveryAlertTested: every alert of netd-alerts.yaml is expected to
// fire in some test of tests/ (promtool test rules runs them in CI).
func TestEveryAlertTested(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("tests", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule tests in tests/ (%v)", err)
	}
	fires := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var tf struct {
			RuleFiles []string `yaml:"rule_files"`
			Tests     []struct {
				AlertRuleTest []struct {
					Alertname string           `yaml:"alertname"`
					ExpAlerts []map[string]any `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		if err := yaml.Unmarshal(data, &tf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !slices.Contains(tf.RuleFiles, "../netd-alerts.yaml") {
			t.Errorf("%s does not load ../netd-alerts.yaml", f)
		}
		for _, tc := range tf.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				}
			}
		}
	}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert != "" && !fires[r.Alert] {
				t.Errorf("alert %s has no test in which it fires (tests/*.yaml)", r.Alert)
			}
		}
	}
}

// grafanaVars are what the dashboard's variables stand for when its queries
// are checked as PromQL.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m", "${__rate_interval}", "5m", "$__interval", "1m", "$__range", "1h",
	"${instance}", ".*", "$instance", ".*",
)

// TestDashboardQueriesParse: every query of the dashboard is valid PromQL
// to promtool (its variables replaced), checked as one recording rule each.
func TestDashboardQueriesParse(t *testing.T) {
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		promtool = testutil.NeedBinary(t, "promtool", `eval "$(bash scripts/promtool.sh)"`)
	}
	var rf struct {
		Groups []map[string]any `yaml:"groups"`
	}
	var rules []map[string]string
	qs := dashboardQueries(t)
	for i, q := range qs {
		expr := grafanaVars.Replace(q.expr)
		if strings.Contains(expr, "$") {
			t.Errorf("%s: a Grafana variable the check does not know: %s", q.where, q.expr)
		}
		rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:query%d", i), "expr": expr})
	}
	rf.Groups = []map[string]any{{"name": "dashboard", "rules": rules}}
	data, err := yaml.Marshal(rf)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Errorf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
		for i, q := range qs {
			if strings.Contains(string(out), fmt.Sprintf("dashboard:query%d\"", i)) {
				t.Errorf("dashboard:query%d is %s: %s", i, q.where, q.expr)
			}
		}
	}
}
