package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/harbormaster/harbormaster/chaos/labtest"
)

// existingFamilies are the families agent/metrics.go registers through its
// d("...") helper (checked by TestFamilyListsMatchAgent), by type.
var existingFamilies = map[string]string{
	"harbormaster_raft_leader":                   "gauge",
	"harbormaster_raft_term":                     "gauge",
	"harbormaster_raft_applied_index":            "gauge",
	"harbormaster_raft_commit_index":             "gauge",
	"harbormaster_role_holder":                   "gauge",
	"harbormaster_role_epoch":                    "gauge",
	"harbormaster_member_alive":                  "gauge",
	"harbormaster_member_lease_granted_seconds":  "gauge",
	"harbormaster_lease_remaining_seconds":       "gauge",
	"harbormaster_spec_version":                  "gauge",
	"harbormaster_vip_conflicts_total":           "counter",
	"harbormaster_last_event_seq":                "gauge",
	"harbormaster_check_passing":                 "gauge",
	"harbormaster_check_consecutive_failures":    "gauge",
	"harbormaster_service_active":                "gauge",
	"harbormaster_fenced":                        "gauge",
	"harbormaster_lease_view_errors_total":       "counter",
	"harbormaster_quorum":                        "gauge",
	"harbormaster_quorum_lost_seconds":           "gauge",
	"harbormaster_lease_datagrams_dropped_total": "counter",
	"harbormaster_redis_replica_in_sync":         "gauge",
	"harbormaster_redis_replica_lag_bytes":       "gauge",
	"harbormaster_redis_replica_lag_seconds":     "gauge",
	"harbormaster_redis_member_synced":           "gauge",
	"harbormaster_redis_member_behind_bytes":     "gauge",
	"harbormaster_redis_role_vacant":             "gauge",
	"harbormaster_build_info":                    "gauge",
	"harbormaster_redis_config_warnings":         "gauge",
	"harbormaster_lease_datagrams_total":         "counter",
}

// contractFamilies are the families of the metrics contract for failovers,
// leases, checks and the Raft store (docs/operations.md, Metrics), by type.
var contractFamilies = map[string]string{
	"harbormaster_failovers_total":           "counter",
	"harbormaster_failover_duration_seconds": "histogram",
	"harbormaster_lease_renewal_rtt_seconds": "histogram",
	"harbormaster_lease_renewal_age_seconds": "histogram",
	"harbormaster_lease_timing_warning":      "gauge",
	"harbormaster_lease_seconds":             "gauge",
	"harbormaster_lease_lapses_total":        "counter",
	"harbormaster_check_runs_total":          "counter",
	"harbormaster_check_duration_seconds":    "histogram",
	"harbormaster_raft_leader_changes_total": "counter",
	"harbormaster_store_errors_total":        "counter",
}

// prometheusFamilies are the series Prometheus itself writes per target.
var prometheusFamilies = map[string]string{"up": "gauge"}

// dashboardMustShow are the families the dashboard exists to show: who holds
// what, failovers and their phases, lease renewal age against the lease, lapses,
// checks, Redis, Raft health and the builds.
var dashboardMustShow = []string{
	"harbormaster_role_holder", "harbormaster_role_epoch", "harbormaster_failovers_total",
	"harbormaster_failover_duration_seconds", "harbormaster_lease_renewal_age_seconds", "harbormaster_lease_seconds",
	"harbormaster_lease_lapses_total", "harbormaster_check_passing", "harbormaster_check_runs_total",
	"harbormaster_check_duration_seconds", "harbormaster_redis_replica_in_sync", "harbormaster_redis_replica_lag_seconds",
	"harbormaster_redis_replica_lag_bytes", "harbormaster_redis_role_vacant", "harbormaster_redis_config_warnings",
	"harbormaster_raft_leader", "harbormaster_raft_term", "harbormaster_raft_commit_index",
	"harbormaster_raft_applied_index", "harbormaster_raft_leader_changes_total", "harbormaster_build_info",
}

// family returns the family a series name belongs to (a histogram's
// _bucket, _sum and _count series belong to it), or "" if it is unknown.
func family(name string) string {
	for _, set := range []map[string]string{existingFamilies, contractFamilies, prometheusFamilies} {
		if _, ok := set[name]; ok {
			return name
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base, ok := strings.CutSuffix(name, suffix)
			if ok && set[base] == "histogram" {
				return base
			}
		}
	}
	return ""
}

var (
	reString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	reMatchers = regexp.MustCompile(`\{[^{}]*\}|\[[^\[\]]*\]`)
	reGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	reIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promqlWord = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
		"group_right": true, "and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
		"inf": true, "nan": true}
)

// seriesNames returns the series names a PromQL expression selects: what is
// left once strings, label matchers, ranges and grouping labels are gone,
// less function names (followed by a parenthesis), keywords and numbers.
func seriesNames(expr string) []string {
	s := reString.ReplaceAllString(expr, `""`)
	s = reMatchers.ReplaceAllString(s, " ")
	s = reGrouping.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range reIdent.FindAllStringIndex(s, -1) {
		word := s[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsAny(s[loc[0]-1:loc[0]], "0123456789.$") {
			continue // 1e3, $var
		}
		if strings.HasPrefix(strings.TrimLeft(s[loc[1]:], " \t\n"), "(") || promqlWord[strings.ToLower(word)] {
			continue
		}
		names = append(names, word)
	}
	return names
}

func TestSeriesNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`histogram_quantile(0.99, sum by (node, le) (rate(harbormaster_lease_renewal_age_seconds_bucket{node=~"$node"}[$__rate_interval])))`: {"harbormaster_lease_renewal_age_seconds_bucket"},
		`max by (role) (harbormaster_role_epoch and on (node) (harbormaster_quorum == 1)) unless on (role) max by (role) (x)`:                {"harbormaster_role_epoch", "harbormaster_quorum", "x"},
		`up{job="harbormaster"} == 0`:                            {"up"},
		`0.5 * max by (node) (harbormaster_lease_seconds) > 1e3`: {"harbormaster_lease_seconds"},
		`harbormster_quorum{a="b c"} - bool 1`:                   {"harbormster_quorum"},
	} {
		if got := seriesNames(expr); !slices.Equal(got, want) {
			t.Errorf("seriesNames(%s) = %q, want %q", expr, got, want)
		}
	}
}

// checkNames fails for every series name of expr that belongs to no known
// family, and returns the families it uses.
func checkNames(t *testing.T, where, expr string) []string {
	t.Helper()
	names := seriesNames(expr)
	if len(names) == 0 {
		t.Errorf("%s: expression %q selects no series", where, expr)
	}
	var fams []string
	for _, n := range names {
		f := family(n)
		if f == "" {
			t.Errorf("%s: %q is no family the agent exports (agent/metrics.go, docs/operations.md Metrics) nor Prometheus's up; fix the name or add the family to the lists in deploy_test.go", where, n)
			continue
		}
		fams = append(fams, f)
	}
	return fams
}

// TestFamilyListsMatchAgent keeps existingFamilies honest: each is
// registered by agent/metrics.go's d("...") helper, and every family that
// helper registers is listed here or in the contract.
func TestFamilyListsMatchAgent(t *testing.T) {
	src, err := os.ReadFile("../agent/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	for _, m := range regexp.MustCompile(`\bd\("([a-z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		registered["harbormaster_"+m[1]] = true
	}
	if len(registered) == 0 {
		t.Fatal(`no d("...") family found in agent/metrics.go: update this test to how it registers families`)
	}
	for name := range existingFamilies {
		if !registered[name] {
			t.Errorf("%s is listed in existingFamilies but agent/metrics.go does not register it", name)
		}
	}
	for name := range registered {
		if existingFamilies[name] == "" && contractFamilies[name] == "" {
			t.Errorf("agent/metrics.go registers %s, which deploy_test.go does not list: add it to existingFamilies", name)
		}
	}
	// The contract's families are built in agent/obs.go, each named by its
	// full name in one string literal.
	obs, err := os.ReadFile("../agent/obs.go")
	if err != nil {
		t.Fatal(err)
	}
	for name := range contractFamilies {
		if !strings.Contains(string(obs), `"`+name+`"`) {
			t.Errorf("%s (the metrics contract) is not defined in agent/obs.go", name)
		}
	}
}

type dashboard struct {
	SchemaVersion int     `json:"schemaVersion"`
	UID           string  `json:"uid"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	Panels     []panel     `json:"panels"` // a collapsed row's
	Targets    []struct {
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile("grafana/harbormaster.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("grafana/harbormaster.json: %v", err)
	}
	return d
}

// dashboardExprs returns every panel's expressions, keyed "panel title #n".
func dashboardExprs(t *testing.T, d dashboard) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: datasource must be the ${datasource} variable, got %+v", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for i, tg := range p.Targets {
				if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
					t.Errorf("panel %q query %d: datasource must be ${datasource}, got %+v", p.Title, i, tg.Datasource)
				}
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q query %d has no expr", p.Title, i)
				}
				exprs[fmt.Sprintf("%s #%d", p.Title, i)] = tg.Expr
			}
		}
	}
	walk(d.Panels)
	return exprs
}

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion < 36 || d.UID == "" {
		t.Errorf("schemaVersion %d, uid %q: want a schemaVersion of Grafana 9 or later (36+) and a fixed uid", d.SchemaVersion, d.UID)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "datasource" && v.Query != "prometheus" {
			t.Errorf("variable %s: a datasource variable must query type prometheus, got %v", v.Name, v.Query)
		}
	}
	for name, typ := range map[string]string{"datasource": "datasource", "node": "query", "role": "query"} {
		if vars[name] != typ {
			t.Errorf("templating: want a %s variable %q, got %q", typ, name, vars[name])
		}
	}
	used := map[string]bool{}
	for where, expr := range dashboardExprs(t, d) {
		for _, f := range checkNames(t, where, expr) {
			used[f] = true
		}
	}
	for _, f := range dashboardMustShow {
		if !used[f] {
			t.Errorf("no panel shows %s", f)
		}
	}
}

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

type ruleTests struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// headingAnchors returns the GitHub anchors of a Markdown file's headings.
func headingAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, line := range strings.Split(string(raw), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.TrimSpace(strings.TrimLeft(h, "#"))
			anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
		}
	}
	return anchors
}

func TestAlertRules(t *testing.T) {
	var rf ruleFile
	readYAML(t, "prometheus/alerts.yml", &rf)
	var rt ruleTests
	readYAML(t, "prometheus/alerts_test.yml", &rt)
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range rt.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname] = true
			} else {
				silent[at.Alertname] = true
			}
		}
	}
	anchors := headingAnchors(t, "../docs/operations.md")
	const base = "https://github.com/harbormaster/harbormaster/blob/main/docs/operations.md#"
	var alerts []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: rule %q is no alert (recording rules belong elsewhere)", g.Name, r.Record)
				continue
			}
			alerts = append(alerts, r.Alert)
			checkNames(t, r.Alert, r.Expr)
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: labels.severity is %q, want critical or warning", r.Alert, s)
			}
			for _, a := range []string{"summary", "description"} {
				if !strings.Contains(r.Annotations[a], "{{ $labels.") {
					t.Errorf("%s: annotations.%s %q names no node, role or instance ({{ $labels.X }})", r.Alert, a, r.Annotations[a])
				}
			}
			url := r.Annotations["runbook_url"]
			frag, ok := strings.CutPrefix(url, base)
			if !ok || frag != strings.ToLower(r.Alert) {
				t.Errorf("%s: runbook_url %q, want %s%s", r.Alert, url, base, strings.ToLower(r.Alert))
			} else if !anchors[frag] {
				t.Errorf("%s: docs/operations.md has no heading for #%s: add \"### %s\" under Alerts", r.Alert, frag, r.Alert)
			}
			if !fires[r.Alert] || !silent[r.Alert] {
				t.Errorf("%s: alerts_test.yml needs a case where it fires (%v) and one where it stays silent (%v)", r.Alert, fires[r.Alert], silent[r.Alert])
			}
		}
	}
	for _, want := range []string{"HarbormasterNoQuorum", "HarbormasterRoleWithoutHolder", "HarbormasterFailoverStorm",
		"HarbormasterLeaseRTTNearLease", "HarbormasterCheckFlapping", "HarbormasterRedisReplicaOutOfSync",
		"HarbormasterRedisRoleVacant", "HarbormasterStoreErrors", "HarbormasterNodeFenced", "HarbormasterAgentDown"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alerts.yml has no alert %s", want)
		}
	}
}

func promtool(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "promtool", args...).CombinedOutput()
	if err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// grafanaVars stand in for the dashboard's variables so that promtool can
// parse its expressions.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__range", "1h", "$__interval", "1m",
	"${node}", ".*", "$node", ".*", "${role}", ".*", "$role", ".*")

// TestPromtool runs promtool (Debian package prometheus, scripts/deps.sh) on
// the alert rules, their unit tests, and every dashboard expression (put in a
// rules file of recording rules: invalid PromQL fails promtool check rules).
func TestPromtool(t *testing.T) {
	labtest.RequireBin(t, "promtool")
	t.Log(promtool(t, "check", "rules", "prometheus/alerts.yml"))
	t.Log(promtool(t, "test", "rules", "prometheus/alerts_test.yml"))

	exprs := dashboardExprs(t, loadDashboard(t))
	keys := make([]string, 0, len(exprs))
	for k := range exprs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, k := range keys {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:expr_%d", i), Expr: grafanaVars.Replace(exprs[k])})
	}
	raw, err := yaml.Marshal(map[string]any{"groups": []map[string]any{{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard_rules.yml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := promtool(t, "check", "rules", path); t.Failed() {
		t.Logf("dashboard expressions, in the order of the rules:\n%s", strings.Join(keys, "\n"))
	} else {
		t.Log(out)
	}
}
