package kube

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	events     *prometheus.CounterVec // kind, event
	batches    prometheus.Counter
	batchSize  prometheus.Histogram
	applyTime  prometheus.Histogram
	batchDelay prometheus.Histogram
	rejected   prometheus.Counter
	errors     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "meridian", "kube_discovery"
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "events_total",
			Help: "Informer events received, by kind (Service, EndpointSlice, Pod, Node) and event (add, update, delete, tombstone).",
		}, []string{"kind", "event"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "batches_applied_total",
			Help: "Batches applied to the registry that changed something.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "batch_changes",
			Help:    "Registry changes per applied batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		applyTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "apply_seconds",
			Help:    "Time to convert the dirty Services of one batch and apply the changes.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8),
		}),
		batchDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "event_to_apply_seconds",
			Help:    "Time from the first event of a batch to the batch being applied (the batch window plus apply time).",
			Buckets: prometheus.ExponentialBuckets(0.001, 3, 9),
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "rejected_total",
			Help: "Parts of Kubernetes objects left out of the registry because they cannot be represented (each is logged).",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "apply_errors_total",
			Help: "Batches the registry refused; they are retried.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.events, m.batches, m.batchSize, m.applyTime, m.batchDelay, m.rejected, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("kube: register metrics: %w", err)
		}
	}
	return m, nil
}
