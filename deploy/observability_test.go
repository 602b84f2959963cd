package deploy_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"sigs.k8s.io/yaml"

	"github.com/meridian-mesh/meridian/internal/promtest"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/sidecar/telemetry"
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
		"residency blocks": "meridian_residency_blocked_endpoints", "requests held by residency": "meridian_residency_serving_endpoints",
		"push latency": "meridian_xds_push_ack_seconds", "replication lag": "meridian_federation_replication_lag_seconds",
		"webhook certificate expiry": "meridian_inject_certificate_expiry_timestamp_seconds",
		"intermediate CA expiry":     "meridian_trust_intermediate_expiry_timestamp_seconds",
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

// TestDashboardQueriesRunInPrometheus: promtool accepts the scrape
// configuration (see checkConfigWithPromtool), and a real Prometheus, scraping a proxy's metrics and a
// meridiand's, runs every dashboard query without error; the traffic
// panels return data.
func TestDashboardQueriesRunInPrometheus(t *testing.T) {
	prom := promtest.Start(t, metricsEndpoint(t))
	checkConfigWithPromtool(t)
	withData := 0
	for expr, title := range dashboardExprs(t) {
		var n int
		testutil.Eventually(t, 30*time.Second, func() error {
			resp, err := http.Get(prom.QueryURL(expr))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			var body struct {
				Status, Error string
				Data          struct{ Result []json.RawMessage }
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				return err
			}
			if body.Status != "success" {
				t.Fatalf("panel %q: Prometheus refuses %s: %s", title, expr, body.Error)
			}
			n = len(body.Data.Result)
			if strings.Contains(expr, "meridian_requests_total") && n == 0 {
				return fmt.Errorf("panel %q: no data yet for %s", title, expr)
			}
			return nil
		})
		if n > 0 {
			withData++
		}
	}
	t.Logf("%d queries answered with data", withData)
}

// metricsEndpoint serves what Prometheus scrapes: meridian-proxy's
// telemetry with requests between clusters, and the webhook's metrics.
func metricsEndpoint(t *testing.T) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := telemetry.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		code := "200"
		if i%10 == 0 {
			code = "503"
		}
		m.ObserveRequest(&telemetry.Request{Labels: telemetry.Labels{Reporter: "source",
			Source:      telemetry.Peer{Workload: "frontend", Namespace: "shop", Cluster: "onprem-dc1", Locality: "onprem-east/dc1-a"},
			Destination: telemetry.Peer{Workload: "catalog", Namespace: "shop", Cluster: "eks-euw1", Locality: "eu-west-1/euw1-az1"},
			Service:     "catalog.shop"}, Code: code, Flags: map[bool]string{true: "UH"}[code == "503"], Seconds: 0.01})
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	// Rates need the counters to move between scrapes.
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				m.ObserveRequest(&telemetry.Request{Labels: telemetry.Labels{Reporter: "source",
					Source: telemetry.Peer{Cluster: "onprem-dc1"}, Destination: telemetry.Peer{Cluster: "eks-euw1", Locality: "eu-west-1/euw1-az1"},
					Service: "catalog.shop"}, Code: "503", Flags: "UH", Seconds: 0.02})
			}
		}
	}()
	return strings.TrimPrefix(srv.URL, "http://")
}

// checkConfigWithPromtool runs promtool check config on the scrape
// configuration. Debian builds Prometheus without Kubernetes service
// discovery ("field kubernetes_sd_configs not found"), so the jobs'
// kubernetes_sd_configs are swapped for a static target first; everything
// else — relabelling, regexes, job options — is checked as written.
func checkConfigWithPromtool(t *testing.T) {
	t.Helper()
	raw, err := os.ReadFile("observability/prometheus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	jobs, _ := cfg["scrape_configs"].([]any)
	for _, j := range jobs {
		job, _ := j.(map[string]any)
		if _, ok := job["kubernetes_sd_configs"]; ok {
			delete(job, "kubernetes_sd_configs")
			job["static_configs"] = []any{map[string]any{"targets": []any{"127.0.0.1:1"}}}
		}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/prometheus.yaml"
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("promtool", "check", "config", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}
