// Package v1alpha1 is Meridian's policy schema, apiVersion
// meridian.io/v1alpha1: the kinds users write, in files for meridianctl,
// through meridiand's API, or as Kubernetes custom resources (the CRDs in
// deploy/crds are generated from these types).
//
// Kinds, and what Istio users know them as:
//
//	FailoverPolicy     DestinationRule localityLbSetting + outlierDetection
//	ResidencyRule      (no equivalent: where a service may never be served from)
//	TrafficRoute       VirtualService
//	DestinationPolicy  DestinationRule (load balancer, circuit breakers, TLS, subsets)
//	ServiceEntry       ServiceEntry
//	Gateway            Gateway
//
// Fewer overlapping objects than Istio, and why:
//   - Locality load balancing is not buried in DestinationRule: failover
//     order, distribute weights and outlier detection are one
//     FailoverPolicy that selects services, because failover is planned per
//     region and rehearsed in drills, by people who do not own routes.
//   - Residency is its own kind, owned by compliance, and absolute: the
//     locality engine applies it after every other policy, so no route,
//     failover order or gateway can send traffic outside it.
//   - TrafficRoute destinations can name a cluster as well as a subset, so
//     a canary across clusters needs no extra DestinationRule per cluster.
//   - One Gateway kind with a type (ingress, egress, east-west) instead of
//     separate gateway flavours, and an east-west listener is a Gateway
//     listener in mode mesh.
//   - Outlier detection may be set on a FailoverPolicy (where failover is
//     planned) or on a DestinationPolicy (beside the circuit breakers);
//     setting it in both for one service is reported as a conflict rather
//     than silently merged.
//
// Layout: one file per kind (its types and Validate), plus the kinds table
// in kinds.go; decoding, the generic RawObject form and the CRD generator
// (crd_test.go) work from the table, so a kind is added by one file and one
// line. Enumerated string types list their values in a Values method,
// which validation and the CRD generator share.
//
// Three levels of checking:
//   - Decode/Load: strict YAML or JSON (unknown and duplicate fields are
//     errors), multi-document streams, errors with document index and line.
//   - Object.Validate: the object alone; field.ErrorList naming field and
//     reason.
//   - ValidateSet: across objects and against the mesh (regions, clusters,
//     services): conflicts, dangling references, selectors matching
//     nothing. locality.CheckResidency adds the one check that needs the
//     endpoints (a rule leaving a service nowhere to run).
//
// Defaults are applied by the code that reads a field (an empty residency
// mode is enforce, an empty load-balancer policy is round-robin), not
// written into the CRD schemas, so objects read from Kubernetes and from
// files mean the same thing. The CRD schemas check structure and enums;
// the full validation runs in meridiand whichever way an object arrives.
//
// This package must not import the engine or do I/O: it is the vocabulary
// the rest of Meridian shares.
package v1alpha1
