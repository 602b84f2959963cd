package deploy_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var (
	metricRef = regexp.MustCompile(`\b(meridian_[a-z0-9_]+)\s*(\{[^}]*\})?`)
	matcher   = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	grouping  = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// dashboardExprs returns every query of the Grafana dashboard, rows'
// nested panels included.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("observability/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string                  `json:"title"`
		Targets []struct{ Expr string } `json:"targets"`
		Panels  []json.RawMessage       `json:"panels"`
	}
	var dash struct {
		Title  string  `json:"title"`
		UID    string  `json:"uid"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Error("the dashboard needs a uid and a title")
	}
	out := map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out[tg.Expr] = p.Title
			}
			var nested []panel
			for _, r := range p.Panels {
				var np panel
				if err := json.Unmarshal(r, &np); err != nil {
					t.Fatal(err)
				}
				nested = append(nested, np)
			}
			walk(nested)
		}
	}
	walk(dash.Panels)
	return out
}

// TestDashboardQueriesUseRealMetrics: every metric a dashboard query names
// is one the code exports, every label it matches or groups by is one of
// that metric's labels, and the dashboard covers what operators look for.
func TestDashboardQueriesUseRealMetrics(t *testing.T) {
	metrics := codeMetrics(t)
	exprs := dashboardExprs(t)
	if len(exprs) < 10 {
		t.Fatalf("only %d queries in the dashboard", len(exprs))
	}
	used := map[string]bool{}
	for expr, title := range exprs {
		var labels []string
		refs := metricRef.FindAllStringSubmatch(expr, -1)
		if len(refs) == 0 {
			t.Errorf("panel %q: query %q names no Meridian metric", title, expr)
		}
		for _, ref := range refs {
			name := ref[1]
			m, ok := metrics[name]
			if !ok {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if base, cut := strings.CutSuffix(name, suffix); cut {
						if bm, found := metrics[base]; found && (bm.Type == "histogram" || bm.Type == "summary") {
							m, ok = bm, true
							if suffix == "_bucket" {
								m.Labels = append(slices.Clone(m.Labels), "le")
							}
						}
					}
				}
			}
			if !ok {
				t.Errorf("panel %q: %s is not a metric in the code", title, name)
				continue
			}
			used[m.Name] = true
			labels = append(labels, m.Labels...)
			for _, mm := range matcher.FindAllStringSubmatch(ref[2], -1) {
				if !slices.Contains(m.Labels, mm[1]) {
					t.Errorf("panel %q: %s has no label %q (it has %v)", title, name, mm[1], m.Labels)
				}
			}
		}
		for _, g := range grouping.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(g[1], ",") {
				if l = strings.TrimSpace(l); l != "" && !slices.Contains(labels, l) {
					t.Errorf("panel %q: grouping by %q, a label none of its metrics has", title, l)
				}
			}
		}
	}
	// What issue 9 asks the dashboard to show, by the metric that shows it.
	for what, name := range map[string]string{
		"traffic by locality": "meridian_requests_total", "failovers": "meridian_proxy_outlier_ejections_total",
		"residency blocks": "meridian_policy_refused_total", "push latency": "meridian_xds_push_ack_seconds",
		"replication lag": "meridian_federation_replication_lag_seconds", "certificate expiry": "meridian_inject_certificate_expiry_timestamp_seconds",
	} {
		if !used[name] {
			t.Errorf("the dashboard does not show %s (%s)", what, name)
		}
	}
}

// TestPrometheusConfig: the scrape configuration parses, and scrapes the
// ports the chart and the injector use.
func TestPrometheusConfig(t *testing.T) {
	raw, err := os.ReadFile("observability/prometheus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Global        map[string]any `json:"global"`
		ScrapeConfigs []struct {
			JobName       string           `json:"job_name"`
			KubernetesSD  []map[string]any `json:"kubernetes_sd_configs"`
			StaticConfigs []map[string]any `json:"static_configs"`
			Relabel       []map[string]any `json:"relabel_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.UnmarshalStrict(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	jobs := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		jobs[sc.JobName] = true
		if len(sc.KubernetesSD) == 0 && len(sc.StaticConfigs) == 0 {
			t.Errorf("job %s discovers no targets", sc.JobName)
		}
	}
	for _, j := range []string{"meridiand", "meridian-proxy"} {
		if !jobs[j] {
			t.Errorf("no %s job", j)
		}
	}
	if !strings.Contains(string(raw), `"15090"`) || !strings.Contains(string(raw), "15014") {
		t.Error("the configuration does not scrape meridian-proxy's 15090 and meridiand's 15014")
	}
}
