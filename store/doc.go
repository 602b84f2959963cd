// Package store owns the connection to etcd, where a cluster keeps its
// durable state: an embedded single-node etcd server by default
// (go.etcd.io/etcd/server/v3/embed), or an external etcd cluster reached with
// go.etcd.io/etcd/client/v3. It also owns the key layout, so that every
// package writes under its own prefix:
//
//	/meridian/workloads/NAMESPACE/SERVICE/ID   workload-API registrations (discovery/workload):
//	                                           one JSON record each; heartbeats are not stored
//	/meridian/policies/KIND/NAMESPACE/NAME     replicated policy resources
//	/meridian/registry/segment                 the local segment, for fast restart
//	/meridian/federation/...                   epochs, peers, leader election
//	/meridian/trust/...                        CA state (encrypted at rest)
//	/meridian/drills/...                       live drills, each bound to a lease
//
// The store does not interpret values; the packages that own each prefix do.
package store
