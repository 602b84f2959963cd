// Package dataplane runs meridian-proxy's configuration: it applies each
// accepted xDS state (package xdsclient) to the running parts — secrets,
// clusters and their endpoints, route configurations, listeners — in
// Envoy's order (secrets and clusters before the listeners and routes that
// use them), and serves the lookups the proxies make per request.
//
//	xdsclient.State ──Apply──► identity.Secrets
//	                          clusters (upstream.Cluster, kept across updates by name)
//	                          routes (atomic map)
//	                          listen.Manager (sockets, chains)
//
// Unchanged resources keep their identity from one state to the next (the
// client reuses the decoded value of identical bytes), so an update costs
// in proportion to what changed: an endpoint change touches one balancer,
// and no listener is rebuilt for it.
package dataplane
