// Package locality decides where a client's traffic for a service goes:
// priority levels of weighted localities, failover order, the residency
// filter that traffic may never cross, health merged from every source,
// and what-if analysis for drills. It is pure: functions of a registry
// view, a client and the policies (api/v1alpha1), with no I/O and no
// goroutines. The xDS translator turns its Assignments into
// ClusterLoadAssignments; meridianctl explain and drill print them.
//
//	registry.View ─┐
//	policies ──► Engine (compiled, immutable) ──► Assign(view, service, client) → Assignment
//	drills ────────┘        │                         levels, weights, reasons, blocked, audited
//	                        ├─► Build(view, clients) → Table ──Update(view, Delta)──► Table
//	                        ├─► WhatIf(view, target) → DrillReport
//	                        └─► CheckResidency(view) → findings (rules stranding a service)
//	Assignment.PriorityLoad → Envoy's per-priority load (package priority); Assignment.Distribution → per-locality shares
//
// Order. Priority 0 is the client's own zone, 1 the rest of its region,
// then other regions (DESIGN.md). A FailoverPolicy replaces the "other
// regions" part with its from → to order (unlisted regions last,
// together), or replaces the whole order with its failoverPriority labels
// (Istio's semantics: rank = labels not matched, counting from the end).
// A distribute rule for the client's locality puts its target localities
// first, weighted as given, and leaves the rest in failover order behind
// them — a departure from Istio, where distribute turns failover off: here
// a distributed client still fails over. Subzones do not make levels of
// their own. Levels without endpoints are dropped, so priorities run from
// 0 without gaps and every locality weight is non-zero, as grpc-go
// requires.
//
// Residency is applied per service before any ordering, so an endpoint an
// enforced rule excludes is at no level for any client under any health:
// the test suite checks that property over random topologies and health
// patterns. When every allowed endpoint is down the client gets unhealthy
// endpoints (or none) and its requests fail. Audit-mode rules change
// nothing and list what they would block.
//
// Every decision carries a Reason naming the rule and the policy (object
// and field) that made it, for explain.
//
// It must not do I/O, log, keep state between calls or start goroutines:
// the daemon, the xDS server and meridianctl own those, and pass views and
// policies in.
//
// Cost. Everything that does not depend on the client (policy matching,
// residency, health, grouping by locality) is computed once per service
// and shared by all clients' assignments; endpoint slices are shared, so
// callers must not modify assignments. A Table keeps every service's
// assignments in an immutable radix tree and recomputes only the services
// a registry.Delta touches.
package locality
