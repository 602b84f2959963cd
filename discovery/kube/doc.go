// Package kube discovers services and endpoints from a Kubernetes API server
// and keeps the local cluster's registry segment up to date.
//
//	API server ──list/watch──► shared informers (Services, EndpointSlices,
//	                           Pods, Nodes; caches with indexes)
//	                                 │ callbacks only enqueue refs
//	                                 ▼
//	                           queue (set of Services / Pods / Nodes touched)
//	                                 │ one batch per BatchWindow
//	                                 ▼
//	         convert (pure): Service + its slices + their Pods and Nodes
//	                                 │ diff against the segment
//	                                 ▼
//	                 registry.Apply(cluster, changes...)  — one version per batch
//
// Use: New(Config{Cluster: ...}, reg) after reg.SetCluster, then Run(ctx) in
// a goroutine (again after it returned, for a new term); Ready/HasSynced
// report the current run's first full sync (for /readyz).
// The connection follows kubectl: Config.Kubeconfig (--kubeconfig), else
// $KUBECONFIG, else ~/.kube/config, else the in-cluster service account;
// Config.Context (--context) picks a context. PolicyRules lists the RBAC the
// source needs (list and watch on services, pods, nodes, endpointslices).
//
// # What becomes what
//
// A Service (not ExternalName) becomes a registry.Service: its ports, with
// the application protocol from appProtocol, else from the port name's
// prefix as Istio reads it ("http-web", "grpc"), else TCP/UDP; SCTP ports
// are left out. ClusterIP None makes it headless.
//
// Its EndpointSlices (label kubernetes.io/service-name) become endpoints:
// one per workload per Service port, where a slice port maps to the Service
// port of the same name and PortName is that name. The endpoint's ID is the
// Pod of its targetRef, else its address; so one Pod listed in an IPv4 and an
// IPv6 slice is one dual-stack endpoint whose Addresses hold both, the
// Service's primary family first. Only an endpoint's first address is used:
// the API says the rest are fungible. FQDN slices are ignored.
//
// Health, from the endpoint's conditions (nil ready means true; nil serving
// takes ready's value):
//
//	not terminating, ready       → Healthy
//	not terminating, not ready   → Unhealthy
//	terminating, serving         → Draining
//	terminating, not serving     → Unhealthy
//
// When one workload appears twice for a port (two slices of one family, or
// its two families), the most serving state wins and the first slice by name
// gives the address.
//
// The Pod gives the service account (an empty one is "default", what the
// Pod runs as) and the labels (version, ...). Locality comes from the Node
// (the endpoint's nodeName, else the Pod's): region from
// topology.kubernetes.io/region, else the cluster's region; zone from
// topology.kubernetes.io/zone, else the slice's zone hint; subzone from
// topology.meridian.io/subzone, else Istio's topology.istio.io/subzone.
// Parts that are not valid label values are dropped, as is a subzone with no
// zone. Anything else that cannot be represented is left out, logged once
// per distinct problem and counted; the rest of the Service still goes in,
// so one bad object never blocks a batch.
//
// # Events, batches and restarts
//
// Informer callbacks only put refs into a set (the Service of a slice; the
// Pod or Node itself) and wake the batch loop; they never block. Pod and
// Node updates that change nothing conversion reads (status, heartbeats)
// are dropped there. The loop waits BatchWindow (default 20ms; the xDS
// server debounces pushes further) after the first event, resolves Pods and Nodes to the Services
// whose slices reference them through the caches' indexes, converts each
// touched Service from the caches, and applies the difference as one batch.
//
// Conversion is level-triggered: it always reads the current cache, never
// the event. So deletes, tombstones (DeletedFinalStateUnknown, which the
// informers emit for objects found missing when they list again after a
// watch gap) and resyncs need no special path: they mark the Service, and
// the conversion sees what is there. After an API server restart the
// informers list again; every Service is converted again and compared with
// the segment, and only what differs is applied — endpoints that did not
// change are not put again, removed or re-added. A tombstone that lost its
// object converts every Service. The Pod and Node caches are stripped to
// what conversion reads, since they are the bulk of a big cluster.
//
// # Departures from the design notes
//
// The segment is shared with the workload API (discovery/workload), so the
// source does not replace the whole segment with Segment.Diff: it keeps a
// record of the keys it put and only ever deletes those, comparing each
// touched Service's wanted values with the segment's current ones. Nothing
// is persisted: the API server is the source of truth, and a restarted
// meridiand lists it again.
//
// Only the leader of a cluster's replicas writes its segment, so meridiand
// runs the source once per term of leading (Run may be called again after
// it returned). A term starts with the segment the previous leader
// published: the source takes every endpoint that is not another source's
// (Config.Foreign) as its own before its first full conversion, so that
// Services and endpoints deleted from Kubernetes while no replica led are
// removed, and what did not change is not put again.
//
// The package must not decide anything about traffic, write to the API
// server, or touch other clusters' segments.
package kube
