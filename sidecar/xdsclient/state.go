package xdsclient

import (
	"maps"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Resource types the client speaks, as xDS type URLs.
const (
	ListenerType = resource.ListenerType
	RouteType    = resource.RouteType
	ClusterType  = resource.ClusterType
	EndpointType = resource.EndpointType
	SecretType   = resource.SecretType
)

// Resource is one decoded, validated resource. Implementations are
// immutable values.
type Resource interface {
	// References calls fn for every resource of another type this one
	// needs: a listener's route configurations and secrets, a cluster's
	// load assignment and secrets.
	References(fn func(typeURL, name string))
}

// Decoder turns one resource of a response into its Resource and returns
// the resource's name. An error NACKs the whole response. It is called
// from the client's goroutine only, one resource at a time.
type Decoder func(typeURL string, a *anypb.Any) (name string, r Resource, err error)

// Entry is an accepted resource and the version the server gave it (delta
// xDS; the type's version under state of the world).
type Entry struct {
	Resource Resource
	Version  string
	// name and hash (of the resource's bytes) let an identical resource
	// in a later response skip decoding and keep its Resource value, so
	// the data plane sees unchanged resources as unchanged.
	name string
	hash uint64
}

// State is the last accepted set of resources of every type. It is an
// immutable value: the client publishes a new State for every accepted
// response and never changes an old one.
type State struct {
	// Seq grows by one with every accepted change.
	Seq   uint64
	types map[string]map[string]Entry
}

// Get returns one resource.
func (s *State) Get(typeURL, name string) (Resource, bool) {
	if s == nil {
		return nil, false
	}
	e, ok := s.types[typeURL][name]
	return e.Resource, ok
}

// Names returns the names of a type's resources, sorted.
func (s *State) Names(typeURL string) []string {
	if s == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(s.types[typeURL]))
}

// Len counts a type's resources.
func (s *State) Len(typeURL string) int {
	if s == nil {
		return 0
	}
	return len(s.types[typeURL])
}

// Each calls fn for every resource of a type, in no particular order.
func (s *State) Each(typeURL string, fn func(name string, r Resource)) {
	if s == nil {
		return
	}
	for n, e := range s.types[typeURL] {
		fn(n, e.Resource)
	}
}

// with returns a new State where one type's resources are replaced.
func (s *State) with(typeURL string, rs map[string]Entry) *State {
	n := &State{Seq: s.Seq + 1, types: make(map[string]map[string]Entry, len(s.types)+1)}
	maps.Copy(n.types, s.types)
	n.types[typeURL] = rs
	return n
}

// references collects what the accepted resources need, by type.
func (s *State) references() map[string]map[string]struct{} {
	out := map[string]map[string]struct{}{}
	for _, rs := range s.types {
		for _, e := range rs {
			e.Resource.References(func(t, name string) {
				if out[t] == nil {
					out[t] = map[string]struct{}{}
				}
				out[t][name] = struct{}{}
			})
		}
	}
	return out
}
