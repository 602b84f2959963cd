// Package server serves Meridian's xDS: it keeps, for every group of
// proxies that would get identical resources, one translated and marshaled
// copy of them, and answers Aggregated Discovery Service streams — state of
// the world and delta — with go-control-plane's protocol types: its delta
// server, and a state-of-the-world stream loop of our own (sotw.go).
//
//	registry.Subscription ──► Run: debounce ──► translate (pure, per scope)
//	   (changed keys)                                │ validate, marshal, hash
//	                                                 ▼
//	                          groups: scope → name → entry{version, bytes}
//	                                                 │ answer open watches
//	                                                 ▼
//	  sotw stream loop · gcp delta server ◄── Server as cache.ConfigWatcher
//	        │  callbacks: identity, ACK/NACK, metrics
//	        ▼
//	  Envoy · meridian-proxy · grpc-go (xds:///HOST:PORT)
//
// Grouping: a proxy's identity (xds/translate.ParseNode) gives, per
// resource type, a translate.Scope holding only what that type's output
// depends on — load assignments the cluster and locality, routes the mode
// and namespace, and so on. Proxies with equal scopes share one group,
// built once; a thousand sidecars in three zones are three endpoint groups.
//
// Incremental work and debouncing: Run reads the registry's coalesced
// deltas. An isolated change — more than Config.Debounce (default 100ms)
// after the last push — is translated and pushed at once; changes that
// follow a push within that window are coalesced until they have been
// quiet for Debounce, at most Config.MaxDebounce (1s) behind the first of
// them. A burst is therefore two pushes: its first change, then the rest.
// This departs from Istio's pure trailing debounce, which delays every
// change by the window: sources already batch (Kubernetes discovery has a
// 100ms window of its own), and failover should not wait twice. A change to some services' endpoints rebuilds
// only those services' load assignments, in each endpoint group; clusters,
// listeners and routes are rebuilt only when a service definition or a
// cluster changed. Every resource is validated (translate.Validate),
// marshaled once and versioned by a hash of its bytes, so an unchanged
// result is not a change and a push carries only what differs.
//
// Why our own ConfigWatcher and not go-control-plane's SnapshotCache: grpc-go
// asks for listeners and clusters by name, and the snapshot cache in ADS
// mode never answers a request naming fewer resources than its snapshot
// holds; it also keeps one snapshot per node and resends a NACKed version
// at once. Here every watch is answered with exactly the names it
// subscribes to (all of them for a wildcard), each stream's state lives in
// go-control-plane's Subscription (what was sent, per resource version),
// and responses are go-control-plane PassthroughResponses built from the
// shared marshaled entries.
//
// Why our own state-of-the-world loop: it is go-control-plane's ordered
// ADS loop, except that a request repeating exactly the names of the
// previous one (every ACK of Envoy's, a thousand load-assignment names for
// a thousand services) keeps its subscription instead of rebuilding its
// map, and that responses record what they send in the stream's versions
// in place (taken back if the loop drops the response unsent) instead of
// copying a thousand versions per push. Together they were two fifths of
// the server's CPU per change at a thousand sidecars (xdsbench; see
// bench/xds.sh). What remains per ACK is gRPC decoding the thousand names.
//
// ACK and NACK: a NACK is logged with the proxy id, type, version, nonce
// and the proxy's error detail, counted, and shown by /debug/xds; the
// proxy keeps its last accepted version (as Envoy and grpc-go do) and the
// server does not resend the rejected version — decisions compare with
// what was sent, not with what was accepted — until the resource changes
// again. A resource failing validation is never published: its previous
// version stays.
//
// Policies: SetPolicies compiles a policy set (refusing an invalid one,
// naming the object and field, with nothing changed); SetCompiledPolicies
// takes a set the policy pipeline (policyapi) compiled, live drills'
// drains included. Either way the next push rebuilds every group under
// the new set, so explain, drills and the proxies use one engine.
//
// SDS: with Config.Secrets (trust/sds.Provider) and Config.Attestor, a
// stream whose caller proves a workload identity when it opens gets that
// identity's secrets on the same ADS stream — its SVID (named by the
// SPIFFE ID) and the trust bundle (ROOTCA) — and resources with mTLS that
// name them (translate.Proxy.Identity). A secret carries a private key, so
// the identity comes only from the attestation, never from the node: a
// node whose namespace or service account differs from the attested
// identity is refused (PermissionDenied), a refused credential closes the
// stream (Unauthenticated), and a stream that presents none gets no
// secrets and plaintext resources. Secret groups are per identity (and,
// for gateways, the Gateways that select them), shared only by streams
// attested as that identity. What proves an identity:
//
//   - in Kubernetes, KubeTokens: the projected service-account token in
//     the stream metadata "authorization: Bearer TOKEN" (Envoy's
//     initial_metadata), reviewed by the API server (sds.AttestStream);
//   - outside Kubernetes, PeerSVID: the X.509-SVID the proxy presents as
//     its TLS client certificate on the xDS connection, verified against
//     the trust bundles. The proxy obtains its first SVID from the CA
//     service with a single-use join token (trust/casvc) and rotates it
//     itself; the gRPC listener must request client certificates (it need
//     not verify them: PeerSVID does, against SPIFFE bundles). A
//     plaintext listener attests nothing.
//
// A rotation of SVIDs or bundles (Secrets.Subscribe) rebuilds the secret
// groups at once, without debouncing. Credentials that Gateways and
// DestinationPolicies name come from Config.Credentials (FileCredentials:
// a directory in the layout of mounted Kubernetes TLS Secrets), re-read
// when policies change or trust rotates, checked before publishing, and
// handed only to identities of the naming object's namespace
// (translate.Credentials).
//
// Register also serves XDSAdmin (xdsadminpb), behind meridianctl
// proxy-config: a proxy's streams, scopes, subscriptions, the version of
// every resource it holds, ACK and NACK state, and on request the
// resources, private keys replaced by "[redacted]" — the same view as
// /debug/xds?proxy=ID.
//
// Bad input closes only the stream that sent it, with a gRPC status naming
// the field (InvalidArgument for a malformed node or a request without a
// type); unknown resource names and types get an empty answer and a log
// line. The server keeps serving everyone else.
//
// Metrics (meridian_xds_*): connected_proxies{mode,cluster}, pushes_total
// and push_bytes by type, push_ack_seconds by type (send to ACK or NACK),
// nacks_total, convergence_seconds (from a registry change, before
// debouncing, until every push it caused was ACKed or its stream left;
// rounds with a NACK are not observed), plus rejected_streams_total,
// unknown_resources_total, invalid_resources_total, recompute_seconds,
// groups and dropped_responses_total.
//
// Concurrency: one mutex guards groups, streams and watches; go-control-
// plane's stream goroutines take it briefly per request, response and
// watch. Only Run's goroutine (and workers it waits for) translates and
// writes group contents, so translation happens outside the lock. Answers
// are queued on go-control-plane's per-stream channels, which hold one
// response per type; a watch is answered at most once, so queueing never
// blocks.
//
// It must not: read anything but the registry view, the policies, the
// secret and credential sources; block on a slow proxy; keep per-proxy
// copies of resources; or send a secret to a stream not attested as its
// owner.
package server
