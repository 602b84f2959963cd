// Package policy is the mesh's replicated store of policy resources. It is
// opaque: a resource is a key (kind, namespace, name), a spec of bytes that
// the owner of the kind encodes and validates (api/v1alpha1), and the
// metadata that orders writes. The store does not know what a failover or
// residency policy means; it only makes every cluster hold the same ones.
//
// Writes and conflicts. A resource is written through any member (Put,
// Delete) and stamped with a hybrid logical clock (Clock): wall time in
// milliseconds plus a logical counter, advanced past every stamp the member
// has seen. Concurrent writes to one key — on two sides of a partition, say —
// resolve by last writer wins on (stamp, origin), where origin is the
// writing member's unique name; every member compares the same two values
// and so picks the same winner, whatever order the writes arrive in. A
// delete is a write of a tombstone, so it replicates and wins or loses like
// any write.
//
// Persistence. Each cluster keeps its copy in its own etcd under
// /meridian/policies/KIND/NAMESPACE/NAME ("-" for mesh-scoped kinds). etcd
// is the cluster's source of truth: a write returns once it is in etcd,
// replicas of one cluster write with compare-and-swap on the key's revision
// and follow each other through an etcd watch, and a restarted member loads
// everything back. Without an etcd client the store lives in memory (tests,
// benchmarks).
//
// Catching up: version vectors. Each member keeps a vector: for each origin,
// a stamp up to which it holds everything that origin wrote (or a newer
// write to the same key). Changes(vector) returns exactly the records a
// member with that vector lacks, plus the sender's own vector taken in the
// same instant; Apply merges the records and then the vector. A member that
// was down or cut off sends its old vector and receives everything it
// missed, from whichever member it reaches — the vectors, not the path,
// decide what is sent. A vector costs one entry per writing member, which
// is why it was chosen over per-key digests: deltas stay proportional to
// what changed.
//
// Tombstone collection. A tombstone may go once every member holds it:
// each member advertises its coverage (the smallest entry of its vector
// over the current members); the federation takes the minimum over every
// member it knows, dead ones included until they are forgotten, and passes
// it to Collect. The store then refuses records for absent keys stamped at
// or below that horizon: they can only be deletes coming back from a member
// that missed them. A member whose vector is older than a peer's horizon
// (forgotten while away) asks for a full copy, and drops what the full copy
// lacks up to that horizon. The horizon lives in memory: a member that
// restarts rebuilds it from its peers.
//
// Watching. Subscribe gives the newest immutable Snapshot with the set of
// keys that changed since the consumer last looked, in the coalescing style
// of registry.Subscription: a slow consumer never stalls replication, it
// sees several changes at once.
//
// The store does no networking and starts one goroutine (the etcd watch,
// stopped by Close); the federation package moves Sync values between
// members.
package policy
