package translate

import (
	"fmt"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
)

// Validate checks a resource the way its consumers will before it is
// published: Envoy's own constraints (the protoc-gen-validate rules
// generated into the types) plus what grpc-go additionally requires of
// load assignments. The server keeps a resource's previous version when
// the new one fails, so that a translation bug never turns into a NACK
// storm.
func Validate(r Resource) error {
	if r.Message == nil {
		return fmt.Errorf("translate: %s: no message", r.Name)
	}
	if v, ok := r.Message.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("translate: %s %s: %w", proto.MessageName(r.Message).Name(), r.Name, err)
		}
	}
	if cla, ok := r.Message.(*endpoint.ClusterLoadAssignment); ok {
		return validateCLA(r.Name, cla)
	}
	return nil
}

// validateCLA checks what grpc-go rejects: a zero locality weight, and
// priorities that do not run from 0 without gaps.
func validateCLA(name string, cla *endpoint.ClusterLoadAssignment) error {
	seen := map[uint32]bool{}
	for i, l := range cla.GetEndpoints() {
		if l.GetLoadBalancingWeight().GetValue() == 0 {
			return fmt.Errorf("translate: ClusterLoadAssignment %s: endpoints[%d]: locality weight must not be zero", name, i)
		}
		seen[l.GetPriority()] = true
	}
	for p := range uint32(len(seen)) {
		if !seen[p] {
			return fmt.Errorf("translate: ClusterLoadAssignment %s: priorities must run from 0 without gaps, %d is missing", name, p)
		}
	}
	return nil
}
