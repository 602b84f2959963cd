package ui

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// requestsMetric is meridian-proxy's request counter (sidecar/telemetry),
// labelled as Istio's istio_requests_total.
const requestsMetric = "meridian_requests_total"

// edgeKey identifies an edge of the mesh graph.
type edgeKey struct{ source, destination, service string }

type counts struct{ total, errors float64 }

// Traffic gives live rates per edge: requests and 5xx answers per second
// from one cluster's workloads to another's, per service. It either
// scrapes meridian-proxy metrics endpoints and turns their request
// counters into rates over the last scrape interval (the lab, VMs: no
// Prometheus needed), or asks a Prometheus that scrapes the proxies (in
// Kubernetes, where proxies come and go). Only the reporter="source" side
// is counted, so that a request seen by both sidecars counts once.
type Traffic struct {
	targets  []string
	prom     string
	interval time.Duration
	client   *http.Client
	log      *slog.Logger

	mu    sync.Mutex
	prev  map[edgeKey]counts
	at    time.Time
	edges []Edge
	note  string
}

// TrafficConfig configures NewTraffic.
type TrafficConfig struct {
	// Targets are metrics URLs of proxies (http://10.0.0.5:15090/metrics).
	Targets []string
	// PrometheusURL, when set, is asked for the rates instead
	// (http://prometheus.monitoring:9090).
	PrometheusURL string
	// Interval between scrapes; default 2s.
	Interval time.Duration
	Logger   *slog.Logger
}

// NewTraffic returns a scraper; Run scrapes until its context ends.
func NewTraffic(cfg TrafficConfig) *Traffic {
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	t := &Traffic{targets: cfg.Targets, prom: strings.TrimSuffix(cfg.PrometheusURL, "/"), interval: cfg.Interval, log: cfg.Logger,
		client: &http.Client{Timeout: cfg.Interval}, note: "waiting for two scrapes of the proxies' metrics"}
	switch {
	case t.prom != "":
		t.note = "waiting for Prometheus"
	case len(cfg.Targets) == 0:
		t.note = "no proxy metrics endpoints or Prometheus configured (ui.metricsTargets, ui.prometheusURL): no live request rates"
	}
	return t
}

// Run scrapes every interval until ctx ends.
func (t *Traffic) Run(ctx context.Context) error {
	if len(t.targets) == 0 && t.prom == "" {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		t.scrape(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Edges returns the rates of the last interval and, when there are none,
// why.
func (t *Traffic) Edges() ([]Edge, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.edges), t.note
}

func (t *Traffic) scrape(ctx context.Context) {
	if t.prom != "" {
		t.query(ctx)
		return
	}
	now := time.Now()
	cur := map[edgeKey]counts{}
	var failed []string
	for _, url := range t.targets {
		if err := t.scrapeOne(ctx, url, cur); err != nil {
			failed = append(failed, url)
			t.log.Debug("scraping proxy metrics", "url", url, "err", err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.prev != nil {
		dt := now.Sub(t.at).Seconds()
		t.edges = t.edges[:0]
		for k, c := range cur {
			p := t.prev[k]
			d := counts{c.total - p.total, c.errors - p.errors}
			if d.total < 0 || d.errors < 0 { // a proxy restarted: its counters began again
				d = c
			}
			t.edges = append(t.edges, Edge{Source: k.source, Destination: k.destination, Service: k.service, RPS: round(d.total / dt), ErrorRPS: round(d.errors / dt)})
		}
		sortEdges(t.edges)
		t.note = ""
	}
	if len(failed) > 0 {
		t.note = fmt.Sprintf("%d of %d proxy metrics endpoints unreachable (%s)", len(failed), len(t.targets), strings.Join(failed, ", "))
	}
	t.prev, t.at = cur, now
}

// Queries Prometheus answers for query; the same rates scraping computes.
const (
	promTotal  = `sum by (source_cluster, destination_cluster, destination_service) (rate(meridian_requests_total{reporter="source"}[1m]))`
	promErrors = `sum by (source_cluster, destination_cluster, destination_service) (rate(meridian_requests_total{reporter="source",response_code=~"5.."}[1m]))`
)

// query asks Prometheus for the rates.
func (t *Traffic) query(ctx context.Context) {
	rates := map[edgeKey]counts{}
	for i, q := range []string{promTotal, promErrors} {
		vec, err := t.instant(ctx, q)
		if err != nil {
			t.mu.Lock()
			t.note = fmt.Sprintf("Prometheus at %s: %v", t.prom, err)
			t.mu.Unlock()
			t.log.Debug("querying Prometheus", "err", err)
			return
		}
		for k, v := range vec {
			c := rates[k]
			if i == 0 {
				c.total = v
			} else {
				c.errors = v
			}
			rates[k] = c
		}
	}
	edges := make([]Edge, 0, len(rates))
	for k, c := range rates {
		edges = append(edges, Edge{Source: k.source, Destination: k.destination, Service: k.service, RPS: round(c.total), ErrorRPS: round(c.errors)})
	}
	sortEdges(edges)
	t.mu.Lock()
	t.edges, t.note = edges, ""
	t.mu.Unlock()
}

// instant runs an instant query and returns its vector by edge.
func (t *Traffic) instant(ctx context.Context, q string) (map[edgeKey]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.prom+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return nil, err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 32<<20)).Decode(&body); err != nil {
		return nil, fmt.Errorf("HTTP %s: %w", resp.Status, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query failed: %s", body.Error)
	}
	out := map[edgeKey]float64{}
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("sample %q: %w", s, err)
		}
		out[edgeKey{r.Metric["source_cluster"], r.Metric["destination_cluster"], r.Metric["destination_service"]}] = v
	}
	return out, nil
}

func sortEdges(edges []Edge) {
	slices.SortFunc(edges, func(a, b Edge) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Destination, b.Destination), cmp.Compare(a.Service, b.Service))
	})
}

func (t *Traffic) scrapeOne(ctx context.Context, url string, into map[edgeKey]counts) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	mf := families[requestsMetric]
	if mf == nil {
		return nil
	}
	for _, m := range mf.GetMetric() {
		l := labels(m)
		if l["reporter"] != "source" {
			continue
		}
		k := edgeKey{l["source_cluster"], l["destination_cluster"], l["destination_service"]}
		c := into[k]
		v := m.GetCounter().GetValue()
		c.total += v
		if strings.HasPrefix(l["response_code"], "5") {
			c.errors += v
		}
		into[k] = c
	}
	return nil
}

func labels(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

func round(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
