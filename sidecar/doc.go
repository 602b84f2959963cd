// Package sidecar assembles meridian-proxy, Meridian's own data plane: an
// xDS client and an L4/L7 proxy that runs exactly the Envoy v3 resources
// the control plane would send Envoy — no private side channel — in four
// modes: sidecar, ingress gateway, egress gateway and east-west gateway.
//
//	meridiand (xds/server) ══ADS══► xdsclient ──State──► dataplane ──► listen ──► httpproxy / tcpproxy
//	                                     │                   │                         │
//	                                 xdsconfig           upstream (clusters,       telemetry (metrics,
//	                             (decode, NACK)          breakers, TLS) ─► lb      traces, access logs)
//	                                                     identity (SDS, SPIFFE)
//
// Packages, one concept each: xdsclient (the ADS stream), xdsconfig (what a
// resource means; refuses what the proxy cannot honour), lb (Envoy's
// priority and locality load balancing, outlier detection), upstream (a
// cluster at run time), identity (TLS from SDS, SPIFFE peer checks),
// listen (sockets, listener filters, filter chains), httpproxy and
// tcpproxy (the network filters), telemetry, dataplane (applies states),
// enroll (the proxy's own SVID outside Kubernetes, from a join token).
// Process-level: gcpace (the collector's pacing: heap floor, idle
// collection), sched (the CPU slice the command asks the kernel for), and
// internal/sockio (the data path's socket reads and writes as raw system
// calls, which keep the runtime's monitor thread asleep).
//
// Sidecar mode without traffic capture (the lab, VMs, a laptop): the
// virtual listeners are not bound; instead explicit ports stand for the
// destinations captured traffic would have had —
//
//	Inbound  LISTEN=APPPORT     mTLS from the mesh on LISTEN, served by the
//	                            virtualInbound chains for port APPPORT,
//	                            forwarded to 127.0.0.1:APPPORT
//	Upstream LISTEN=HOST:PORT   the application's plain connections to
//	                            LISTEN go to the mesh service HOST:PORT
//	HTTPProxy LISTEN            HTTP_PROXY / CONNECT, routed like captured
//	                            traffic
//
// — and the workload registers LISTEN of its inbound port as its endpoint.
// With capture (Capture: true: the init container package inject adds sets
// up iptables REDIRECT to 15001/15006, exempting the proxy's user 1337),
// the listeners bind where the control plane says and SO_ORIGINAL_DST
// recovers each connection's destination.
//
// Departures from DESIGN.md and from Envoy, and why:
//   - Listener and route updates keep sockets; replaced filter chains
//     drain their connections for a bounded time rather than Envoy's
//     drain sequence with listener warming (a listener whose routes have
//     not arrived answers 404 until they do).
//   - request_headers_timeout defaults to 10 s (Envoy: none), so slow
//     clients cannot pin connections on an unconfigured proxy.
//   - EDS endpoints may be DNS names (remote east-west gateways published
//     as hostnames); they are resolved and re-resolved. Envoy refuses them.
//   - A cluster with no endpoint HEALTHY or DEGRADED in EDS (every one
//     UNHEALTHY or DRAINING) answers 503 "no healthy upstream" (flag UH,
//     meridian_proxy_upstream_no_healthy_total) at once. Envoy's total
//     panic would send to those endpoints anyway and fail after a connect
//     timeout; the registry's contract is that unhealthy endpoints get no
//     traffic. Panic mode is otherwise Envoy's, ejected hosts included.
//   - A request that fails on a reused upstream connection before any
//     response (reset, broken pipe, end of stream, an HTTP/2 connection
//     lost under it) is sent again on a fresh connection whatever its
//     method and the route's retry policy, when its body is in memory
//     (up to 64 KiB): after a network cut heals, pooled connections are
//     dead and the host never saw those requests. Envoy leaves that to
//     the retry policy.
//   - STRICT_DNS clusters resolve at connection time like LOGICAL_DNS.
//   - Authorization arrives as Envoy RBAC filters (trust translates the
//     policies; there is no side channel for the policy objects), so
//     package authz evaluates Envoy's RBAC semantics itself and is tested
//     to decide exactly as trust/authz's evaluator over a grid of
//     requests; JWTs are validated by trust/jwt. A filter the proxy cannot
//     evaluate is NACKed rather than silently unenforced.
package sidecar
