// Package workload serves the Workload API: how workloads outside
// Kubernetes (VMs, on-prem processes, the lab's demo services) join the
// mesh. It owns the gRPC service in workloadpb, the registrations under the
// etcd prefix /meridian/workloads/NAMESPACE/SERVICE/ID, and their part of
// the local registry segment.
//
// Life of a registration:
//
//	Register ──► healthy ──TTL without heartbeat──► unhealthy ──Grace──► removed
//	                ▲                                   │             (etcd too)
//	                └────────── Heartbeat/Register ─────┘
//
// A registration is one address:port of one service. Its ID is derived from
// namespace, service and address:port ("web-3f2a9c1b7d4e"), so registering
// again — after a crash, from a retry, or from two racing callers — finds
// the same workload: one ID, one endpoint, and the new fields replace the
// old ones. A workload serving two ports registers twice. Deregister
// removes a workload at once; Heartbeat renews its TTL.
//
// Registering also defines the service in the local segment (its ports and
// protocols, derived from all its registrations; see service.go) unless
// another source — Kubernetes discovery — defines it: then that definition
// wins and the workloads only add endpoints. A registration that disagrees
// with the service's other registrations (one port name, two protocols; one
// port number, two names) is rejected like any other bad input:
// InvalidArgument with a google.rpc.BadRequest naming the field, and
// nothing changes.
//
// Durability: etcd holds the registrations, not the heartbeats; writing
// every heartbeat would make etcd the bottleneck of a liveness signal that
// is only meaningful in memory. A restarted server loads every
// registration, puts it into the segment, and gives it a fresh TTL.
//
// What it must not do: decide health from anything but heartbeats (probing
// is the proxy's job), or write outside its prefix and its own endpoints and
// service definitions in the segment.
//
// One replica serves. Heartbeats live in memory, so only one replica of a
// cluster's meridiand may hold them, and only the leader may write the
// segment: the server serves while Run runs, and meridiand runs it for
// each term this replica leads its cluster (federation's OnLead). A term
// starts by loading every registration from etcd (fresh TTLs) and ends by
// forgetting them, leaving etcd and the segment to the next leader. While
// Run does not run, every call is answered Unavailable with a
// google.rpc.ErrorInfo (reason NOT_LEADER) naming the leader's API address
// when it is known (Config.Leader), so clients retry there; meridianctl
// does so by itself.
//
// Departure from DESIGN.md: the design leaves open how replicas of one
// cluster share the Workload API. Sharing heartbeats through etcd would
// make every heartbeat a write; serving from the leader alone costs a
// client one redirect after a change of leader, and the new leader gives
// every workload a fresh TTL, so a change of leader never expires one.
package workload
