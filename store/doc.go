// Package store owns the connection to etcd, where a cluster keeps its
// durable state: an embedded single-node etcd server by default
// (go.etcd.io/etcd/server/v3/embed), or an external etcd cluster reached with
// go.etcd.io/etcd/client/v3. It also owns the key layout, so that every
// package writes under its own prefix:
//
//	/meridian/workloads/NAMESPACE/SERVICE/ID   workload-API registrations (discovery/workload):
//	                                           one JSON record each; heartbeats are not stored
//	/meridian/policies/KIND/NAMESPACE/NAME     replicated policy resources and tombstones (federation/policy):
//	                                           JSON of policy.Resource; "-" as NAMESPACE when mesh-scoped
//	/meridian/registry/epoch                   the local segment's last epoch (federation)
//	/meridian/registry/state                   the epoch.version the persisted entries reflect
//	/meridian/registry/services/NS/NAME        the local segment, one key per service and per
//	/meridian/registry/endpoints/NS/SVC/ID/PORT  endpoint (JSON), for fast restart (leader writes, fenced)
//	/meridian/federation/cluster-id            the cluster identity its replicas share (split-brain guard)
//	/meridian/federation/leader/...            leader election among the cluster's meridiand replicas
//	/meridian/trust/root                       root CA certificate + sealed key (root holder only)
//	/meridian/trust/root-next                  the next root during a root rotation (root holder only)
//	/meridian/trust/intermediate               this cluster's intermediate chain + sealed key
//	/meridian/trust/bundle                     the mesh trust bundle and its newest signed update
//	/meridian/trust/join-tokens/SHA256         unredeemed join tokens (hashes only, leased)
//	/meridian/trust/join-tokens-used/SHA256    redeemed ones, to tell replays from forgeries (leased)
//	/meridian/drills/...                       live drills, each bound to a lease
//
// Private keys under /meridian/trust are sealed with AES-256-GCM (package
// trust/ca: the key comes from a file, $MERIDIAN_TRUST_KEY or
// $MERIDIAN_TRUST_KEY_FILE, never from etcd).
//
// The store does not interpret values; the packages that own each prefix do.
package store
