package policyapi

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mesh/meridian/locality"
)

// residencyCollector reports what residency rules do right now, computed at
// scrape time from the registry view and the engine in force (as
// kube-state-metrics does): no goroutine, nothing to keep in step, and a
// service that leaves the mesh leaves the metrics with it.
type residencyCollector struct {
	s       *Server
	mu      sync.Mutex // one scrape at a time refills the vectors
	blocked *prometheus.GaugeVec
	serving *prometheus.GaugeVec
}

func newResidencyCollector(s *Server) *residencyCollector {
	return &residencyCollector{
		s: s,
		blocked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meridian_residency_blocked_endpoints",
			Help: "Endpoints a residency rule keeps away from every client (mode enforce), or would (mode audit), by service and rule.",
		}, []string{"service", "rule", "mode"}),
		serving: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meridian_residency_serving_endpoints",
			Help: "Endpoints of a residency-bound service that are allowed and get traffic; 0 means its requests fail rather than leave the allowed places.",
		}, []string{"service"}),
	}
}

func (c *residencyCollector) Describe(ch chan<- *prometheus.Desc) {
	c.blocked.Describe(ch)
	c.serving.Describe(ch)
}

func (c *residencyCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.blocked.Reset()
	c.serving.Reset()
	for _, st := range c.s.Engine().Residency(c.s.cfg.Registry.View()) {
		svc := st.Service.Name + "." + st.Service.Namespace
		for mode, bs := range map[string][]locality.Blocked{"enforce": st.Blocked, "audit": st.Audited} {
			for _, b := range bs {
				c.blocked.WithLabelValues(svc, strings.TrimPrefix(b.Rule.Policy, "ResidencyRule "), mode).Inc()
			}
		}
		c.serving.WithLabelValues(svc).Set(float64(st.Serving))
	}
	c.blocked.Collect(ch)
	c.serving.Collect(ch)
}
