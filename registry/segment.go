package registry

import (
	iradix "github.com/hashicorp/go-immutable-radix/v2"
)

// Op says whether a change puts or deletes.
type Op uint8

// Change operations.
const (
	OpPut Op = iota
	OpDelete
)

func (o Op) String() string {
	if o == OpDelete {
		return "delete"
	}
	return "put"
}

// MarshalText implements encoding.TextMarshaler.
func (o Op) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (o *Op) UnmarshalText(b []byte) error {
	switch string(b) {
	case "put", "":
		*o = OpPut
	case "delete":
		*o = OpDelete
	default:
		return errUnknownOp(string(b))
	}
	return nil
}

type errUnknownOp string

func (e errUnknownOp) Error() string {
	return "registry: unknown op " + string(e) + " (want put or delete)"
}

// Change puts or deletes one service definition or one endpoint. Exactly one
// of Service and Endpoint is set; for a delete only the key fields matter.
// Services and endpoints are independent: deleting a service leaves its
// endpoints, which their own source deletes.
type Change struct {
	Op       Op        `json:"op"`
	Service  *Service  `json:"service,omitempty"`
	Endpoint *Endpoint `json:"endpoint,omitempty"`
}

// PutService, DeleteService, PutEndpoint and DeleteEndpoint build changes.
func PutService(s *Service) Change { return Change{Op: OpPut, Service: s} }
func DeleteService(k ServiceKey) Change {
	return Change{Op: OpDelete, Service: &Service{Namespace: k.Namespace, Name: k.Name}}
}
func PutEndpoint(e *Endpoint) Change { return Change{Op: OpPut, Endpoint: e} }
func DeleteEndpoint(k EndpointKey) Change {
	return Change{Op: OpDelete, Endpoint: &Endpoint{Service: k.Service, ID: k.ID, PortName: k.PortName}}
}

// Segment is an immutable snapshot of one cluster's part of the registry.
// Its methods are safe for concurrent use. Values it returns are shared with
// other snapshots and must not be modified.
type Segment struct {
	cluster   Cluster
	epoch     uint64
	version   uint64
	services  *iradix.Tree[*Service]
	endpoints *iradix.Tree[*iradix.Tree[*Endpoint]] // service key → (id, port name) → endpoint
	nEps      int
}

func newSegment(c Cluster) *Segment {
	return &Segment{cluster: c, services: iradix.New[*Service](), endpoints: iradix.New[*iradix.Tree[*Endpoint]]()}
}

// Cluster returns the cluster this segment describes.
func (s *Segment) Cluster() Cluster { return s.cluster }

// Epoch changes when the owner restarts; versions compare only within one
// epoch.
func (s *Segment) Epoch() uint64 { return s.epoch }

// Version counts the batches applied in this epoch.
func (s *Segment) Version() uint64 { return s.version }

// ServiceCount returns the number of service definitions.
func (s *Segment) ServiceCount() int { return s.services.Len() }

// EndpointCount returns the number of endpoints.
func (s *Segment) EndpointCount() int { return s.nEps }

// Service returns the definition of a service, if this cluster has one.
func (s *Segment) Service(k ServiceKey) (*Service, bool) { return s.services.Get(k.treeKey()) }

// Endpoint returns one endpoint.
func (s *Segment) Endpoint(k EndpointKey) (*Endpoint, bool) {
	inner, ok := s.endpoints.Get(k.Service.treeKey())
	if !ok {
		return nil, false
	}
	return inner.Get(k.innerKey())
}

// EachService calls fn for every service definition in key order until fn
// returns false.
func (s *Segment) EachService(fn func(*Service) bool) {
	s.services.Root().Walk(func(_ []byte, v *Service) bool { return !fn(v) })
}

// Endpoints returns the endpoints of one service in key order.
func (s *Segment) Endpoints(k ServiceKey) []*Endpoint {
	inner, ok := s.endpoints.Get(k.treeKey())
	if !ok {
		return nil
	}
	out := make([]*Endpoint, 0, inner.Len())
	inner.Root().Walk(func(_ []byte, e *Endpoint) bool { out = append(out, e); return false })
	return out
}

// EachEndpoint calls fn for every endpoint in key order until fn returns
// false.
func (s *Segment) EachEndpoint(fn func(*Endpoint) bool) {
	s.endpoints.Root().Walk(func(_ []byte, inner *iradix.Tree[*Endpoint]) bool {
		stop := false
		inner.Root().Walk(func(_ []byte, e *Endpoint) bool { stop = !fn(e); return stop })
		return stop
	})
}

// EndpointServices returns the keys of services that have endpoints here,
// in key order.
func (s *Segment) EndpointServices() []ServiceKey {
	out := make([]ServiceKey, 0, s.endpoints.Len())
	s.endpoints.Root().Walk(func(_ []byte, inner *iradix.Tree[*Endpoint]) bool {
		if _, e, ok := inner.Root().Minimum(); ok {
			out = append(out, e.Service)
		}
		return false
	})
	return out
}

// Data returns the segment's full contents, as a full copy carries them.
func (s *Segment) Data() SegmentData {
	d := SegmentData{Cluster: s.cluster, Epoch: s.epoch, Version: s.version}
	s.EachService(func(v *Service) bool { d.Services = append(d.Services, v); return true })
	s.EachEndpoint(func(e *Endpoint) bool { d.Endpoints = append(d.Endpoints, e); return true })
	return d
}

// SegmentData is a segment's full contents: what a new replica receives and
// what is persisted for a fast restart.
type SegmentData struct {
	Cluster   Cluster     `json:"cluster"`
	Epoch     uint64      `json:"epoch"`
	Version   uint64      `json:"version"`
	Services  []*Service  `json:"services,omitempty"`
	Endpoints []*Endpoint `json:"endpoints,omitempty"`
}

// apply returns the segment with the changes applied, and the changes that
// made a difference (puts of identical values and deletes of missing keys
// are dropped). The receiver is not modified. Changes must be valid.
func (s *Segment) apply(changes []Change) (*Segment, []Change) {
	next := *s
	svcTxn := s.services.Txn()
	epTxn := s.endpoints.Txn()
	inner := map[ServiceKey]*iradix.Txn[*Endpoint]{}
	innerTxn := func(k ServiceKey) *iradix.Txn[*Endpoint] {
		if t, ok := inner[k]; ok {
			return t
		}
		tree, ok := epTxn.Get(k.treeKey())
		if !ok {
			tree = iradix.New[*Endpoint]()
		}
		t := tree.Txn()
		inner[k] = t
		return t
	}
	lookup := func(k EndpointKey) (*Endpoint, bool) {
		if t, ok := inner[k.Service]; ok {
			return t.Get(k.innerKey())
		}
		return s.Endpoint(k)
	}
	var effective []Change
	for _, c := range changes {
		switch {
		case c.Service != nil && c.Op == OpPut:
			if old, ok := svcTxn.Get(c.Service.Key().treeKey()); ok && old.Equal(c.Service) {
				continue
			}
			svcTxn.Insert(c.Service.Key().treeKey(), c.Service)
		case c.Service != nil:
			if _, ok := svcTxn.Delete(c.Service.Key().treeKey()); !ok {
				continue
			}
		case c.Endpoint != nil && c.Op == OpPut:
			c.Endpoint.Cluster = s.cluster.Name
			old, ok := lookup(c.Endpoint.Key())
			if ok && old.Equal(c.Endpoint) {
				continue
			}
			innerTxn(c.Endpoint.Service).Insert(c.Endpoint.Key().innerKey(), c.Endpoint)
			if !ok {
				next.nEps++
			}
		case c.Endpoint != nil:
			if _, ok := lookup(c.Endpoint.Key()); !ok {
				continue
			}
			innerTxn(c.Endpoint.Service).Delete(c.Endpoint.Key().innerKey())
			next.nEps--
		}
		effective = append(effective, c)
	}
	if len(effective) == 0 {
		return s, nil
	}
	for k, t := range inner {
		tree := t.CommitOnly()
		if tree.Len() == 0 {
			epTxn.Delete(k.treeKey())
		} else {
			epTxn.Insert(k.treeKey(), tree)
		}
	}
	next.services = svcTxn.CommitOnly()
	next.endpoints = epTxn.CommitOnly()
	return &next, effective
}

// Diff returns the changes that turn the segment's contents into want. Puts
// of identical values are left out, so applying the result to a segment that
// already matches changes nothing.
func (s *Segment) Diff(services []*Service, endpoints []*Endpoint) []Change {
	var out []Change
	wantSvc := make(map[ServiceKey]bool, len(services))
	for _, v := range services {
		wantSvc[v.Key()] = true
		if old, ok := s.Service(v.Key()); !ok || !old.Equal(v) {
			out = append(out, PutService(v))
		}
	}
	s.EachService(func(v *Service) bool {
		if !wantSvc[v.Key()] {
			out = append(out, DeleteService(v.Key()))
		}
		return true
	})
	wantEp := make(map[EndpointKey]bool, len(endpoints))
	for _, e := range endpoints {
		wantEp[e.Key()] = true
		cp := *e
		cp.Cluster = s.cluster.Name
		if old, ok := s.Endpoint(e.Key()); !ok || !old.Equal(&cp) {
			out = append(out, PutEndpoint(e))
		}
	}
	s.EachEndpoint(func(e *Endpoint) bool {
		if !wantEp[e.Key()] {
			out = append(out, DeleteEndpoint(e.Key()))
		}
		return true
	})
	return out
}
