// Package policyapi is meridiand's policy pipeline and its API: it admits
// policy objects (the kinds of api/v1alpha1) and writes them to the mesh's
// replicated policy store, follows that store, compiles what it holds —
// with the live drills' drains — into the engine the xDS server pushes,
// and answers explain and drill requests with that very engine.
//
//	meridianctl apply/get/delete ──gRPC PolicyService──► admission ──► policy store (federation: every cluster)
//	Kubernetes CRDs (kube.go) ──────────────────────────► admission ─┘          │ Subscribe
//	                                                                            ▼
//	meridianctl drill --live ──RunDrill──► etcd lease + Drill record ──► follow: decode, validate,
//	                                                                     translate.CompilePolicies,
//	                                                                     WithDrains(active drills)
//	                                                                            │ Config.Apply
//	meridianctl explain, drill ──LocalityService──► Engine() ◄──same──── xDS server (EDS/CDS)
//
// Why gRPC and not HTTP on the admin mux: meridianctl already speaks gRPC
// to meridiand (the Workload API) with one address, one error model
// (status codes with google.rpc.BadRequest naming fields) and one
// timeout flag; a live drill is naturally a bidirectional stream
// (heartbeats up, progress down); and the admin port stays read-only
// debugging. Objects travel as google.protobuf.Struct in the shapes of
// api/v1alpha1, so there is one schema, not a protobuf copy of it.
//
// Admission, in order (Apply and Delete; nothing is written unless all of
// it passes):
//  1. each source is decoded and each object validated on its own
//     (v1alpha1.Load): errors carry source, line, object and field, and
//     force never overrides them;
//  2. the set the change would make is checked against the mesh
//     (v1alpha1.ValidateSet with locality.ContextOf of the registry view)
//     and against the endpoints (locality.Engine.CheckResidency: a rule
//     leaving a service with no allowed endpoint anywhere). Only problems
//     the change introduces are blamed on it — a selector that matched
//     nothing before is not a reason to refuse an unrelated object. These
//     refusals are forceable: with force they become warnings.
//
// Storage. An object is one resource of the replicated store under (kind,
// namespace, name), its value the spec plus labels, annotations and
// source (Encode, Decode). Writes go through this cluster's replica; the
// federation replicates them. Objects another cluster wrote are validated
// again when compiled, and left out (logged and counted) if they fail —
// a newer meridiand's objects must not stop an older one from serving.
//
// Kubernetes. With kube discovery on, objects of the CRDs (deploy/crds)
// are read with a dynamic informer and written into the store like applied
// ones, with source "kubernetes/CLUSTER": Kubernetes then is one more way
// to write mesh policy, replicated to clusters that have no Kubernetes.
// They pass the same per-object validation (invalid ones are logged,
// counted and not written); set-level problems are logged as warnings but
// not refused, since kubectl already accepted the object. Deleting the
// custom resource deletes the policy; on start, policies this cluster's
// Kubernetes wrote that no longer exist there are deleted. Changing or
// deleting such a policy through the API takes force: the next change of
// the custom resource would undo it.
//
// Live drills (drill.go): the drill's life is an etcd lease in the cluster
// it was started through, kept alive by the client's heartbeats on the
// RunDrill stream; its effect is a "Drill" record in the replicated store,
// so that clients in every cluster move (a region drill concerns them
// all). The lease's end — duration reached, client stopped, or client
// dead — deletes the record everywhere; a record whose holder died with
// its lease is ignored once its renewal is overdue.
//
// It must not translate xDS (xds/translate does, from the compiled
// policies) or decide locality (locality does): it gathers, admits,
// stores and hands over.
package policyapi
