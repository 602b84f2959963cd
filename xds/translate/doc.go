// Package translate turns the global registry view and the policies into
// the Envoy xDS v3 resources one kind of proxy gets: Listeners,
// RouteConfigurations, Clusters and ClusterLoadAssignments, and the names
// of the SDS secrets they refer to.
//
// It is pure: functions of their inputs, no I/O, no goroutines, no clock.
// It never decides where traffic goes — locality.Assign does (priorities,
// locality weights, failover order); this package maps its Assignments to
// Envoy's model. Serving, grouping, caching and versions belong to
// xds/server.
//
// # Scopes
//
// Proxy.Scope(type) names exactly what one resource type's output depends
// on for a proxy — endpoints on the proxy's cluster and locality (and, for
// the east-west and egress gateways, their mode), routes on the mode and
// the namespace (short host names), listeners and clusters on the mode and
// the declared ports. Proxies with equal scopes get identical resources,
// so the server builds each scope's resources once, however many proxies
// share it.
//
// # Names
//
// HOST is a service's mesh host, NAME.NAMESPACE.svc.DOMAIN (DOMAIN is
// Input.Domain, default cluster.local); PORT is the service port.
//
//	resource                       name
//	Cluster / ClusterLoadAssignment outbound|PORT||HOST   (EDS over ADS, one per service port)
//	  a subset or pinned cluster   outbound|PORT|SUBSET|HOST, outbound|PORT|@CLUSTER|HOST,
//	                               outbound|PORT|SUBSET@CLUSTER|HOST
//	sidecar inbound Cluster        inbound|PORT||         (STATIC 127.0.0.1:PORT)
//	sidecar fixed Clusters         PassthroughCluster (ORIGINAL_DST), BlackHoleCluster (also gateways')
//	ServiceEntry host port         outbound|PORT||HOST (STRICT_DNS, STATIC or ORIGINAL_DST)
//	remote JWKS Cluster            jwks|HOST:PORT (STRICT_DNS; sidecars)
//	sidecar Listeners              virtualOutbound (0.0.0.0:15001, original destination),
//	                               virtualInbound (0.0.0.0:15006, a chain per inbound port),
//	                               0.0.0.0_PORT (not bound; one per service port number)
//	sidecar RouteConfiguration     PORT (a virtual host per HTTP service or ServiceEntry
//	                               host on that port, plus allow_any "*" →
//	                               PassthroughCluster, or block_all "*" →
//	                               BlackHoleCluster under REGISTRY_ONLY)
//	proxyless Listener / Route     HOST:PORT, and HOST alone for single-port services
//	ingress, egress Listener/Route ingress_PORT, egress_PORT (bound 0.0.0.0:PORT, default 8080)
//	east-west Listener             east-west_PORT (bound, default 15443), a chain per
//	                               service port matching SNI outbound_.PORT_._.HOST
//	gateway per Gateway port       MODE_PORT (Listener and, for HTTP, RouteConfiguration)
//	inbound chains (mTLS)          inbound|PORT|||tls, inbound|PORT|||raw_buffer,
//	                               PassthroughCluster|tls
//	SDS secrets                    spiffe://TD/ns/NS/sa/SA (the proxy's SVID), ROOTCA
//	                               (trust bundles), NAMESPACE/CREDENTIAL and
//	                               NAMESPACE/CREDENTIAL-cacert (Gateway and
//	                               DestinationPolicy credentials)
//
// Virtual hosts of a sidecar answer to HOST, NAME.NAMESPACE.svc,
// NAME.NAMESPACE, and NAME in the proxy's own namespace, each with and
// without :PORT; gateways answer to HOST:PORT, and HOST for a service's
// first HTTP port.
//
// # Proxyless gRPC
//
// A grpc-go client dials xds:///HOST:PORT, for example
// xds:///checkout.shop.svc.cluster.local:9090 (xds:///HOST also works when
// the service has one port). grpc-go asks for the Listener of exactly that
// name and matches the route's virtual-host domains against it; it gets an
// API listener whose HTTP connection manager takes its routes over RDS and
// ends with the router filter, the route configuration, an EDS cluster
// (ROUND_ROBIN, which grpc-go runs as wrr_locality over round_robin so
// locality weights count) and the load assignment. Priorities run from 0
// without gaps and every locality weight is at least 1, as grpc-go
// requires. grpc-go announces the client feature
// envoy.lb.does_not_support_overprovisioning: it leaves a priority level
// only when the whole level is down (UNHEALTHY or DRAINING in EDS,
// unreachable, or ejected), with none of Envoy's partial spill; Proxy
// records it as NoOverprovisioning.
//
// # Node identity
//
// ParseNode reads the node of a stream's first request:
//
//	node.id                     required; the proxy's id in logs, metrics and /debug/xds
//	node.locality               region/zone/sub_zone; when empty the server uses the
//	                            region of the proxy's cluster
//	node.client_features        envoy.lb.does_not_support_overprovisioning ⇒ proxyless
//	node.user_agent_name        "gRPC ..." ⇒ proxyless
//	metadata.mode               sidecar | ingress | egress | east-west | proxyless;
//	                            default proxyless for gRPC clients, else sidecar
//	metadata.cluster            the proxy's Meridian cluster; default the serving
//	                            control plane's own
//	metadata.namespace          default "default"
//	metadata.service_account    optional
//	metadata.inbound_ports      sidecar: the workload's ports, a list or "8080,9090",
//	                            each optionally PORT/PROTOCOL ("8080/http"): HTTP,
//	                            HTTP2 and GRPC ports get an HTTP connection manager
//	                            so that authorization applies
//	metadata.listener_port      gateways: default 8080 (15443 for east-west)
//	metadata.labels             the workload's labels, an object of strings: what
//	                            PeerAuthentication, AuthorizationPolicy,
//	                            RequestAuthentication and Gateway selectors match
//	metadata.outbound_traffic_policy
//	                            ALLOW_ANY | REGISTRY_ONLY; default the mesh's
//	                            (NodeDefaults.RegistryOnly)
//
// The node's identity claims (namespace, service_account) are only
// claims: mTLS and secrets follow Proxy.Identity, which the server sets
// after attesting the stream, never from the node.
//
// A present but malformed value is an error naming the field (for example
// `node.metadata[mode]: Unsupported value: "mesh"`); the server answers it
// with InvalidArgument and closes only that stream.
//
// # Multi-network
//
// Endpoints on a network other than the client cluster's are reached
// through their cluster's east-west gateways (registry Cluster.Gateways,
// HOST:PORT): one endpoint per gateway in the endpoints' locality,
// weighted by the serving endpoints behind it, HEALTHY while any of them
// serves. Only endpoints residency allows count, so a gateway fronting
// none of them is not sent at all. The client's cluster carries the mTLS
// of the destination service with SNI outbound_.PORT_._.HOST, which the
// gateway routes on without terminating it.
//
// A gateway published as a DNS name (EKS load balancers publish
// hostnames) is an EDS endpoint whose socket address and hostname are the
// name: meridian-proxy resolves and re-resolves it, and grpc-go resolves
// it when it connects. Envoy requires IPs in EDS and refuses the name; for
// Envoy, publish gateway IPs. The alternative shapes were worse: a
// STRICT_DNS cluster per remote gateway cannot share one load assignment's
// priorities and locality weights with the direct endpoints, and resolving
// names here would make translation do I/O. A cluster on another network
// without gateways is reported in Result.Warnings and left out.
//
// # Security
//
// A proxy with an attested identity (Proxy.Identity) gets mutual TLS over
// SDS, in package trust's own shapes:
//
//   - outbound mesh clusters (sidecars, ingress and egress gateways):
//     trust/sds.UpstreamTLS — its SVID, the ROOTCA bundle, the exact
//     SPIFFE IDs of the service accounts the service's endpoints run as,
//     and SNI outbound_.PORT_._.HOST for east-west routing. East-west
//     gateways pass TLS through and never originate it; proxyless clients
//     get none (grpc-go takes certificates from certificate providers in
//     its bootstrap, not SDS). A proxy without an identity has no SVID to
//     present and connects in plaintext: a mesh mixing attested and
//     unattested proxies sets tls disable in a DestinationPolicy for the
//     plaintext destinations.
//   - the sidecar's inbound listener: per workload port the chains of
//     trust/mtls.InboundChains(trust/mtls.ModeFor(objects, workload,
//     port), identity) — STRICT unless a PeerAuthentication says
//     PERMISSIVE — behind a tls_inspector; undeclared ports pass through
//     over mTLS, and in plaintext only under PERMISSIVE.
//   - HTTP workload ports (metadata.inbound_ports "PORT/http") get an HTTP
//     connection manager with trust/authz.HTTPFilters (JWT, then DENY and
//     ALLOW RBAC) before the router, so that RBAC, JWT and response codes
//     apply at the destination. Policies selecting a workload with no HTTP
//     port are warned about: they are enforced on HTTP ports only. Every
//     sidecar's clusters carry the JWKS clusters of every
//     RequestAuthentication, which keeps clusters shared; those of https
//     key sets verify the server with the system's roots
//     (validation_context.system_root_certs, Envoy's way to say so).
//     meridian-proxy fetches key sets itself (trust/jwt) but decodes these
//     clusters too: it has to accept that shape.
//   - DestinationPolicy tls: mesh (the default for mesh services), disable
//     (the default for ServiceEntry hosts), simple (the credential's CA
//     NAME-cacert over SDS, or the system's roots; SNI and
//     subjectAltNames) and mutual (also the client certificate NAME).
//
// Credentials (a Gateway's or DestinationPolicy's credentialName) are SDS
// secrets NAMESPACE/NAME; Credentials names those a proxy may receive: only
// of its attested identity's namespace, as Istio confines credentialName to
// the gateway's namespace, so that no workload reads another namespace's
// keys. A proxy of another namespace whose cluster names such a secret
// never gets it, and that cluster does not connect.
//
// # Outbound traffic policy
//
// ALLOW_ANY (the default) passes hosts the mesh does not know through to
// their original destination; REGISTRY_ONLY sends them to BlackHoleCluster:
// the virtualOutbound chain, the block_all virtual host of every sidecar
// route configuration, TLS server names no host claims, and an egress
// gateway's block_all virtual host. Mesh services and ServiceEntry hosts
// stay reachable.
//
// # ServiceEntries
//
// Every host and port of a ServiceEntry is a cluster outbound|PORT||HOST:
// STRICT_DNS for resolution dns (its endpoints' names, or the host itself),
// STATIC for static (with their localities and weights), ORIGINAL_DST for
// none (sidecars only: a gateway has no original destination). HTTP ports
// get a virtual host in the sidecar's route for the port (with the HTTP
// rules of mesh TrafficRoutes naming the host) and in egress gateways'
// routes, TLS ports an SNI chain, TCP ports the port's default chain when
// no other host claims it. grpc-go and east-west gateways get none. Their
// endpoints are not in the registry, so residency rules do not reach them.
//
// # Gateways
//
// A gateway proxy is configured by the Gateway objects of its mode's type
// whose selector matches its labels (any namespace), or that have no
// selector and live in its namespace; without any, it keeps the default
// listener (ingress_PORT, egress_PORT: every HTTP mesh service by Host;
// east-west_PORT: SNI passthrough). Per port a Gateway opens, MODE_PORT:
// HTTP listeners route by the TrafficRoutes bound to the Gateway
// (spec.gateways naming it, in its namespace) for the listener's hosts — a
// host no bound route covers goes to the mesh service or ServiceEntry host
// of that name, "*" to all of them; HTTPS terminates with the listener's
// credential over SDS, chains told apart by server name (mutual also
// verifies clients against NAME-cacert); TLS passthrough routes by server
// name to the bound TCP rules' destinations or the named host; mesh (the
// east-west type) is the SNI chain per local service port; TCP goes to
// the bound TCP rule's destinations. Gateway routes reach load assignments
// through the same engine as everyone else: residency holds through every
// gateway, and so it does for mirrors.
//
// # Health
//
// Endpoint health is the registry's effective health (cluster state folded
// in): Healthy and Stale are HEALTHY (control-plane silence is not proof of
// data-plane death), Draining is DRAINING, Unhealthy is UNHEALTHY.
//
// # Policies
//
// CompilePolicies indexes a policy set (api/v1alpha1); Input.Policies
// carries it. What each kind becomes:
//
//   - FailoverPolicy, ResidencyRule (and outlier detection): through the
//     locality engine's Assignments — priorities, locality weights,
//     distribute, and residency, which removes endpoints before any
//     ordering so that no client of any mode ever gets them (not as a
//     lower priority, not through a gateway). Every cluster carries the
//     engine's outlier detection (consecutive 5xx and gateway errors;
//     success-rate ejection off). grpc-go implements only success-rate and
//     failure-percentage ejection, so proxyless clients leave endpoints on
//     EDS health and reachability alone.
//   - DestinationPolicy: load balancer (random becomes round-robin for
//     grpc-go, with a warning), circuit breakers, connect timeout, requests
//     per connection, client TLS (see Security), and subsets, each a
//     cluster of its own.
//   - TrafficRoute with the mesh gateway: the HTTP rules of the service's
//     virtual host for sidecars and proxyless clients, in order — matches
//     (path, method, headers), weighted destinations by subset or pinned
//     cluster, timeout, retries, mirror and faults (the fault filter is in
//     every HTTP connection manager, inert unless a route sets it). A
//     request no rule matches gets a 404, as with Istio's VirtualService.
//     TCP rules (port and SNI matches, weighted destinations) drive the
//     sidecar's tcp_proxy for TCP and TLS ports. Routes naming other
//     gateways configure those (see Gateways) and never the sidecars.
//
// # Departures from DESIGN.md and from meridian-proxy's proposal
//
// The registry has no virtual IPs, so a sidecar's outbound ports are shared
// by every service on them: HTTP services are told apart by Host and TLS
// services by SNI, while a plain-TCP port can only go to one service (the
// first by name; the others are reported in Result.Warnings).
//
// The security shapes follow the proposal meridian-proxy's author wrote
// (sidecar/internal/proposal), with these differences, and why:
//   - Under REGISTRY_ONLY the sidecar's catch-all virtual host is named
//     block_all (Istio's name), not a retargeted allow_any, so that the
//     name says what it does.
//   - TLS-only outbound ports get a default chain (PassthroughCluster, or
//     BlackHoleCluster under REGISTRY_ONLY): the proposal left unknown
//     server names to be closed without a word.
//   - mTLS is per proxy identity and only for an attested one, rather than
//     for every proxy given an SVID: the server never names a secret it
//     will not send.
//   - ServiceEntries get their own virtual hosts in egress gateways only;
//     an ingress gateway exposes the mesh, not hosts outside it. Their
//     clusters' connect timeout is the mesh's (10s) unless a
//     DestinationPolicy sets one.
//   - Inbound gRPC and HTTP/2 ports' clusters speak HTTP/2 to the
//     application.
package translate
