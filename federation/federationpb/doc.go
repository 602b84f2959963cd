// Package federationpb is the generated wire form of the federation
// protocol (federation.proto): the Federation service members pull from,
// the FederationStatus service meridianctl asks, and the gossip messages.
// Regenerate with `make generate`; package federation owns the protocol.
package federationpb
