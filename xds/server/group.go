package server

import (
	"hash/fnv"
	"slices"
	"strconv"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// entry is one published resource: marshaled once, shared by every
// response to every proxy of its group. Immutable.
type entry struct {
	name    string
	version string // hash of the bytes: equal content, equal version
	any     *anypb.Any
	delta   *discovery.Resource
}

// newEntry validates and marshals a built resource.
func newEntry(typeURL string, r translate.Resource) (*entry, error) {
	if err := translate.Validate(r); err != nil {
		return nil, err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.Message)
	if err != nil {
		return nil, err
	}
	h := fnv.New64a()
	h.Write(b)
	a := &anypb.Any{TypeUrl: typeURL, Value: b}
	e := &entry{name: r.Name, version: strconv.FormatUint(h.Sum64(), 36), any: a}
	e.delta = &discovery.Resource{Name: r.Name, Version: e.version, Resource: a}
	return e, nil
}

// group holds the resources of one scope, shared by every proxy stream
// whose scope it is. Only the Run goroutine writes res, names, byService
// and version, and only under state.mu; readers hold state.mu.
type group struct {
	scope   translate.Scope
	ready   bool   // built at least once
	version uint64 // bumped whenever a resource changes
	res     map[string]*entry
	names   []string // sorted keys of res
	// byService remembers which load assignments each service produced,
	// so that an endpoint change rebuilds only that service's.
	byService map[registry.ServiceKey][]string
	watches   map[*watch]struct{}
	streams   int // streams using this group; the group is dropped at zero
}

func newGroup(s translate.Scope) *group {
	return &group{scope: s, res: map[string]*entry{}, byService: map[registry.ServiceKey][]string{}, watches: map[*watch]struct{}{}}
}

func (g *group) versionInfo() string { return strconv.FormatUint(g.version, 10) }

// change is one resource to publish (e set) or remove (e nil).
type change struct {
	name string
	e    *entry
}

// plan is the outcome of rebuilding part of a group, computed without the
// lock and applied under it.
type plan struct {
	g         *group
	changes   []change
	byService map[registry.ServiceKey][]string // replaces these entries of g.byService
	full      bool                             // the whole type was rebuilt: byService is complete
}

// apply installs a plan; it returns the names that changed.
func (p *plan) apply() []string {
	g := p.g
	if p.full {
		g.byService = p.byService
	} else {
		for k, names := range p.byService {
			if len(names) == 0 {
				delete(g.byService, k)
			} else {
				g.byService[k] = names
			}
		}
	}
	if len(p.changes) == 0 {
		return nil
	}
	names := make([]string, 0, len(p.changes))
	added := false
	for _, c := range p.changes {
		names = append(names, c.name)
		if c.e == nil {
			delete(g.res, c.name)
			continue
		}
		if _, ok := g.res[c.name]; !ok {
			added = true
		}
		g.res[c.name] = c.e
	}
	if added || len(g.names) != len(g.res) {
		g.names = g.names[:0]
		for n := range g.res {
			g.names = append(g.names, n)
		}
		slices.Sort(g.names)
	}
	g.version++
	return names
}
