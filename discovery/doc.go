// Package discovery is the home of Meridian's two discovery sources, each in
// its own package. Both turn what they watch into registry values and feed
// them into the local cluster's segment (registry.Apply); neither decides
// anything about traffic, and neither knows about the other except through
// the segment they share.
//
//	Kubernetes API ──informers──► discovery/kube ──────┐
//	                                                   ├──► local segment ──► global view
//	VMs, processes ──gRPC──► discovery/workload ───────┘     (registry)
//	                              │
//	                              └── etcd /meridian/workloads/
//
// discovery/kube runs client-go informers on Services, EndpointSlices, Pods
// and Nodes, takes localities from node topology labels, and applies
// batches. The API server is the source of truth, so nothing is persisted.
//
// discovery/workload serves the Workload API, through which workloads
// outside Kubernetes register, heartbeat and deregister. It is the source of
// truth for them, so registrations live in etcd and survive a meridiand
// restart; missed heartbeats make them unhealthy, then remove them.
//
// Sharing one segment: each source only changes or deletes the services
// and endpoints it put there itself. Where both describe the same service,
// the Kubernetes definition (ports, protocols) wins, and registered
// workloads add endpoints to it. Endpoint IDs are pod names (or addresses)
// on one side and "SERVICE-HASH" on the other, so they meet only if a pod is
// named exactly like a workload's ID.
package discovery
