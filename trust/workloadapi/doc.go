// Package workloadapi serves the SPIFFE Workload API (the proto published
// with go-spiffe, github.com/spiffe/go-spiffe/v2/proto/spiffe/workload) on
// a Unix socket, so that applications on the host get their X.509-SVID and
// trust bundles the way they would from a SPIRE agent: go-spiffe's
// workloadapi.NewX509Source and `spire-agent api fetch x509` both work
// against it unchanged (TestGoSPIFFEClient, TestSpireAgentClient).
//
// Attestation, the documented simple rule: the kernel tells the server who
// connected (SO_PEERCRED: pid, uid, gid), and a Registry maps that to
// identities — a Registration selects by uid, gid and/or executable path
// (/proc/PID/exe), every set selector must match, and a registration with
// no selector matches nothing. Calls without the "workload.spiffe.io: true"
// header are InvalidArgument; a caller no registration matches gets
// PermissionDenied ("no identity issued", as SPIRE says). This is weaker
// than SPIRE's workload attestors (no container or Kubernetes pod
// selectors, and a pid can be reused by the time /proc is read): it suits
// the lab's bare processes and VMs; Kubernetes workloads get their SVIDs
// through their sidecar (SDS) or by CSR with their service-account token.
//
// FetchX509SVID and FetchX509Bundles stream: a new answer goes out after
// every rotation or bundle change, only when it differs. The JWT-SVID and
// WIT profiles answer Unimplemented.
//
// SVIDs come from an svid.Manager (the key is made by the control plane, as
// SPIRE's agent does for its workloads) and bundles from a bundle.Source;
// this package neither signs nor decides trust.
package workloadapi
