// Package httpproxy is meridian-proxy's HTTP connection manager: it serves
// HTTP/1.1, HTTP/2 over TLS and cleartext HTTP/2 (prior knowledge) on the
// connections the listener layer hands it, routes each request through the
// route configuration, runs the HTTP filters, and forwards (forward.go)
// over golang.org/x/net/http2 and HTTP/1.1 transports (package upstream).
//
//	conn ─► Server (h1.go's HTTP/1.1 loop | http2.Server, edge limits)
//	      ─► Handler: virtual host ─► route ─► jwt_authn ─► rbac ─► fault ─► router
//	      ─► forward ─► attempts: pick host, breakers,
//	         per-try timeout, retry with backoff on another host, outlier reports
//	      ─► response: header ops, peer labels, metrics, access log, span
//
// gRPC is HTTP/2 with trailers and is proxied as such; local replies to
// gRPC requests (no route, no upstream, faults, denials) are gRPC
// trailers-only responses with the status Envoy would map the HTTP code to.
//
// HTTP/1.1 is served by the package's own connection loop (h1.go) on
// net/http's request parser, not by net/http's Server: that server watches
// each connection with a goroutine of its own during every request and
// wakes and waits for it at the end of each, which cost a saturated proxy
// a fifth of its throughput (measured: 24–25.7k against 30–31k req/s on one
// core). The loop watches only requests that run longer than a second, so
// a client that goes away still cancels its upstream request.
//
// Edge limits: request headers are bounded in bytes (max_request_headers_kb)
// and count (max_headers_count) and must arrive within
// request_headers_timeout (default 10 s here, so slow clients cannot pin
// connections); malformed requests are refused as net/http's server
// refuses them (400, 417, 431, 505). Every refusal is counted
// (meridian_proxy_downstream_rejected_total, by reason) and costs only its
// own connection.
//
// Headers are edited in place, as Envoy edits its one header map: the
// outgoing request shares the incoming one's map, and the upstream
// response's map becomes the response's. The access log therefore reads
// X-Forwarded-For and User-Agent as they went upstream, as Envoy's does.
// Each copy the proxy does not make is garbage the collector does not
// chase: on a one-core sidecar the collector's mark phase is where the
// slowest percentile of requests waits.
//
// Retries: the request body is kept for replay when it is at most
// MaxRetryBody bytes; a larger or streaming body can still be retried after
// a connect failure, because it was never read. Mirrors (request_mirror_
// policies) get a copy of requests with a replayable body, with "-shadow"
// appended to the authority as in Envoy; their answers are discarded, their
// number in flight is bounded, and they never slow the original request.
package httpproxy
