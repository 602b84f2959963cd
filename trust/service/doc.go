// Package service assembles the trust component of one meridiand from the
// trust packages, so that the daemon's wiring is a call to New and Run:
//
//	etcd (PREFIX/root, /intermediate, /bundle, /join-tokens…)
//	   │ load, or bootstrap once: root dir │ CA dir │ join token + pinned root
//	   ▼
//	ca.Authority ──► svid.Manager ──► sds.Provider ───────► xDS server (SDS)
//	                      │      └──► workloadapi.Server ─► local processes
//	                      └─────────► member.Credentials ─► federation gRPC
//	bundle.Source ◄── ApplyBundleUpdate ◄── exchange (updates in the replicated store)
//	              ◄── bundleendpoint.Watch ◄── foreign trust domains
//	casvc + bundle endpoint (HTTPS, member SVID) ◄── sidecars, VMs, clusters
//	trustpb.TrustService (gRPC) ◄── meridianctl trust
//
// A first start needs CA material: the root holder's root directory
// (`meridianctl trust init`), a cluster CA directory (`meridianctl trust
// issue-intermediate`), or a join token for the root holder's CA service.
// It is sealed into etcd; later starts read only etcd.
//
// Root rotation is three explicit steps (rotation.go) that an operator or
// a controller runs with waits between them; the bundle updates they make
// (BundleUpdate, ApplyBundleUpdate) and the intermediates a rotation
// re-signs (SignIntermediate, InstallIntermediate) are what package
// exchange carries through the replicated policy store.
//
// InitRootDir and IssueIntermediateDir are the offline CA operations behind
// `meridianctl trust init` and `issue-intermediate`.
package service
