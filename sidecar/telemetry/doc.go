// Package telemetry is meridian-proxy's observability: Prometheus metrics
// named and labelled like Istio's standard metrics, W3C trace context and
// B3 propagation with optional OTLP export (OpenTelemetry Go SDK), and
// JSON access logs through slog.
//
// Metric names beside Istio's equivalents:
//
//	meridian-proxy                              Istio
//	meridian_requests_total                     istio_requests_total
//	meridian_request_duration_seconds           istio_request_duration_milliseconds
//	meridian_request_bytes                      istio_request_bytes
//	meridian_response_bytes                     istio_response_bytes
//	meridian_tcp_sent_bytes_total               istio_tcp_sent_bytes_total
//	meridian_tcp_received_bytes_total           istio_tcp_received_bytes_total
//	meridian_tcp_connections_opened_total       istio_tcp_connections_opened_total
//	meridian_tcp_connections_closed_total       istio_tcp_connections_closed_total
//
// Labels: reporter (source for outbound, destination for inbound, gateway
// for gateways), source_workload, source_namespace, source_cluster,
// destination_workload, destination_namespace, destination_cluster,
// destination_service (the xDS cluster), destination_locality, and for
// requests response_code and response_flags (Envoy's flags: UH, UF, UO,
// NR, URX, UT, DC, FI, DI, RBAC, UAEX, DO). Seconds instead of
// milliseconds follow Prometheus' naming conventions.
//
// Workload labels come from a small peer exchange, in the spirit of
// Istio's metadata exchange: a sidecar adds x-meridian-peer (its workload,
// namespace, cluster and locality) to the requests it sends and to the
// responses it returns, and strips the peer's header before the
// application sees it. Plain TCP has no such header: its labels come from
// the peer's SPIFFE ID and the endpoint's EDS locality.
//
// Proxy health metrics (edge rejections, circuit-breaker overflows,
// retries, ejections, xDS) use the meridian_proxy_ prefix.
package telemetry
