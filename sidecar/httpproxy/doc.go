// Package httpproxy is meridian-proxy's HTTP connection manager: it serves
// HTTP/1.1, HTTP/2 over TLS and cleartext HTTP/2 (prior knowledge) on the
// connections the listener layer hands it, routes each request through the
// route configuration, runs the HTTP filters, and forwards with
// net/http/httputil.ReverseProxy over golang.org/x/net/http2 and net/http
// transports (package upstream).
//
//	conn ─► Server (http.Server | http2.Server, edge limits)
//	      ─► Handler: virtual host ─► route ─► jwt_authn ─► rbac ─► fault ─► router
//	      ─► ReverseProxy ─► attempts (RoundTripper): pick host, breakers,
//	         per-try timeout, retry with backoff on another host, outlier reports
//	      ─► response: header ops, peer labels, metrics, access log, span
//
// gRPC is HTTP/2 with trailers and is proxied as such; local replies to
// gRPC requests (no route, no upstream, faults, denials) are gRPC
// trailers-only responses with the status Envoy would map the HTTP code to.
//
// Edge limits: request headers are bounded in bytes (max_request_headers_kb)
// and count (max_headers_count) and must arrive within
// request_headers_timeout (default 10 s here, so slow clients cannot pin
// connections); malformed requests are refused by the HTTP stacks. Every
// refusal is counted (meridian_proxy_downstream_rejected_total, by reason)
// and costs only its own connection.
//
// Retries: the request body is kept for replay when it is at most
// MaxRetryBody bytes; a larger or streaming body can still be retried after
// a connect failure, because it was never read. Mirrors (request_mirror_
// policies) get a copy of requests with a replayable body, with "-shadow"
// appended to the authority as in Envoy; their answers are discarded, their
// number in flight is bounded, and they never slow the original request.
package httpproxy
