// Package federation makes the control planes of a mesh one: membership
// and failure detection between clusters (hashicorp/memberlist), the
// replication of every cluster's registry segment and of the mesh's
// policies, leader election among the replicas of one cluster, and the
// persistence that lets a control plane restart fast.
//
//	                     gossip (memberlist, AES-GCM keyring)
//	   ┌─────────────── metadata · announcements · heartbeats ───────────────┐
//	   ▼                                                                     ▼
//	member A ── "B/r0 holds segment b at 7.42" ──► member C ── pulls 7.41→7.42 ──► member B
//	   │         (announcements, epidemic)                 (Federation gRPC,        (owner, or any
//	   │                                                    mutual TLS)              member holding it)
//	   ▼ registry.ApplyBatch / Replace / SetStatus                   ▲
//	global registry view ──► locality, xDS                          │ registry.ChangesSince,
//	                                                                 │ Segment.Data
//	leader replica ── persists its segment ──► etcd /meridian/registry/ (fast restart)
//	policy.Store ◄──── policies ────► etcd /meridian/policies/ (see package policy)
//
// What it owns: the gossip and replication protocol (federationpb), who is
// a member, the epoch of the local segment, the cluster states in the
// registry, and the keys /meridian/registry/, /meridian/policies/ and
// /meridian/federation/ in the cluster's etcd. What it must not do: decide
// anything about traffic (locality does), or write another cluster's
// segment except by applying what that cluster published.
//
// Membership. Each meridiand replica is a memberlist node named
// CLUSTER/REPLICA whose metadata (under memberlist's 512 bytes) carries its
// cluster, region and network, the cluster identity, its federation gRPC
// address, its role (leader or follower), its cluster's segment epoch and
// version, and its policy horizon. Members join through seed addresses and
// keep re-joining seeds and failed members (which heals partitions). Gossip
// is encrypted with the keyring; until certificate identity (package trust)
// is plugged in through Credentials and Authenticator, holding a key is
// what makes a member.
//
// Split brain. A cluster name belongs to one cluster identity: a random ID
// created once in the cluster's etcd, so every replica of a cluster (they
// share the etcd) carries the same one. A member claiming a cluster name
// that a live member holds under another identity is refused in
// NotifyAlive and NotifyMerge (its join fails), logged and counted
// (dropped_messages_total{reason="split_brain"}); the first holder keeps
// the name. Replicas of one cluster are therefore all members — followers
// need the global view to serve xDS and take over at once — but only the
// leader speaks for the cluster: it alone writes and announces the
// segment, and peers pull the cluster from the leader with the newest
// epoch. This is the "shared identity" answer rather than "only the
// leader gossips": a follower outside gossip would have no global view.
//
// Registry replication. Announcements are small gossip messages ("holder
// H has cluster C's segment at epoch.version"), queued in memberlist's
// broadcast queue so that a newer one replaces an older one. A member
// behind pulls over gRPC (PullSegment) from the announcing holder, the
// owner, or any other live member; whoever pulls a newer version announces
// it in turn, so news spreads as an epidemic and a member that cannot
// reach the owner pulls from one that can (a third cluster bridges two that
// are cut off). The server answers with the batches after the caller's
// version from registry.ChangesSince — bytes proportional to the change,
// not the segment — or, for a new member, another epoch, or a gap beyond
// the registry's log, a full copy from Segment.Data in chunks. Gossip
// push/pull (memberlist's periodic full-state sync) carries every version a
// member holds and its policy vector: anti-entropy for lost announcements.
//
// Epochs. A leader starts a new epoch each time it takes the lead: the
// larger of the stored epoch plus one and the wall clock in milliseconds,
// stored in etcd (/meridian/registry/epoch), so epochs only grow even if
// etcd is wiped. Versions compare within an epoch; a newer epoch means a
// full copy.
//
// Untrusted input. Everything from the network is bounded, versioned and
// validated before it is used: gossip payloads carry a wire version and a
// type and are refused above Limits; gRPC messages carry a protocol
// version, pulls are bounded in bytes and entries, full copies must match
// their header; the registry validates every change; a batch that does
// not follow the held version is refused. Refusals are logged, counted in
// meridian_federation_dropped_messages_total by reason (malformed,
// oversized, unknown_version, invalid, replayed, split_brain, unverified),
// and never change the view; the member keeps serving.
//
// Failure semantics. Memberlist declares members dead; it does not expose
// suspicion (its Node.State is never filled in), so members gossip
// heartbeats, passed on by everyone, and a member not heard from for
// SuspectAfter is suspect. A cluster is as alive as its best replica:
//
//	memberlist: every member dead      → registry Dead: endpoints unhealthy everywhere
//	every member left (said goodbye)   → Left: as dead
//	best member not heard from lately  → Suspect: endpoints stale, with their age
//	alive, but its segment cannot be   → Unreachable: stale (a partition between
//	pulled for StaleAfter                 this member and every holder)
//
// A cluster cut off from every control plane is, after memberlist's
// suspicion timeout, indistinguishable from a dead one and is treated as
// dead: that is the outage a failover drill simulates with a cut link.
// After a partition heals, re-joins merge the two sides and both pull
// what they missed — segments by version, policies by vector — so nothing
// written on either side is lost.
//
// Policy replication. The store is package policy (HLC last-writer-wins,
// version vectors, tombstones collected once every member's advertised
// horizon passes them). Local writes are announced like segments; members
// behind pull (PullPolicies) from the announcer or from the peer of any
// push/pull whose vector is ahead. Dead members count for the horizon until
// forgotten (ForgetAfter), so a cluster that returns from an outage
// catches up by its vector without resurrecting deletes.
//
// Leadership and persistence. Replicas of a cluster campaign in an etcd
// election (/meridian/federation/leader, lease LeaseTTL). The leader
// installs the local segment under a new epoch — the fresher of what etcd
// holds and what it held as a follower, or what local sources already
// wrote in this process — runs Config.OnLead (discovery, the one writer),
// persists each change to /meridian/registry/ (one key per entry, written
// only where changed, every write fenced on the election key) and
// announces it. Followers pull their own cluster from the leader like any
// other. When the leader dies, its lease expires and a follower takes over
// within about LeaseTTL, with a new epoch: peers take one full copy.
//
// Departures from DESIGN.md: the trust-bundle exchange is not a protocol
// of its own — a signed bundle update is a policy resource (kind chosen by
// package trust), replicated by the policy store and merged by
// bundle.Merge on every member.
package federation
