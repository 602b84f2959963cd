// Package exchange carries the mesh's trust between clusters: trust
// bundles, and the intermediates a root rotation re-signs. It has no
// protocol of its own — it writes resources into the replicated policy
// store (federation/policy), which federation replicates to every cluster
// and persists in each cluster's etcd:
//
//	TrustStatus/CLUSTER        written by CLUSTER's leading replica: its
//	                           newest signed bundle update (a compact JWS,
//	                           bundle.Sign, ≤ 64 KiB), bundle sequence and
//	                           roots, its intermediate chain (public) and
//	                           the root that signed it; on the root holder
//	                           also the rotation phase and current root
//	TrustIntermediate/CLUSTER  written by the root holder: CLUSTER's
//	                           intermediate re-signed under the current root
//
// Every replica of every cluster follows the store (RunApply): it merges
// any cluster's update newer than its bundle — bundle.Merge accepts only
// updates signed by a root it already trusts, so a member cannot add a
// root of its own, and any member relays the newest update — and installs
// the intermediate signed for its own key under the root the root holder
// publishes as current (on the root holder: its own). One under any other
// root is stale — the store has not caught up with a step yet — and is
// left alone: installing it would undo the rotation there, and the root
// holder would publish its old one back. The leading replica publishes
// its cluster's state (RunPublish); on the root holder it also re-signs,
// under the current root, every published intermediate that names its
// cluster and chains to a trusted root but not to the current one. The
// re-signed certificate vouches for a key the root certified for that
// cluster before, and is worthless without the cluster's private key, so
// carrying it through the store is safe.
//
// Root rotation (meridianctl trust rotate, the RootRotation gRPC service
// of trustpb) is three steps on the root holder's leading replica, each
// refused until every cluster that is not dead has caught up with the one
// before (Behind), unless forced:
//
//	prepare   a new root joins the bundle (update signed by the old root);
//	          every cluster merges it: clusters trust both roots
//	activate  the new root signs; the root holder re-signs its own and
//	          every published intermediate; every cluster installs its
//	          own and reissues its SVIDs
//	retire    the old root leaves the bundle (update signed by the new one)
//
// Between the steps, the operator waits for SVIDs issued before the step
// to expire or renew (half an SVID TTL after prepare, a TTL after
// activate): the command does, by default.
//
// Why the store and not the CA service: re-signing through the store
// needs no address of the root holder's CA service in every cluster, no
// connection between them, and works through a third cluster when two
// are cut off, as all replication does. Members check each other's
// member certificates at every federation call, against the bundle of
// now: so when activate has reissued a cluster's SVIDs, the exchange
// says so (Config.Reissued) and meridiand's federation connects again
// with the new member SVID, before retire makes the old root untrusted;
// a connection that still presents an old one (a step forced ahead of a
// cluster) is refused once, and federation connects again then. A
// cluster dead for a whole
// rotation misses it: its intermediate no longer chains to the bundle the
// mesh trusts, and it needs a new one (meridianctl trust join-token).
//
// The package does no networking and decides nothing about what a root
// is (package service does): it moves values between the trust component
// and the store.
package exchange
