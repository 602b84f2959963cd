// Package translate turns the global registry view (and, as they land, the
// policies) into the Envoy xDS v3 resources one kind of proxy gets:
// Listeners, RouteConfigurations, Clusters and ClusterLoadAssignments.
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
//	sidecar fixed Clusters         PassthroughCluster (ORIGINAL_DST), BlackHoleCluster
//	sidecar Listeners              virtualOutbound (0.0.0.0:15001, original destination),
//	                               virtualInbound (0.0.0.0:15006, a chain per inbound port),
//	                               0.0.0.0_PORT (not bound; one per service port number)
//	sidecar RouteConfiguration     PORT (a virtual host per HTTP service on that port,
//	                               plus allow_any "*" → PassthroughCluster)
//	proxyless Listener / Route     HOST:PORT, and HOST alone for single-port services
//	ingress, egress Listener/Route ingress_PORT, egress_PORT (bound 0.0.0.0:PORT, default 8080)
//	east-west Listener             east-west_PORT (bound, default 15443), a chain per
//	                               service port matching SNI outbound_.PORT_._.HOST
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
//	metadata.inbound_ports      sidecar: the workload's ports, a list or "8080,9090"
//	metadata.listener_port      gateways: default 8080 (15443 for east-west)
//
// A present but malformed value is an error naming the field (for example
// `node.metadata[mode]: Unsupported value: "mesh"`); the server answers it
// with InvalidArgument and closes only that stream.
//
// # Multi-network
//
// Endpoints on a network other than the client cluster's are reached
// through their cluster's east-west gateways (registry Cluster.Gateways,
// IP:port): one endpoint per gateway in the endpoints' locality, weighted
// by the serving endpoints behind it, HEALTHY while any of them serves.
// The SNI and mTLS the client must present to the gateway arrive with the
// trust work; a cluster on another network without gateways is reported in
// Result.Warnings and left out.
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
//     per connection, and subsets, each a cluster of its own. Client TLS
//     waits for the trust work (warned).
//   - TrafficRoute with the mesh gateway: the HTTP rules of the service's
//     virtual host for sidecars and proxyless clients, in order — matches
//     (path, method, headers), weighted destinations by subset or pinned
//     cluster, timeout, retries, mirror and faults (the fault filter is in
//     every HTTP connection manager, inert unless a route sets it). A
//     request no rule matches gets a 404, as with Istio's VirtualService.
//
// Not translated yet: TCP routes, routes bound to named gateways, the
// Gateway and ServiceEntry kinds.
//
// # Departures from DESIGN.md
//
// The registry has no virtual IPs, so a sidecar's outbound ports are shared
// by every service on them: HTTP services are told apart by Host and TLS
// services by SNI, while a plain-TCP port can only go to one service (the
// first by name; the others are reported in Result.Warnings). Inbound
// listeners are L4 until authorization policies need L7.
package translate
