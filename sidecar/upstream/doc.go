// Package upstream is a cluster at run time: its balancer (package lb), its
// circuit breakers, its connections (plain or TLS from SDS, HTTP/1.1 or
// HTTP/2 with or without TLS), and DNS resolution for endpoints published
// as names.
//
// Circuit breakers, as meridian-proxy applies Envoy's thresholds:
//   - max_requests bounds requests in flight to the cluster; beyond it a
//     request is refused at once (503, flag UO, x-envoy-overloaded).
//   - max_connections bounds HTTP/1.1 requests in flight — each holds one
//     connection — and TCP proxy connections; an HTTP/1.1 request beyond it
//     waits as pending, up to max_pending_requests, and is refused beyond
//     that. HTTP/2 multiplexes requests on few connections, so only
//     max_requests applies to it.
//   - max_retries (or a retry budget: a share of the requests in flight,
//     with a floor) bounds retries in flight; a retry beyond it is not
//     made and the failed attempt's answer stands.
//
// Connections are made only on first use, so a proxy that holds a thousand
// clusters it never calls holds no transports for them. Plaintext
// HTTP/1.1 requests with a body in memory (or none) are written and read
// on pooled connections from the calling goroutine (h1Pool); net/http's
// transports, with their per-connection goroutines, carry the rest: TLS,
// HTTP/2, upgrades and streamed bodies. A request that meets a dead pooled
// connection (after a network cut healed) is sent again on a fresh one.
package upstream
