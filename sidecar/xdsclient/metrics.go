package xdsclient

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	connected  prometheus.Gauge
	reconnects prometheus.Counter
	responses  *prometheus.CounterVec
	resources  *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meridian_proxy_xds_connected",
			Help: "1 while the proxy has an xDS stream that delivered a response, else 0.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meridian_proxy_xds_reconnects_total",
			Help: "xDS streams that ended and were retried.",
		}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meridian_proxy_xds_responses_total",
			Help: "xDS responses by type and result (ack or nack).",
		}, []string{"type", "result"}),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meridian_proxy_xds_resources",
			Help: "Accepted xDS resources by type.",
		}, []string{"type"}),
	}
	for _, c := range []prometheus.Collector{m.connected, m.reconnects, m.responses, m.resources} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// typeLabel shortens a type URL to its message name for labels and logs.
func typeLabel(typeURL string) string {
	switch typeURL {
	case ListenerType:
		return "LDS"
	case RouteType:
		return "RDS"
	case ClusterType:
		return "CDS"
	case EndpointType:
		return "EDS"
	case SecretType:
		return "SDS"
	}
	return typeURL[strings.LastIndexByte(typeURL, '.')+1:]
}
