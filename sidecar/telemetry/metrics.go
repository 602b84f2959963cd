package telemetry

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Peer describes one side of a request for metric labels.
type Peer struct {
	Workload, Namespace, Cluster, Locality string
}

// Metrics are the proxy's Prometheus collectors. Create them once per
// process with NewMetrics and an injected registerer.
type Metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	reqBytes    *prometheus.HistogramVec
	respBytes   *prometheus.HistogramVec
	tcpSent     *prometheus.CounterVec
	tcpReceived *prometheus.CounterVec
	tcpOpened   *prometheus.CounterVec
	tcpClosed   *prometheus.CounterVec

	// Rejected counts downstream connections and requests refused at the
	// edge, by listener and reason (malformed, header_too_large,
	// too_many_headers, header_timeout, tls_handshake, no_filter_chain,
	// connection_limit, rbac, ...).
	Rejected *prometheus.CounterVec
	// Overflow counts circuit-breaker overflows by cluster and breaker
	// (connections, pending, requests, retries).
	Overflow *prometheus.CounterVec
	// Retries counts retries by cluster.
	Retries *prometheus.CounterVec
	// NoHealthy counts requests and connections that found no healthy
	// endpoint in their cluster and were refused at once (flag UH), by
	// cluster (Envoy's upstream_cx_none_healthy).
	NoHealthy *prometheus.CounterVec
	// Stale counts requests that met a dead pooled upstream connection
	// (reset or closed by the peer before any response) and were sent
	// again, by cluster.
	Stale *prometheus.CounterVec
	// Ejections counts outlier ejections by cluster and reason; Ejected
	// is the number of hosts ejected now.
	Ejections *prometheus.CounterVec
	Ejected   *prometheus.GaugeVec
	// Refused counts traffic refused by outbound policy (REGISTRY_ONLY:
	// the BlackHoleCluster), by listener.
	Refused *prometheus.CounterVec
	// DownstreamActive counts open downstream connections by listener.
	DownstreamActive *prometheus.GaugeVec

	// observers caches each label set's four request collectors, so a
	// request costs one map lookup instead of four label hashings.
	observers sync.Map // requestKey → *requestObservers
}

type requestKey struct {
	Labels
	code, flags string
}

type requestObservers struct {
	count                       prometheus.Counter
	duration, reqSize, respSize prometheus.Observer
}

var (
	peerLabels = []string{"reporter", "source_workload", "source_namespace", "source_cluster",
		"destination_workload", "destination_namespace", "destination_cluster", "destination_service", "destination_locality"}
	requestLabels = append(append([]string{}, peerLabels...), "response_code", "response_flags")
)

// NewMetrics creates and registers the collectors.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	sizeBuckets := prometheus.ExponentialBuckets(64, 4, 10)
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_requests_total",
			Help: "HTTP and gRPC requests (istio_requests_total)."}, requestLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "meridian_request_duration_seconds",
			Help:    "Request duration from the first byte received to the last byte sent (istio_request_duration_milliseconds).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, requestLabels),
		reqBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "meridian_request_bytes",
			Help: "Request body sizes (istio_request_bytes).", Buckets: sizeBuckets}, requestLabels),
		respBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "meridian_response_bytes",
			Help: "Response body sizes (istio_response_bytes).", Buckets: sizeBuckets}, requestLabels),
		tcpSent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_tcp_sent_bytes_total",
			Help: "Bytes sent to the downstream on TCP connections (istio_tcp_sent_bytes_total)."}, peerLabels),
		tcpReceived: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_tcp_received_bytes_total",
			Help: "Bytes received from the downstream on TCP connections (istio_tcp_received_bytes_total)."}, peerLabels),
		tcpOpened: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_tcp_connections_opened_total",
			Help: "Proxied TCP connections opened (istio_tcp_connections_opened_total)."}, peerLabels),
		tcpClosed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_tcp_connections_closed_total",
			Help: "Proxied TCP connections closed (istio_tcp_connections_closed_total)."}, peerLabels),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_proxy_downstream_rejected_total",
			Help: "Downstream connections and requests refused at the edge, by listener and reason."}, []string{"listener", "reason"}),
		Overflow: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_proxy_upstream_overflow_total",
			Help: "Circuit-breaker overflows by cluster and breaker."}, []string{"cluster", "breaker"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_proxy_upstream_retries_total",
			Help: "Request retries by cluster."}, []string{"cluster"}),
		Stale: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_proxy_upstream_stale_connections_total",
			Help: "Requests that met a dead pooled upstream connection (reset or closed before any response) and were sent again on another, by cluster."}, []string{"cluster"}),
		NoHealthy: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_proxy_upstream_no_healthy_total",
			Help: "Requests and connections refused at once because their cluster had no healthy endpoint (flag UH; Envoy's upstream_cx_none_healthy), by cluster."}, []string{"cluster"}),
		Ejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_proxy_outlier_ejections_total",
			Help: "Outlier ejections by cluster and reason."}, []string{"cluster", "reason"}),
		Ejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_proxy_outlier_ejected_hosts",
			Help: "Hosts ejected now, by cluster."}, []string{"cluster"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_proxy_outbound_refused_total",
			Help: "Connections and requests refused by the outbound traffic policy (REGISTRY_ONLY), by listener."}, []string{"listener"}),
		DownstreamActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_proxy_downstream_connections",
			Help: "Open downstream connections by listener."}, []string{"listener"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.reqBytes, m.respBytes, m.tcpSent, m.tcpReceived,
		m.tcpOpened, m.tcpClosed, m.Rejected, m.Overflow, m.Retries, m.NoHealthy, m.Stale, m.Ejections, m.Ejected, m.Refused, m.DownstreamActive} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Labels identify one request's or connection's peers.
type Labels struct {
	Reporter    string
	Source      Peer
	Destination Peer
	// Service is the destination xDS cluster.
	Service string
}

func (l *Labels) values(extra ...string) []string {
	return append([]string{l.Reporter, l.Source.Workload, l.Source.Namespace, l.Source.Cluster,
		l.Destination.Workload, l.Destination.Namespace, l.Destination.Cluster, l.Service, l.Destination.Locality}, extra...)
}

// Request records one finished request.
type Request struct {
	Labels
	Code          string
	Flags         string
	Seconds       float64
	RequestBytes  int64
	ResponseBytes int64
}

// ObserveRequest records a finished request.
func (m *Metrics) ObserveRequest(r *Request) {
	k := requestKey{r.Labels, r.Code, r.Flags}
	o, ok := m.observers.Load(k)
	if !ok {
		v := r.values(r.Code, r.Flags)
		o, _ = m.observers.LoadOrStore(k, &requestObservers{
			count:    m.requests.WithLabelValues(v...),
			duration: m.duration.WithLabelValues(v...),
			reqSize:  m.reqBytes.WithLabelValues(v...),
			respSize: m.respBytes.WithLabelValues(v...),
		})
	}
	ro := o.(*requestObservers)
	ro.count.Inc()
	ro.duration.Observe(r.Seconds)
	ro.reqSize.Observe(float64(r.RequestBytes))
	ro.respSize.Observe(float64(r.ResponseBytes))
}

// TCPOpened records a proxied connection's start.
func (m *Metrics) TCPOpened(l *Labels) { m.tcpOpened.WithLabelValues(l.values()...).Inc() }

// TCPClosed records a proxied connection's end and its bytes.
func (m *Metrics) TCPClosed(l *Labels, sent, received int64) {
	v := l.values()
	m.tcpClosed.WithLabelValues(v...).Inc()
	m.tcpSent.WithLabelValues(v...).Add(float64(sent))
	m.tcpReceived.WithLabelValues(v...).Add(float64(received))
}
