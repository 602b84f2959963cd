// Package fieldrules enforces the field rules Envoy's API declares on its
// messages — the protoc-gen-validate annotations (`(validate.rules)`,
// `(validate.required)` on oneofs) — by reading them from the message
// descriptors at run time, with the generated validators' semantics.
//
// Why not call the generated ValidateAll methods, as Envoy does with its
// C++ equivalents: in Go they are code, one method per message, and the
// proxy links every message type it can decode; the generated validators
// were 6.7 MB of meridian-proxy's binary, all of it resident, for rules
// that are already in the binary as descriptor options. One reflective
// walker reads them instead. Its verdicts are tested against the generated
// code on mutated real resources and under fuzzing (fieldrules_test.go), and
// a test fails when Envoy's API starts using a rule kind this package does
// not implement.
//
// It owns only the rules: what a field means to the proxy is xdsconfig's
// business. It must not import Envoy's generated types (it sees messages
// through protoreflect), nor hold state beyond its per-type plan cache.
package fieldrules
