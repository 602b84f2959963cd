package workload

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	registrations   *prometheus.CounterVec // outcome: created, updated, rejected
	deregistrations prometheus.Counter
	heartbeats      *prometheus.CounterVec // outcome: ok, unknown
	expiries        *prometheus.CounterVec // stage: unhealthy, removed
}

func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	m := &metrics{
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_workload_registrations_total",
			Help: "Workload API registrations, by outcome: created, updated (registered again) or rejected (invalid).",
		}, []string{"outcome"}),
		deregistrations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_workload_deregistrations_total",
			Help: "Workloads removed by a Deregister call.",
		}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_workload_heartbeats_total",
			Help: "Workload API heartbeats, by outcome: ok, or unknown (the workload was not registered).",
		}, []string{"outcome"}),
		expiries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_workload_expiries_total",
			Help: "Workloads whose heartbeats stopped, by stage: unhealthy (TTL ran out) or removed (grace ran out too).",
		}, []string{"stage"}),
	}
	for _, o := range []string{"created", "updated", "rejected"} {
		m.registrations.WithLabelValues(o)
	}
	for _, o := range []string{"ok", "unknown"} {
		m.heartbeats.WithLabelValues(o)
	}
	for _, st := range []string{"unhealthy", "removed"} {
		m.expiries.WithLabelValues(st)
	}
	cs := []prometheus.Collector{m.registrations, m.deregistrations, m.heartbeats, m.expiries}
	for _, unhealthy := range []bool{false, true} {
		health := "healthy"
		if unhealthy {
			health = "unhealthy"
		}
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "meridian_workloads",
			Help:        "Workloads registered through the Workload API, by health.",
			ConstLabels: prometheus.Labels{"health": health},
		}, func() float64 { return float64(s.count(unhealthy)) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("workload: register metrics: %w", err)
		}
	}
	return m, nil
}
