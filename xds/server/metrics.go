package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mesh/meridian/xds/translate"
)

type metrics struct {
	connected    *prometheus.GaugeVec
	pushes       *prometheus.CounterVec
	pushBytes    *prometheus.HistogramVec
	pushAck      *prometheus.HistogramVec
	nacks        *prometheus.CounterVec
	convergence  prometheus.Histogram
	rejected     *prometheus.CounterVec
	invalid      *prometheus.CounterVec
	unknown      *prometheus.CounterVec
	recompute    prometheus.Histogram
	groups       prometheus.Gauge
	droppedWrite prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "meridian", "xds"
	m := &metrics{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "connected_proxies",
			Help: "xDS streams with a parsed proxy identity, by mode and cluster."}, []string{"mode", "cluster"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "pushes_total",
			Help: "Discovery responses sent, by resource type."}, []string{"type"}),
		pushBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "push_bytes",
			Help:    "Size of the resources in one discovery response, by resource type.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 10)}, []string{"type"}),
		pushAck: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "push_ack_seconds",
			Help:    "Time from sending a response until the proxy ACKs or NACKs it, by resource type.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "nacks_total",
			Help: "Responses a proxy rejected, by resource type."}, []string{"type"}),
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "convergence_seconds",
			Help:    "Time from a registry change (before debouncing) until every proxy it affected has ACKed.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rejected_streams_total",
			Help: "Streams closed because of bad input, by reason."}, []string{"reason"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "invalid_resources_total",
			Help: "Built resources that failed validation and were not published, by resource type."}, []string{"type"}),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "unknown_resources_total",
			Help: "Requests for resource names or types Meridian does not have, by resource type."}, []string{"type"}),
		recompute: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "recompute_seconds",
			Help:    "Time to translate, validate and publish one batch of registry changes.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 3, 12)}),
		groups: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "groups",
			Help: "Distinct resource scopes computed (proxies with equal scopes share one)."}),
		droppedWrite: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dropped_responses_total",
			Help: "Responses that could not be queued to their stream (should stay zero)."}),
	}
	for _, c := range []prometheus.Collector{m.connected, m.pushes, m.pushBytes, m.pushAck, m.nacks, m.convergence, m.rejected, m.invalid, m.unknown, m.recompute, m.groups, m.droppedWrite} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// typeLabel is a short, bounded label for a type URL: unknown types from
// the network must not create unbounded label values.
func typeLabel(typeURL string) string {
	switch typeURL {
	case translate.ListenerType:
		return "LDS"
	case translate.RouteType:
		return "RDS"
	case translate.ClusterType:
		return "CDS"
	case translate.EndpointType:
		return "EDS"
	case translate.SecretType:
		return "SDS"
	}
	return "other"
}
