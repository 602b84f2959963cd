package registry

import (
	"fmt"
	"slices"
	"time"
)

// ClusterState is what federation knows about a cluster's control plane.
type ClusterState uint8

// Cluster states, from gossip's failure detector.
const (
	// Alive: the control plane answers.
	Alive ClusterState = iota
	// Suspect: the failure detector doubts it; its endpoints turn stale.
	Suspect
	// Unreachable: cut off from the control planes (a partition); its
	// endpoints turn stale but keep receiving traffic.
	Unreachable
	// Dead: declared dead; its endpoints turn unhealthy everywhere.
	Dead
	// Left: left the mesh on purpose; treated as dead.
	Left
)

var stateNames = [...]string{Alive: "alive", Suspect: "suspect", Unreachable: "unreachable", Dead: "dead", Left: "left"}

func (s ClusterState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (s ClusterState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *ClusterState) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = ClusterState(i)
			return nil
		}
	}
	return fmt.Errorf("registry: unknown cluster state %q (want alive, suspect, unreachable, dead or left)", b)
}

// ClusterStatus is a cluster's state, when it entered it, and when its
// control plane was last heard from.
type ClusterStatus struct {
	State    ClusterState `json:"state"`
	Since    time.Time    `json:"since"`
	LastSeen time.Time    `json:"lastSeen"`
}

// View is an immutable snapshot of the global registry: every cluster's
// segment and status. It is safe for concurrent use; values it returns are
// shared and must not be modified.
type View struct {
	version  uint64
	segments map[string]*Segment
	status   map[string]ClusterStatus
}

var emptyView = &View{segments: map[string]*Segment{}, status: map[string]ClusterStatus{}}

// Version increases by one with every change to the view.
func (v *View) Version() uint64 { return v.version }

// Clusters returns the names of every cluster with a segment, sorted.
func (v *View) Clusters() []string {
	out := make([]string, 0, len(v.segments))
	for n := range v.segments {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Segment returns one cluster's segment, or nil.
func (v *View) Segment(cluster string) *Segment { return v.segments[cluster] }

// Status returns one cluster's status; clusters never reported on are Alive.
func (v *View) Status(cluster string) ClusterStatus { return v.status[cluster] }

// Service returns a service's definition merged across clusters: the first
// cluster (by name) that defines it gives the labels and headless flag, and
// the ports are the union by port number.
func (v *View) Service(k ServiceKey) (*Service, bool) {
	var defs []*Service
	for _, name := range v.Clusters() {
		if s, ok := v.segments[name].Service(k); ok {
			defs = append(defs, s)
		}
	}
	if len(defs) == 0 {
		return nil, false
	}
	merged := defs[0]
	for _, s := range defs[1:] {
		for _, p := range s.Ports {
			if _, ok := merged.Port(p.Port); ok {
				continue
			}
			if merged == defs[0] { // copy before the first addition: defs[0] is shared
				cp := *merged
				cp.Ports = slices.Clone(merged.Ports)
				merged = &cp
			}
			merged.Ports = append(merged.Ports, p)
		}
	}
	return merged, true
}

// ServiceKeys returns every service that has a definition or endpoints in
// any cluster, sorted by namespace then name.
func (v *View) ServiceKeys() []ServiceKey {
	seen := map[ServiceKey]bool{}
	for _, seg := range v.segments {
		seg.EachService(func(s *Service) bool { seen[s.Key()] = true; return true })
		for _, k := range seg.EndpointServices() {
			seen[k] = true
		}
	}
	out := make([]ServiceKey, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	slices.SortFunc(out, compareServiceKeys)
	return out
}

func compareServiceKeys(a, b ServiceKey) int {
	if a.Namespace != b.Namespace {
		if a.Namespace < b.Namespace {
			return -1
		}
		return 1
	}
	switch {
	case a.Name < b.Name:
		return -1
	case a.Name > b.Name:
		return 1
	}
	return 0
}

// Endpoints returns a service's endpoints in every cluster, ordered by
// cluster name then key. Their Health is as their source reported it; use
// EffectiveHealth to fold in the cluster's state.
func (v *View) Endpoints(k ServiceKey) []*Endpoint {
	var out []*Endpoint
	for _, name := range v.Clusters() {
		out = append(out, v.segments[name].Endpoints(k)...)
	}
	return out
}

// EffectiveHealth folds the state of the endpoint's cluster into its health:
// a dead cluster's endpoints are unhealthy; the healthy endpoints of a
// suspect or unreachable cluster are stale, and staleSince says since when
// nothing was heard from it.
func (v *View) EffectiveHealth(e *Endpoint) (h Health, staleSince time.Time) {
	st := v.status[e.Cluster]
	switch st.State {
	case Dead, Left:
		return Unhealthy, time.Time{}
	case Suspect, Unreachable:
		if e.Health == Healthy || e.Health == Stale {
			return Stale, st.LastSeen
		}
	}
	return e.Health, time.Time{}
}
