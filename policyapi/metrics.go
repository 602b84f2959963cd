package policyapi

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	refused       *prometheus.CounterVec // reason: invalid, set
	ignored       prometheus.Counter
	compiles      prometheus.Counter
	compileErrors prometheus.Counter
	drills        *prometheus.CounterVec // event: started, ended
	kube          *prometheus.CounterVec // outcome: written, invalid, deleted
}

func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	m := &metrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_policy_refused_total",
			Help: "Applies and deletes refused by admission, by reason: invalid (an object alone) or set (conflicts, references, residency).",
		}, []string{"reason"}),
		ignored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_policy_ignored_total",
			Help: "Policy objects found in the replicated store that do not decode or validate, each time the set is compiled; they are left out.",
		}),
		compiles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_policy_compiles_total",
			Help: "Policy sets (with drills' drains) compiled and handed to the xDS server.",
		}),
		compileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_policy_compile_errors_total",
			Help: "Policy sets that failed to compile; the previous set stayed in force.",
		}),
		drills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_drills_total",
			Help: "Live drills, by event: started here, or ended (their record deleted by this control plane).",
		}, []string{"event"}),
		kube: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_policy_kube_objects_total",
			Help: "Custom resources read from Kubernetes, by outcome: written to the policy store, invalid (not written) or deleted.",
		}, []string{"outcome"}),
	}
	for _, o := range []string{"written", "invalid", "deleted"} {
		m.kube.WithLabelValues(o)
	}
	for _, r := range []string{"invalid", "set"} {
		m.refused.WithLabelValues(r)
	}
	for _, e := range []string{"started", "ended"} {
		m.drills.WithLabelValues(e)
	}
	cs := []prometheus.Collector{m.refused, m.ignored, m.compiles, m.compileErrors, m.drills, m.kube,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meridian_policy_objects",
			Help: "Policy objects in force (valid objects of the replicated store).",
		}, func() float64 { return float64(len(s.current().objs)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "meridian_drill_drains",
			Help: "Targets drained by live drills in force in this control plane.",
		}, func() float64 { return float64(len(s.current().drains)) }),
		newResidencyCollector(s),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("policyapi: register metrics: %w", err)
		}
	}
	return m, nil
}
