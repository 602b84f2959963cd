// Package locality decides where a client's traffic for a service goes:
// priority levels of weighted localities, failover order, and the residency
// filter that traffic may never cross. It is pure: functions of a registry
// view, a client and the policies, with no I/O and no goroutines. The xDS
// translator turns its Assignments into ClusterLoadAssignments; meridianctl
// explain and drill print them.
//
// Default order, before any policy (DESIGN.md): priority 0 is the client's
// own zone, priority 1 the rest of its region, priority 2 every other
// region. Levels without endpoints are dropped so that priorities run from 0
// without gaps, as grpc-go requires.
package locality
