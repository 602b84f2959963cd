// Package registry holds Meridian's service registry: the model (clusters,
// localities, services, endpoints and their health), one cluster's segment,
// and the global view that merges the segments of every cluster in the mesh.
//
// Data flow:
//
//	discovery (kube, workload API) ──Apply──►┐
//	federation (pulled batches)  ──ApplyBatch┤  Registry (one writer lock)
//	federation (full copies)     ──Replace──►┘        │ atomic pointer swap
//	                                                  ▼
//	                              *View (immutable) ◄── readers, lock-free
//	                              Subscription.Next ◄── consumers get the newest
//	                                                    view plus the coalesced
//	                                                    set of keys that changed
//
// Snapshots are immutable values. Segments keep services and endpoints in
// persistent radix trees (hashicorp/go-immutable-radix), so one endpoint
// change copies O(log n) nodes and never rebuilds the registry; a view is a
// small map of segments, copied on every change. Readers never take a lock
// and never block writers.
//
// Subscribers are never allowed to stall writers. Instead of a queue of
// events, each subscription accumulates the set of keys that changed since
// the consumer last looked (a dirty set) and a one-slot wake-up channel; the
// consumer reads that set together with the newest view. Memory per
// subscription is bounded by the size of the registry, not by the rate of
// change, and a slow consumer simply sees several changes at once.
//
// Every segment has an epoch and a version. The owner bumps the version by
// one per applied batch; a restarted owner starts a new epoch, so replicas
// know that versions from different epochs cannot be compared and take a
// full copy. The registry keeps a bounded log of recent batches per segment
// (deletes in it are the tombstones, with a bounded life) so that federation
// can serve "changes since version v" to peers that are behind.
//
// The registry must not do I/O, start goroutines, or know where its input
// comes from: discovery and federation feed it, the xDS and locality
// packages read it.
package registry
