// Package bundle owns trust bundles: which roots a process trusts, per trust
// domain, and how the mesh's own bundle changes hands between clusters.
//
// Source is the live set a process verifies peers with (the mesh's trust
// domain and any foreign one federated explicitly); go-spiffe's tlsconfig,
// the Workload API server and the SDS adapter read it, and subscribers
// learn of every change.
//
// An Update is the mesh bundle in SPIFFE format (roots, sequence number)
// signed as a compact JWS by a root of the bundle it replaces. It is the
// value federation carries: Sign on the root holder, Merge on every member.
// Merge accepts only updates signed by a root the member already trusts,
// keeps the highest sequence number, ignores stale and repeated updates and
// refuses two different bundles under one number — so all members converge
// on the same bundle whatever order gossip delivers updates in, and no
// member can add a root of its own.
//
// Root rotation is two updates (see Next): prepare adds the new root
// (signed by the old one), retire removes the old root (signed by the new
// one). Between them every cluster re-signs its intermediate under the new
// root and reissues its SVIDs; TestRootRotationUnderTraffic in package svid
// shows no handshake fails on the way.
//
// This package decides what to trust; it does not fetch bundles (package
// bundleendpoint does, for foreign trust domains) or gossip them (package
// federation does).
package bundle
