package ui_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/internal/meshtest"
	"github.com/meridian-mesh/meridian/internal/promtest"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/policyapi"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar/telemetry"
	"github.com/meridian-mesh/meridian/ui"
)

var (
	catalog  = registry.ServiceKey{Namespace: "shop", Name: "catalog"}
	records  = registry.ServiceKey{Namespace: "shop", Name: "customer-records"}
	euOnly   = &v1alpha1.ResidencyRule{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "eu-only"}, Spec: v1alpha1.ResidencyRuleSpec{Selector: v1alpha1.ServiceSelector{Services: []string{"customer-records"}}, AllowedRegions: []string{"eu-west-1"}}}
	testTime = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
)

// policies is the policy pipeline as the dashboard reads it, with a real
// engine.
type policies struct {
	engine *locality.Engine
	stored []policyapi.Stored
}

func (p *policies) Engine() *locality.Engine               { return p.engine }
func (p *policies) List(string, string) []policyapi.Stored { return p.stored }

// outage returns the lab with eks-use1 declared dead by gossip, and the
// EU-only rule on customer-records.
func outage(t *testing.T) (*registry.Registry, *policies) {
	t.Helper()
	r := meshtest.Lab(t, catalog, records)
	if err := r.SetStatus("eks-use1", registry.ClusterStatus{State: registry.Dead, Since: testTime, LastSeen: testTime}); err != nil {
		t.Fatal(err)
	}
	e, err := locality.New(locality.Config{Policies: []v1alpha1.Object{euOnly}})
	if err != nil {
		t.Fatal(err)
	}
	return r, &policies{engine: e, stored: []policyapi.Stored{{Object: euOnly, Source: "rules.yaml"}}}
}

func newHandler(t *testing.T, r *registry.Registry, p ui.Policies, tr *ui.Traffic) http.Handler {
	t.Helper()
	h, err := ui.New(ui.Config{Registry: r, Cluster: "onprem-dc1", Policies: func() ui.Policies { return p }, Traffic: tr})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(t *testing.T, h http.Handler, url string) (int, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, url, nil))
	return rec.Code, rec.Body.Bytes()
}

func TestMeshAPI(t *testing.T) {
	r, p := outage(t)
	code, body := get(t, newHandler(t, r, p, nil), "/ui/api/mesh")
	if code != http.StatusOK {
		t.Fatalf("GET /ui/api/mesh = %d %s", code, body)
	}
	var m ui.Mesh
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	var regions []string
	for _, reg := range m.Regions {
		regions = append(regions, reg.Name)
		for _, c := range reg.Clusters {
			if want := map[string]string{"eks-use1": "dead"}[c.Name]; want != "" && c.State != want {
				t.Errorf("%s state %s; want %s", c.Name, c.State, want)
			}
		}
	}
	if !slices.Equal(regions, []string{"eu-west-1", "onprem-east", "us-east-1"}) {
		t.Errorf("regions = %v", regions)
	}
	svc := map[string]ui.Service{}
	for _, s := range m.Services {
		svc[s.Name] = s
	}
	fo := map[string]ui.Failover{}
	for _, f := range svc["catalog"].Failover {
		fo[f.Client] = f
	}
	// eks-use1's clients lost their region: all of catalog's traffic moves.
	if f := fo["eks-use1"]; f.State != ui.StateFailover || f.Moved != 100 || len(f.To) == 0 {
		t.Errorf("catalog from eks-use1 = %+v; want a full failover", f)
	}
	if f := fo["eks-euw1"]; f.State != ui.StateLocal {
		t.Errorf("catalog from eks-euw1 = %+v; want local", f)
	}
	res := svc["customer-records"].Residency
	if res == nil || !slices.Equal(res.Allowed, []string{"eks-euw1"}) || !slices.Equal(res.Blocked, []string{"eks-use1", "onprem-dc1"}) || res.Mode != "enforce" {
		t.Errorf("customer-records residency = %+v", res)
	}
	// EU-only: local in the EU, served from the EU (not a failover) elsewhere.
	for _, f := range svc["customer-records"].Failover {
		want := ui.StateRemote
		if f.Client == "eks-euw1" {
			want = ui.StateLocal
		}
		if f.State != want || slices.ContainsFunc(f.To, func(s string) bool { return !strings.HasPrefix(s, "eu-west-1") }) {
			t.Errorf("customer-records from %s = %+v; want %s, EU endpoints only", f.Client, f, want)
		}
	}
	if len(m.Policies) != 1 || m.Policies[0].Kind != "ResidencyRule" || m.Policies[0].Name != "eu-only" {
		t.Errorf("policies = %+v", m.Policies)
	}
}

// TestResidencyHolds: with every EU endpoint down, EU-only traffic fails
// rather than leave, and the dashboard says so.
func TestResidencyHolds(t *testing.T) {
	r, p := outage(t)
	if err := r.SetStatus("eks-euw1", registry.ClusterStatus{State: registry.Dead, Since: testTime}); err != nil {
		t.Fatal(err)
	}
	_, body := get(t, newHandler(t, r, p, nil), "/ui/api/mesh")
	var m ui.Mesh
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	for _, s := range m.Services {
		if s.Name != "customer-records" {
			continue
		}
		for _, f := range s.Failover {
			if f.State != ui.StateDown || !strings.Contains(f.Reason, "residency") {
				t.Errorf("from %s: %+v; want down, held by residency", f.Client, f)
			}
		}
	}
}

func TestDrillAPI(t *testing.T) {
	r, p := outage(t)
	code, body := get(t, newHandler(t, r, p, nil), "/ui/api/drill?kind=region&name=eu-west-1")
	if code != http.StatusOK {
		t.Fatalf("drill = %d %s", code, body)
	}
	var rep locality.DrillReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rep.Stranded, records) {
		t.Errorf("stranded = %v; want customer-records (EU only) to lose every allowed endpoint", rep.Stranded)
	}
}

func TestAPIBadInput(t *testing.T) {
	r, p := outage(t)
	h := newHandler(t, r, p, nil)
	for _, tc := range []struct {
		url  string
		code int
		want string
	}{
		{"/ui/api/mesh?cluster=x", 400, `ui: unknown parameter "cluster" (this call takes none)`},
		{"/ui/api/drill?kind=planet&name=mars", 400, `drill target kind "planet": want region, zone or cluster`},
		{"/ui/api/drill?kind=zone&name=us-east-1", 400, "a zone is written region/zone"},
		{"/ui/api/drill?kind=region", 400, "kind and name are required"},
		{"/ui/api/drill?kind=region&name=a&name=b", 400, `parameter "name" given 2 times`},
		{"/ui/api/drill?kind=region&name=x&force=1", 400, `unknown parameter "force" (this call takes kind, name)`},
		{"/ui/api/nothing", 404, "no GET /ui/api/nothing here"},
	} {
		code, body := get(t, h, tc.url)
		var e struct{ Error string }
		if err := json.Unmarshal(body, &e); err != nil || code != tc.code || !strings.Contains(e.Error, tc.want) {
			t.Errorf("GET %s = %d %s; want %d with %q", tc.url, code, body, tc.code, tc.want)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/ui/api/mesh", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui/api/mesh = %d; want 405", rec.Code)
	}
}

// proxyMetrics serves the metrics of a proxy: the sidecar's own telemetry
// collectors, fed requests from onprem-dc1 to eks-euw1 (10% failing) and
// inside onprem-dc1.
func proxyMetrics(t *testing.T) (url string, send func(n int)) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := telemetry.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	send = func(n int) {
		for i := range n {
			code := "200"
			if i%10 == 0 {
				code = "503"
			}
			for _, dst := range []string{"eks-euw1", "onprem-dc1"} {
				m.ObserveRequest(&telemetry.Request{Labels: telemetry.Labels{Reporter: "source",
					Source:      telemetry.Peer{Workload: "frontend", Namespace: "shop", Cluster: "onprem-dc1", Locality: "onprem-east/dc1-a"},
					Destination: telemetry.Peer{Workload: "catalog", Namespace: "shop", Cluster: dst, Locality: "eu-west-1/euw1-az1"},
					Service:     "catalog.shop"}, Code: code, Seconds: 0.01})
			}
			// The receiving sidecar reports too; it must not count twice.
			m.ObserveRequest(&telemetry.Request{Labels: telemetry.Labels{Reporter: "destination",
				Source: telemetry.Peer{Cluster: "onprem-dc1"}, Destination: telemetry.Peer{Cluster: "eks-euw1"}, Service: "catalog.shop"}, Code: code})
		}
	}
	return srv.URL + "/metrics", send
}

func TestTrafficRates(t *testing.T) {
	url, send := proxyMetrics(t)
	tr := ui.NewTraffic(ui.TrafficConfig{Targets: []string{url, "http://127.0.0.1:1/metrics"}, Interval: 50 * time.Millisecond})
	ctx := t.Context()
	go tr.Run(ctx) //nolint:errcheck // returns nil when ctx ends
	testutil.Eventually(t, 10*time.Second, func() error {
		send(100)
		edges, note := tr.Edges()
		for _, e := range edges {
			if e.Source == "onprem-dc1" && e.Destination == "eks-euw1" && e.RPS > 0 && e.ErrorRPS > 0 {
				// 10% of each batch fail, counted once (source reporter only).
				if ratio := e.ErrorRPS / e.RPS; ratio < 0.05 || ratio > 0.2 {
					return fmt.Errorf("error ratio %.2f; want about 0.1", ratio)
				}
				if !strings.Contains(note, "1 of 2 proxy metrics endpoints unreachable") {
					return fmt.Errorf("note = %q; want the unreachable target named", note)
				}
				return nil
			}
		}
		return fmt.Errorf("no onprem-dc1 → eks-euw1 rate yet: %+v (%s)", edges, note)
	})
}

func TestPageWorksOffline(t *testing.T) {
	r, p := outage(t)
	h := newHandler(t, r, p, nil)
	code, page := get(t, h, "/ui/")
	if code != http.StatusOK {
		t.Fatalf("GET /ui/ = %d", code)
	}
	// Every script and stylesheet is served by the dashboard itself.
	for _, ref := range []string{`src="`, `href="`} {
		for _, part := range strings.Split(string(page), ref)[1:] {
			link, _, _ := strings.Cut(part, `"`)
			if !strings.HasPrefix(link, "/ui/static/") {
				t.Errorf("the page loads %s, not from the dashboard", link)
			}
			if c, _ := get(t, h, link); c != http.StatusOK {
				t.Errorf("GET %s = %d", link, c)
			}
		}
	}
	if !strings.Contains(string(page), `"eks-use1"`) || strings.Contains(string(page), "<script>alert") {
		t.Error("the page does not inline the mesh")
	}
}

// TestTrafficFromPrometheus: the same rates, asked of a real Prometheus
// that scrapes the proxy.
func TestTrafficFromPrometheus(t *testing.T) {
	metricsURL, send := proxyMetrics(t)
	prom := promtest.Start(t, strings.TrimSuffix(strings.TrimPrefix(metricsURL, "http://"), "/metrics"))
	tr := ui.NewTraffic(ui.TrafficConfig{PrometheusURL: prom.URL, Interval: 200 * time.Millisecond})
	go tr.Run(t.Context()) //nolint:errcheck // returns nil when ctx ends
	testutil.Eventually(t, time.Minute, func() error {
		send(100)
		edges, note := tr.Edges()
		for _, e := range edges {
			if e.Source == "onprem-dc1" && e.Destination == "eks-euw1" && e.RPS > 0 && e.ErrorRPS > 0 {
				if ratio := e.ErrorRPS / e.RPS; ratio < 0.05 || ratio > 0.2 {
					return fmt.Errorf("error ratio %.2f; want about 0.1", ratio)
				}
				return nil
			}
		}
		return fmt.Errorf("no onprem-dc1 → eks-euw1 rate yet: %+v (%s)", edges, note)
	})

	// A Prometheus that is not there is named in the note.
	bad := ui.NewTraffic(ui.TrafficConfig{PrometheusURL: "http://127.0.0.1:1", Interval: 50 * time.Millisecond})
	go bad.Run(t.Context()) //nolint:errcheck // returns nil when ctx ends
	testutil.Eventually(t, 10*time.Second, func() error {
		if _, note := bad.Edges(); !strings.Contains(note, "Prometheus at http://127.0.0.1:1") {
			return fmt.Errorf("note = %q", note)
		}
		return nil
	})
}
