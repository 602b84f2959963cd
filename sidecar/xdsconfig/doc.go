// Package xdsconfig says what an xDS resource means to meridian-proxy: it
// decodes Listeners, RouteConfigurations, Clusters, ClusterLoadAssignments
// and Secrets (Envoy's v3 messages, exactly as the control plane sends them
// to Envoy) into immutable, compiled values the data plane runs, and refuses
// what it cannot honour with an error naming the resource, the field and the
// reason. Those errors become the NACK detail the control plane logs.
//
//	*anypb.Any ──Decoder.Decode──► *Listener | *RouteConfig | *Cluster | *Endpoints | *Secret
//	                                   (References: RDS names, EDS names, SDS names)
//
// Every message is first held to the field rules Envoy's API declares (the
// validate annotations, as Envoy checks them), by package fieldrules, which
// reads them from the descriptors instead of linking the generated
// validators; then compiled, refusing what the proxy cannot honour.
//
// It is pure: no sockets, no files, no clock, no goroutines; regular
// expressions are compiled here once so a bad one is a NACK, not a failure
// at request time. It must not import the control plane (registry,
// locality, api/v1alpha1) or Kubernetes: the proxy's memory follows its
// binary's size, and everything it needs is in the Envoy messages
// (cmd/meridian-proxy's TestNoControlPlaneDependencies checks).
//
// What is honoured, and what is refused rather than ignored:
//   - Listeners: socket address, bind_to_port, use_original_dst, the
//     tls_inspector, http_inspector and original_dst listener filters, filter
//     chains matched as Envoy matches them (destination port and prefix,
//     server names with wildcards, transport protocol, ALPN), a default
//     chain, and one network filter per chain: http_connection_manager or
//     tcp_proxy (single or weighted clusters). API listeners (proxyless
//     gRPC) are accepted and not served. Pipes, UDP, other filters: refused.
//   - HTTP connection manager: routes inline or over RDS, the HTTP filters
//     router, fault, rbac and jwt_authn (others refused unless is_optional),
//     header size and count limits, request, header and idle timeouts.
//   - Routes: virtual hosts by domain (exact, *.suffix, prefix.*, *), path
//     prefix/exact/regex/separated-prefix, header and query matches, gRPC
//     matches, runtime_fraction defaults, cluster, weighted clusters,
//     cluster_header, direct responses and redirects, timeout (Envoy's
//     default 15 s when unset), retry policy, mirror policies, rewrites,
//     header additions and removals, per-route fault and RBAC overrides.
//   - Clusters: STATIC, STRICT_DNS, LOGICAL_DNS, EDS, ORIGINAL_DST;
//     round robin, least request, random (also through
//     load_balancing_policy); locality-weighted config, panic threshold;
//     circuit breakers with retry budgets; outlier detection; upstream TLS
//     with SDS or inline material and SAN matchers; HTTP/2 upstream options.
//   - Load assignments: priorities, locality weights, endpoint health and
//     weights, overprovisioning factor, drop overloads. An endpoint address
//     may be a DNS name (an east-west gateway published as a hostname):
//     meridian-proxy resolves it and re-resolves it; Envoy would refuse it.
//   - Secrets: certificate chains and keys, validation contexts with trusted
//     CAs or SPIFFE bundles per trust domain; inline data only (files are
//     the bootstrap's business, not the control plane's).
//
// RBAC and JWT filters are compiled by the factories in Options (package
// trust's evaluator); without one, a resource carrying them is refused, so
// a policy is never silently unenforced.
package xdsconfig
