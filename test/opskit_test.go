package test

// The operations kit in deploy/: the Prometheus alert rules (checked and
// unit-tested with promtool) and the Grafana dashboard (its JSON model). The
// end-to-end proof that every query works against a real sidecar is
// TestOpsKitAgainstPrometheus (opskit_e2e_test.go).

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const (
	alertsFile     = "../deploy/prometheus/alerts.yaml"
	alertTestsFile = "../deploy/prometheus/alerts_test.yaml"
	dashboardFile  = "../deploy/grafana/oidc-sidecar.json"
)

// ---------------------------------------------------------------------------
// Alert rules.

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type alertRule struct {
	Name, Expr  string
	Labels      map[string]string
	Annotations map[string]string
}

func loadAlerts(t testing.TB, path string) []alertRule {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []alertRule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, alertRule{Name: r.Alert, Expr: r.Expr, Labels: r.Labels, Annotations: r.Annotations})
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no alert rules", path)
	}
	return out
}

func runPromtool(t testing.TB, promtool string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(promtool, args...)
	cmd.Dir = filepath.Dir(alertsFile)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestAlertRules: promtool accepts the rules and passes their unit tests;
// every alert is a runbook (severity, summary, description with what to
// check first) and has a unit test in which it fires; and the unit tests
// can fail: a rule whose threshold is broken makes promtool fail.
func TestAlertRules(t *testing.T) {
	promtool := needTool(t, "promtool", "prometheus")
	if out, err := runPromtool(t, promtool, "check", "rules", filepath.Base(alertsFile)); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if out, err := runPromtool(t, promtool, "test", "rules", filepath.Base(alertTestsFile)); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}

	alerts := loadAlerts(t, alertsFile)
	for _, a := range alerts {
		if s := a.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", a.Name, s)
		}
		if len(a.Annotations["summary"]) < 20 {
			t.Errorf("%s: no summary annotation", a.Name)
		}
		if d := a.Annotations["description"]; len(d) < 150 || !strings.Contains(d, "Check first") {
			t.Errorf("%s: the description must say what the alert means and what to check first (\"Check first: ...\"); got %q", a.Name, d)
		}
	}

	// Every alert fires in at least one unit test.
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	data, err := os.ReadFile(alertTestsFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &tests); err != nil {
		t.Fatal(err)
	}
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname] = true
			}
		}
	}
	for _, a := range alerts {
		if !fires[a.Name] {
			t.Errorf("%s has no unit test in %s in which it fires", a.Name, alertTestsFile)
		}
	}

	// The unit tests can fail: raise one threshold out of reach.
	dir := t.TempDir()
	rules, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	const thr = `rate(oidc_sidecar_store_errors_total{op!="ping"}[5m])) > 0.1`
	if !strings.Contains(string(rules), thr) {
		t.Fatalf("the mutation target %q is not in %s any more; update this test", thr, alertsFile)
	}
	writeFile(t, filepath.Join(dir, "alerts.yaml"), strings.Replace(string(rules), thr, strings.Replace(thr, "0.1", "1000", 1), 1))
	writeFile(t, filepath.Join(dir, "alerts_test.yaml"), string(data))
	cmd := exec.Command(promtool, "test", "rules", "alerts_test.yaml")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "OIDCSidecarTokenStoreErrors") {
		t.Fatalf("promtool test rules passed with a broken threshold (err %v):\n%s", err, out)
	}
}

// ---------------------------------------------------------------------------
// Dashboard.

type dashTarget struct {
	Expr       string          `json:"expr"`
	RefID      string          `json:"refId"`
	Datasource json.RawMessage `json:"datasource"`
}

type dashPanel struct {
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource json.RawMessage          `json:"datasource"`
	Targets    []dashTarget             `json:"targets"`
	Panels     []dashPanel              `json:"panels"` // a collapsed row's panels
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
}

type dashVar struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource json.RawMessage `json:"datasource"`
	AllValue   string          `json:"allValue"`
}

type dashboard struct {
	Title      string `json:"title"`
	Templating struct {
		List []dashVar `json:"list"`
	} `json:"templating"`
	Panels []dashPanel `json:"panels"`
}

func loadDashboard(t testing.TB) (*dashboard, []dashPanel) {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var panels []dashPanel
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			panels = append(panels, p)
		}
	}
	walk(d.Panels)
	return &d, panels
}

// varQuery is a query variable's PromQL-ish definition (label_values(...)).
func (v dashVar) varQuery() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &o)
	return o.Query
}

// TestDashboardModel: the dashboard is a Grafana JSON model whose every
// panel and query uses the $datasource variable (no data source UID is
// hard-coded), with the panels the operations issue lists.
func TestDashboardModel(t *testing.T) {
	d, panels := loadDashboard(t)
	vars := map[string]dashVar{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v, ok := vars["datasource"]; !ok || v.Type != "datasource" || string(v.Query) != `"prometheus"` {
		t.Fatalf("no `datasource` variable of type datasource for Prometheus: %+v", v)
	}
	// No UID anywhere but "${datasource}" (or null, for the dashboard itself).
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var any_ any
	_ = json.Unmarshal(raw, &any_)
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if k == "uid" && e != nil && e != "${datasource}" {
					t.Errorf("%s.uid = %v: hard-coded; use ${datasource} (or null for the dashboard)", path, e)
				}
				walk(path+"."+k, e)
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		}
	}
	walk("$", any_)

	ds := `{"type":"prometheus","uid":"${datasource}"}`
	same := func(a json.RawMessage) bool {
		var x, y any
		return json.Unmarshal(a, &x) == nil && json.Unmarshal([]byte(ds), &y) == nil && fmt.Sprint(x) == fmt.Sprint(y)
	}
	titles := map[string]bool{}
	for _, p := range panels {
		titles[p.Title] = true
		if !same(p.Datasource) {
			t.Errorf("panel %q: datasource %s, want %s", p.Title, p.Datasource, ds)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || refs[tg.RefID] || !same(tg.Datasource) {
				t.Errorf("panel %q: query %q (refId %q, datasource %s): empty, duplicate refId or not ${datasource}", p.Title, tg.Expr, tg.RefID, tg.Datasource)
			}
			refs[tg.RefID] = true
			for _, v := range regexp.MustCompile(`\$\{?(\w+)`).FindAllStringSubmatch(tg.Expr, -1) {
				if _, ok := vars[v[1]]; !ok && !strings.HasPrefix(v[1], "__") {
					t.Errorf("panel %q uses the undefined variable $%s", p.Title, v[1])
				}
			}
		}
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
		}
	}
	for _, want := range []string{
		"Exchanges/s by outcome and provider", "Top denied providers and why", "Proxied requests/s by route and status",
		"Exchange latency p50 / p99", "Added latency p50 / p99 (authorization)", "Token store errors/s by operation",
		"Redis latency p50 / p99 by command", "Policy loads by result", "Active revision per replica",
		"Discovery and JWKS fetches by issuer and result", "Rate-limited exchanges/s",
		"Invalidation subscription per replica", "Invalidations published / received per replica",
		"Readiness per replica", "Certificate expiry per listener",
	} {
		if !titles[want] {
			t.Errorf("the dashboard has no panel %q", want)
		}
	}
}

// ---------------------------------------------------------------------------
// Alert expressions, taken apart.

// alertSignals returns what an alert expression compares: the operands of
// its top-level comparisons, after splitting at its top-level set operators
// (and, or, unless) and opening fully parenthesized parts. Numbers are
// dropped. For `rate(x[5m]) > 0.1 and y == 0` it returns rate(x[5m]) and y:
// series a real sidecar under load must produce even when the alert does not
// fire.
func alertSignals(expr string) []string {
	expr = strings.TrimSpace(stripModifiers(strings.TrimSpace(expr)))
	for wrapped(expr) {
		expr = strings.TrimSpace(expr[1 : len(expr)-1])
	}
	parts := splitTop(expr)
	if len(parts) == 1 {
		if numeric.MatchString(expr) {
			return nil
		}
		return []string{expr}
	}
	var out []string
	for _, p := range parts {
		out = append(out, alertSignals(p)...)
	}
	return out
}

var (
	numeric   = regexp.MustCompile(`^[0-9.eE\s*/+-]+$`)
	modifiers = regexp.MustCompile(`^(?:bool\b|(?:on|ignoring|group_left|group_right)\s*\([^)]*\))\s*`)
)

func stripModifiers(s string) string {
	for {
		loc := modifiers.FindStringIndex(s)
		if loc == nil {
			return s
		}
		s = s[loc[1]:]
	}
}

// wrapped: s is one parenthesized expression, "(...)".
func wrapped(s string) bool {
	if !strings.HasPrefix(s, "(") || !strings.HasSuffix(s, ")") {
		return false
	}
	depth := 0
	for i, end := 0, len(s)-1; i <= end; i++ {
		i = skipString(s, i)
		switch s[i] {
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
			if depth == 0 && i != end {
				return false
			}
		}
	}
	return true
}

// skipString returns the index of the closing quote when s[i] opens a
// string, else i.
func skipString(s string, i int) int {
	q := s[i]
	if q != '"' && q != '\'' && q != '`' {
		return i
	}
	for j := i + 1; j < len(s); j++ {
		if s[j] == '\\' && q != '`' {
			j++
			continue
		}
		if s[j] == q {
			return j
		}
	}
	return len(s) - 1
}

// splitTop splits s at its top-level comparison and set operators.
func splitTop(s string) []string {
	var parts []string
	depth, start := 0, 0
	isSpace := func(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }
	for i := 0; i < len(s); i++ {
		i = skipString(s, i)
		c := s[i]
		switch c {
		case '(', '[', '{':
			depth++
			continue
		case ')', ']', '}':
			depth--
			continue
		}
		if depth != 0 {
			continue
		}
		n := 0
		switch {
		case strings.HasPrefix(s[i:], "==") || strings.HasPrefix(s[i:], "!=") || strings.HasPrefix(s[i:], ">=") || strings.HasPrefix(s[i:], "<="):
			n = 2
		case c == '>' || c == '<':
			n = 1
		default:
			for _, w := range []string{"and", "or", "unless"} {
				end := i + len(w)
				if strings.HasPrefix(s[i:], w) && i > 0 && (isSpace(s[i-1]) || s[i-1] == ')') &&
					end < len(s) && (isSpace(s[end]) || s[end] == '(') {
					n = len(w)
				}
			}
		}
		if n > 0 {
			parts = append(parts, s[start:i])
			start = i + n
			i += n - 1
		}
	}
	return append(parts, s[start:])
}

func TestAlertSignals(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`oidc_sidecar_ready == 0`, []string{`oidc_sidecar_ready`}},
		{`x{a!="b"} - time() < 14 * 86400`, []string{`x{a!="b"} - time()`}},
		{"sum by (job) (rate(a{o=\"x\"}[5m])) > 0\nand\nsum by (job) (rate(a[5m]))\n  >= 0.9 * sum by (job) (rate(b[5m]))",
			[]string{`sum by (job) (rate(a{o="x"}[5m]))`, `sum by (job) (rate(a[5m]))`, `0.9 * sum by (job) (rate(b[5m]))`}},
		{"(\n  a >= 5\n  and\n  b / c > 0.5\n)\nunless\n(\n  d offset 15m > 0.25\n)",
			[]string{`a`, `b / c`, `d offset 15m`}},
		{`up == 0 and on (job, instance) last_over_time(r[1h])`, []string{`up`, `last_over_time(r[1h])`}},
		{`histogram_quantile(0.99, sum by (le) (rate(h_bucket{l=">"}[5m]))) > 0.1`,
			[]string{`histogram_quantile(0.99, sum by (le) (rate(h_bucket{l=">"}[5m])))`}},
		{`random_metric > bool 1`, []string{`random_metric`}},
	} {
		got := alertSignals(c.expr)
		for i := range got {
			got[i] = strings.Join(strings.Fields(got[i]), " ")
		}
		if strings.Join(got, " | ") != strings.Join(c.want, " | ") {
			t.Errorf("alertSignals(%q)\n got %q\nwant %q", c.expr, got, c.want)
		}
	}
}

// sortedKeys is for messages.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
