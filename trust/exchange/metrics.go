package exchange

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	applied *prometheus.CounterVec // what: bundle_update, intermediate
	refused *prometheus.CounterVec // what: status, bundle_update, intermediate, resign
	steps   *prometheus.CounterVec // step, result
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_trust_exchange_applied_total",
			Help: "Trust state from the mesh applied here, by what: bundle_update (a newer bundle merged) or intermediate (one the root holder re-signed for this cluster installed).",
		}, []string{"what"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_trust_exchange_refused_total",
			Help: "Trust state from the mesh refused, once per value, by what: status (does not decode), bundle_update (not signed by a trusted root, or conflicting), intermediate (not this cluster's, or not under a trusted root), resign (the root holder will not re-sign a published intermediate).",
		}, []string{"what"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_trust_rotation_steps_total",
			Help: "Root rotation steps asked of this meridiand, by step (prepare, activate, retire) and result (ok, refused, error).",
		}, []string{"step", "result"}),
	}
	for _, what := range []string{"bundle_update", "intermediate"} {
		m.applied.WithLabelValues(what)
	}
	for _, what := range []string{"status", "bundle_update", "intermediate", "resign"} {
		m.refused.WithLabelValues(what)
	}
	for _, c := range []prometheus.Collector{m.applied, m.refused, m.steps} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("exchange: register metrics: %w", err)
		}
	}
	return m, nil
}
