// Package demo is the lab's demo application: one small gRPC service
// (lab/demopb) that every demo service — frontend, catalog, inventory,
// customer-records — runs, each instance answering with where it runs
// (service, version, cluster, region, zone, address) after the hops of the
// upstream services it calls in turn. A client thus sees the whole path a
// request took through the mesh, which is what the traffic generator
// (lab/traffic) counts.
//
//	traffic ──xds:///frontend──► frontend ──xds:///catalog──► catalog ──► inventory
//	           (proxyless gRPC,     │ reply: [frontend hop, catalog hop, inventory hop]
//	            or a sidecar)       ▼
//
// Upstreams are dialed by the caller's choice (Config.Upstreams): proxyless
// gRPC (xds:///HOST:PORT through grpc-go's xDS resolver, with a bootstrap
// from Bootstrap pointing at the instance's own meridiand), or a plain
// address such as a sidecar's outbound port.
//
// Keepalive registers an instance with meridiand's Workload API and
// heartbeats until its context ends, registering again when meridiand
// forgot it (a restart without etcd), and deregistering on the way out.
//
// What it must not do: decide anything about routing. The demo app is a
// probe; the mesh under test decides where its requests go.
package demo
