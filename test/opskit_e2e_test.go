package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// possiblyEmpty lists the metrics whose queries may legitimately return no
// series after the load, with the reason. A query (panel, variable or alert
// signal) may be empty only if it mentions one of them.
var possiblyEmpty = map[string]string{
	"oidc_sidecar_tls_certificate_expiry_timestamp_seconds": "this test's sidecar serves plain HTTP (TestTLSMainListener checks the metric)",
	"oidc_sidecar_store_overloads_total":                    "overload needs more concurrent store operations than Redis connections (TestOverloadReportedAsOverload covers it)",
	"oidc_sidecar_invalidation_subscription_up":             "the replicas issue (invalidation pub/sub) is not in this build",
	"oidc_sidecar_invalidations_published_total":            "the replicas issue (invalidation pub/sub) is not in this build",
	"oidc_sidecar_invalidations_received_total":             "the replicas issue (invalidation pub/sub) is not in this build",
}

// possiblyEmptySignal: alert signals that need more history than a test run.
var possiblyEmptySignal = map[*regexp.Regexp]string{
	regexp.MustCompile(`\boffset 15m\b`): "a baseline from 15 minutes ago and earlier; the test's Prometheus is younger",
}

// promServer is a real prometheus process on a loopback port with its own
// storage directory.
type promServer struct {
	URL  string
	cmd  *exec.Cmd
	logs *logSink
	done chan struct{}
}

func startPrometheus(t *testing.T, bin, target string) *promServer {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: oidc-sidecar
    metrics_path: /metrics
    static_configs:
      - targets: ['%s']
`, rules, target)
	writeFile(t, filepath.Join(dir, "prometheus.yml"), cfg)
	var lastLogs string
	for range 3 {
		addr := freeAddr(t)
		p := &promServer{URL: "http://" + addr, logs: newLogSink(), done: make(chan struct{})}
		p.cmd = exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
			"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr,
			"--storage.tsdb.retention.time=1h", "--log.level=warn")
		p.cmd.Dir = dir
		p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
		setProcAttr(p.cmd)
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = p.cmd.Wait(); close(p.done) }()
		deadline := time.Now().Add(readyTimeout)
		for {
			select {
			case <-p.done:
				lastLogs = p.logs.String()
			default:
				if st, _ := quickStatus(p.URL + "/-/ready"); st == http.StatusOK {
					t.Cleanup(func() {
						_ = p.cmd.Process.Signal(os.Interrupt)
						select {
						case <-p.done:
						case <-time.After(stopTimeout):
							_ = p.cmd.Process.Kill()
							<-p.done
						}
					})
					return p
				}
				if time.Now().After(deadline) {
					_ = p.cmd.Process.Kill()
					<-p.done
					t.Fatalf("prometheus was not ready within %s; logs:\n%s", readyTimeout, p.logs.String())
				}
				time.Sleep(50 * time.Millisecond)
				continue
			}
			break
		}
		if !strings.Contains(lastLogs, "address already in use") {
			break
		}
	}
	t.Fatalf("prometheus exited before it was ready; logs:\n%s", lastLogs)
	return nil
}

type promAnswer struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string            `json:"resultType"`
		Result     json.RawMessage   `json:"result"`
		Alerts     []json.RawMessage `json:"alerts"`
		Groups     []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"data"`
}

func (p *promServer) get(t testing.TB, path string, params url.Values) promAnswer {
	t.Helper()
	u := p.URL + path
	if params != nil {
		u += "?" + params.Encode()
	}
	resp, err := client.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var a promAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("GET %s: HTTP %d, not a Prometheus API answer: %s", u, resp.StatusCode, truncate(string(body), 400))
	}
	return a
}

// query evaluates q now; it returns the number of series (a scalar counts
// as one) or the API's error.
func (p *promServer) query(t testing.TB, q string) (int, error) {
	t.Helper()
	a := p.get(t, "/api/v1/query", url.Values{"query": {q}})
	if a.Status != "success" {
		return 0, fmt.Errorf("%s: %s", a.ErrorType, a.Error)
	}
	switch a.Data.ResultType {
	case "vector", "matrix":
		var rs []json.RawMessage
		if err := json.Unmarshal(a.Data.Result, &rs); err != nil {
			return 0, err
		}
		return len(rs), nil
	case "scalar", "string":
		return 1, nil
	}
	return 0, fmt.Errorf("unexpected result type %q", a.Data.ResultType)
}

// value evaluates a query that must return one series and returns its value.
func (p *promServer) value(t testing.TB, q string) (float64, bool) {
	t.Helper()
	a := p.get(t, "/api/v1/query", url.Values{"query": {q}})
	var rs []struct {
		Value [2]any `json:"value"`
	}
	if a.Status != "success" || json.Unmarshal(a.Data.Result, &rs) != nil || len(rs) != 1 {
		return 0, false
	}
	var v float64
	s, _ := rs[0].Value[1].(string)
	if _, err := fmt.Sscan(s, &v); err != nil {
		return 0, false
	}
	return v, true
}

// substitute replaces Grafana's variables the way a dashboard with every
// replica selected would: $job and $instance match all, $__rate_interval is
// a window that holds several scrapes, $__range covers the test.
func substitute(expr string) string {
	r := strings.NewReplacer(
		"${__rate_interval}", "1m", "$__rate_interval", "1m",
		"${__range}", "5m", "$__range", "5m", "${__interval}", "5s", "$__interval", "5s",
		"${job}", ".*", "$job", ".*", "${instance}", ".*", "$instance", ".*",
	)
	return r.Replace(expr)
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// mayBeEmpty returns why q may return no series, or "".
func mayBeEmpty(q string) string {
	for m, why := range possiblyEmpty {
		if strings.Contains(q, m) {
			return why
		}
	}
	return ""
}

// TestOpsKitAgainstPrometheus runs a real prometheus scraping a real
// sidecar (1 s scrapes) with deploy/prometheus/alerts.yaml loaded, drives a
// short mixed load, then evaluates every dashboard panel query, every
// template variable and every alert expression (and what each alert
// compares) through the HTTP API: each must be valid PromQL and return
// series unless it is in possiblyEmpty. Prometheus must also evaluate every
// rule without error, and the one alert the load provokes (a dead issuer's
// JWKS fetches) must be active while the ones a healthy sidecar must not
// raise are not.
func TestOpsKitAgainstPrometheus(t *testing.T) {
	promBin := needTool(t, "prometheus", "prometheus")
	deadIssuer := "http://" + freeAddr(t) // nothing listens there
	const deadID = "6c0b7a52-1e2f-4d3c-9b8a-7f6e5d4c3b2a"
	w := newWorld(t, worldOpts{extraProviders: fmt.Sprintf(`  - id: %s
    name: Dead issuer
    type: other
    issuer: %s
    audience: dead
    lifetime: 10m
    trust_conditions: 'sub is "x"'
    scopes: [WORKSPACE]
`, deadID, deadIssuer)})
	cfg := w.config()
	cfg["rate_limits"] = map[string]any{"per_ip": 0, "per_provider": 4, "window": "1m"}
	s := startSidecar(t, cfg, nil)
	p := startPrometheus(t, promBin, strings.TrimPrefix(s.AdminURL, "http://"))
	await(t, readyTimeout, "prometheus to scrape the sidecar (up == 1)", func() bool {
		v, ok := p.value(t, `up{job="oidc-sidecar"}`)
		return ok && v == 1
	})

	// --- The load.
	projects := "/workspaces/" + workspace + "/projects"
	ghTok := s.mustExchange(t, ghID, w.ghToken(t, nil))
	s.mustExchange(t, ghID, w.ghToken(t, nil))
	expectStatus(t, s.exchangeBuddy(t, ghID, w.ghToken(t, func(c map[string]any) { c["ref"] = "refs/heads/dev" })), http.StatusUnauthorized) // denied by a trust condition
	expectStatus(t, s.exchange8693(t, ccID, sign(t, w.cc, w.ccClaims()), ""), http.StatusOK)
	expectStatus(t, s.exchangeBuddy(t, ccID, "garbage"), http.StatusUnauthorized)
	expectStatus(t, s.exchangeBuddy(t, unknownID, "garbage"), http.StatusUnauthorized)
	for range 4 {
		s.mustExchange(t, genID, sign(t, w.gen, w.genClaims()))
	}
	r := s.exchangeBuddy(t, genID, sign(t, w.gen, w.genClaims()))
	expectStatus(t, r, http.StatusTooManyRequests) // per_provider: 4
	deadJWT := sign(t, w.gen, map[string]any{"iss": deadIssuer, "aud": "dead", "sub": "x",
		"iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix()})
	// The exchange retries the dead issuer's discovery: the error counter
	// grows while Prometheus watches (the JWKS alert needs an increase).
	deadFetches := fmt.Sprintf(`oidc_sidecar_jwks_fetches_total{issuer=%q,kind="discovery",result="error"}`, deadIssuer)
	fetchBase := s.metric(t, deadFetches)
	if r := s.exchangeBuddy(t, deadID, deadJWT); r.Status == http.StatusOK {
		t.Fatalf("an exchange for an issuer whose keys cannot be fetched: %s", r)
	}
	if got := s.metric(t, deadFetches); got <= fetchBase {
		t.Fatalf("%s = %v after an exchange for the dead issuer, want more than %v", deadFetches, got, fetchBase)
	}
	expectStatus(t, s.call(t, http.MethodGet, projects, ghTok), http.StatusOK)
	expectStatus(t, s.call(t, http.MethodGet, projects, ghTok), http.StatusOK) // a reused decision
	expectStatus(t, s.call(t, http.MethodGet, "/workspaces/"+otherWS+"/projects", ghTok), http.StatusForbidden)
	expectStatus(t, s.call(t, http.MethodGet, "/workspaces/"+workspace+"/no-such-thing", ghTok), http.StatusForbidden)
	expectStatus(t, s.call(t, http.MethodGet, projects, ""), http.StatusUnauthorized)
	// A rejected reload, then an accepted one.
	orig, err := os.ReadFile(w.providers)
	if err != nil {
		t.Fatal(err)
	}
	_, ready := s.readyz(t)
	rev0 := ready["revision"]
	errSeries := `oidc_sidecar_policy_reloads_total{result="error"}`
	errBase := s.metric(t, errSeries)
	writeFile(t, w.providers, strings.Replace(string(orig), "lifetime: 10m", "lifetime: 15m", 1))
	await(t, awaitTimeout, "the broken edit to be rejected", func() bool { return s.metric(t, errSeries) > errBase })
	writeFile(t, w.providers, strings.Replace(string(orig), "name: Generic - infra", "name: Generic - infra (renamed)", 1))
	reload := newRequest(t, http.MethodPost, s.AdminURL+"/_sidecar/reload", "", "")
	reload.Header.Set("Authorization", "Bearer "+adminToken)
	expectStatus(t, do(t, reload), http.StatusOK)
	await(t, awaitTimeout, "a new revision", func() bool { _, r := s.readyz(t); return r["revision"] != rev0 })

	// --- Await Prometheus: it holds the sidecar's final counts.
	final := s.metric(t, `oidc_sidecar_exchanges_total{outcome="rate_limited",provider="`+genID+`"}`) // per_provider counts verified tokens, after the provider is known
	if final < 1 {
		t.Fatalf("the sidecar counted %v rate-limited exchanges, want at least 1", final)
	}
	await(t, awaitTimeout, "prometheus to hold the load's final counts", func() bool {
		v, ok := p.value(t, `sum(oidc_sidecar_exchanges_total{outcome="rate_limited"})`)
		rl, ok2 := p.value(t, `sum(oidc_sidecar_policy_reloads_total{result="ok"})`)
		return ok && ok2 && v == final && rl >= 2
	})
	// Three more scrapes after the load: every series it created then has
	// samples enough for rate().
	loadEnd := time.Now()
	await(t, awaitTimeout, "three scrapes after the load", func() bool {
		ts, ok := p.value(t, `timestamp(up{job="oidc-sidecar"})`)
		return ok && ts > float64(loadEnd.UnixMilli())/1e3+3
	})

	check := func(what, q string, extraWhy string) {
		t.Helper()
		n, err := p.query(t, q)
		switch {
		case err != nil:
			t.Errorf("%s: invalid: %v\n  query: %s", what, err, q)
		case n == 0 && mayBeEmpty(q) == "" && extraWhy == "":
			t.Errorf("%s: no series after the load\n  query: %s", what, q)
		case n == 0:
			t.Logf("%s: empty, allowed: %s%s", what, mayBeEmpty(q), extraWhy)
		}
	}

	// Every dashboard query and variable.
	d, panels := loadDashboard(t)
	queries := 0
	for _, pn := range panels {
		for _, tg := range pn.Targets {
			check(fmt.Sprintf("panel %q query %s", pn.Title, tg.RefID), substitute(tg.Expr), "")
			queries++
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(strings.TrimSpace(v.varQuery()))
		if m == nil {
			t.Errorf("variable $%s: %q is not label_values(<selector>, <label>)", v.Name, v.varQuery())
			continue
		}
		check("variable $"+v.Name, substitute(fmt.Sprintf("group by (%s) (%s)", m[2], m[1])), "")
	}

	// Every alert expression, and what it compares.
	alerts := loadAlerts(t, alertsFile)
	for _, a := range alerts {
		if _, err := p.query(t, a.Expr); err != nil {
			t.Errorf("alert %s: invalid expression: %v", a.Name, err)
		}
		sig := alertSignals(a.Expr)
		if len(sig) == 0 {
			t.Errorf("alert %s: nothing to compare found in %q", a.Name, a.Expr)
		}
		for _, s := range sig {
			why := ""
			for re, w := range possiblyEmptySignal {
				if re.MatchString(s) {
					why = w
				}
			}
			check("alert "+a.Name+" signal", s, why)
		}
	}
	t.Logf("evaluated %d panel queries, %d variables and %d alert expressions", queries, len(d.Templating.List)-1, len(alerts))

	// Prometheus evaluates every rule without error, and the alerts are
	// those of this load.
	await(t, awaitTimeout, "the dead issuer's JWKS alert", func() bool {
		return len(p.activeAlerts(t)["OIDCSidecarJWKSFetchFailing"]) > 0
	})
	active := p.activeAlerts(t)
	if got := active["OIDCSidecarJWKSFetchFailing"]; len(got) != 1 || got[0] != deadIssuer {
		t.Errorf("OIDCSidecarJWKSFetchFailing is active for issuers %v, want exactly [%s]", got, deadIssuer)
	}
	for _, name := range []string{"OIDCSidecarTokenStoreUnavailable", "OIDCSidecarTokenStoreErrors", "OIDCSidecarPolicyReloadFailing",
		"OIDCSidecarPolicyEvaluationFailing", "OIDCSidecarReplicaNotReady", "OIDCSidecarReplicaDown"} {
		if got, ok := active[name]; ok {
			t.Errorf("%s is active on a healthy sidecar (%v)", name, got)
		}
	}
	rules := p.get(t, "/api/v1/rules", nil)
	n := 0
	for _, g := range rules.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				t.Errorf("prometheus: rule %s health %q: %s", r.Name, r.Health, r.LastError)
			}
		}
	}
	if n != len(alerts) {
		t.Errorf("prometheus loaded %d rules, want the %d of %s", n, len(alerts), alertsFile)
	}
}

// activeAlerts maps the name of each pending or firing alert to its issuer
// (or instance) labels.
func (p *promServer) activeAlerts(t testing.TB) map[string][]string {
	t.Helper()
	a := p.get(t, "/api/v1/alerts", nil)
	out := map[string][]string{}
	for _, raw := range a.Data.Alerts {
		var al struct {
			Labels map[string]string `json:"labels"`
		}
		_ = json.Unmarshal(raw, &al)
		v := al.Labels["issuer"]
		if v == "" {
			v = al.Labels["instance"]
		}
		out[al.Labels["alertname"]] = append(out[al.Labels["alertname"]], v)
	}
	return out
}
