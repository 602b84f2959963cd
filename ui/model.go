package ui

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/registry"
)

// Mesh is what the dashboard shows, as /ui/api/mesh returns it: one
// consistent picture built from one registry view and one policy engine.
type Mesh struct {
	// Cluster is the control plane serving the dashboard.
	Cluster   string    `json:"cluster"`
	Version   uint64    `json:"version"`
	Generated time.Time `json:"generated"`
	Regions   []Region  `json:"regions"`
	Services  []Service `json:"services"`
	// Edges are live request rates between clusters, from the proxies'
	// metrics; TrafficNote says why there are none, when there are none.
	Edges       []Edge   `json:"edges"`
	TrafficNote string   `json:"trafficNote,omitempty"`
	Policies    []Policy `json:"policies"`
	// PoliciesNote says why there is no policy list, when there is none.
	PoliciesNote string `json:"policiesNote,omitempty"`
	// Drains are the targets of live drills in force.
	Drains []string `json:"drains"`
}

// Region groups the clusters of one region.
type Region struct {
	Name     string    `json:"name"`
	Clusters []Cluster `json:"clusters"`
}

// Cluster is one cluster as the registry and federation see it.
type Cluster struct {
	Name     string            `json:"name"`
	Region   string            `json:"region"`
	Network  string            `json:"network,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	State    string            `json:"state"`
	Since    time.Time         `json:"since,omitzero"`
	LastSeen time.Time         `json:"lastSeen,omitzero"`
	// Services and Endpoints count the cluster's segment; Serving counts
	// endpoints that get traffic (health with the cluster's state folded in).
	Services  int `json:"services"`
	Endpoints int `json:"endpoints"`
	Serving   int `json:"serving"`
}

// Service is one service: where its endpoints are, where each cluster's
// clients send its traffic, and what residency keeps it from.
type Service struct {
	Name       string         `json:"name"`
	Namespace  string         `json:"namespace"`
	Localities []LocalityInfo `json:"localities"`
	Failover   []Failover     `json:"failover"`
	// Residency is set when a residency rule applies: the clusters the
	// service may be served from and those it is kept out of.
	Residency *Residency `json:"residency,omitempty"`
	// FailoverPolicy in force, "Kind namespace/name"; empty for defaults.
	FailoverPolicy string `json:"failoverPolicy,omitempty"`
}

// LocalityInfo counts a service's endpoints in one locality of one cluster.
type LocalityInfo struct {
	Cluster  string `json:"cluster"`
	Locality string `json:"locality"`
	Serving  int    `json:"serving"`
	Total    int    `json:"total"`
}

// Failover states, from the Envoy priority model (overprovisioning 1.4).
const (
	// StateLocal: every request is served in the client's own region.
	StateLocal = "local"
	// StateRemote: served at priority 0 from other regions, by policy (a
	// residency rule or a distribute rule), not because of an outage.
	StateRemote = "remote"
	// StateFailover: part or all of the traffic goes to lower priorities.
	StateFailover = "failover"
	// StateDown: no endpoint serves; requests fail.
	StateDown = "down"
)

// Failover is where one cluster's clients send a service's requests.
type Failover struct {
	Client string `json:"client"`
	State  string `json:"state"`
	// Moved is the percentage of requests sent beyond priority 0.
	Moved float64 `json:"moved"`
	// To lists the localities receiving traffic beyond priority 0, with
	// their share, "eu-west-1/euw1-az1 62%".
	To []string `json:"to,omitempty"`
	// Reason is the rule of the first level beyond priority 0 that gets
	// traffic ("failover to eu-west-1 (...)"), or why the service is down.
	Reason string `json:"reason,omitempty"`
}

// Residency is a residency boundary around one service.
type Residency struct {
	Rules   []string `json:"rules"`
	Allowed []string `json:"allowed"`
	Blocked []string `json:"blocked"`
	// Mode is "enforce", or "audit" when the rules only report.
	Mode string `json:"mode"`
}

// Edge is a live request rate from one cluster's workloads to another's.
type Edge struct {
	Source      string  `json:"source"`
	Destination string  `json:"destination"`
	Service     string  `json:"service,omitempty"`
	RPS         float64 `json:"rps"`
	ErrorRPS    float64 `json:"errorRps"`
}

// Policy is one policy object in force.
type Policy struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Source    string `json:"source,omitempty"`
}

// build computes the mesh picture. It is a pure function of its inputs.
func build(v *registry.View, e *locality.Engine, self string, now time.Time) Mesh {
	m := Mesh{Cluster: self, Version: v.Version(), Generated: now, Regions: []Region{}, Services: []Service{}, Edges: []Edge{}, Policies: []Policy{}, Drains: []string{}}
	byRegion := map[string]*Region{}
	var clients []locality.Client
	for _, name := range v.Clusters() {
		seg, st := v.Segment(name), v.Status(name)
		cl := seg.Cluster()
		c := Cluster{Name: name, Region: cl.Region, Network: cl.Network, Labels: cl.Labels, State: st.State.String(),
			Since: st.Since, LastSeen: st.LastSeen, Services: seg.ServiceCount(), Endpoints: seg.EndpointCount()}
		seg.EachEndpoint(func(ep *registry.Endpoint) bool {
			if h, _ := v.EffectiveHealth(ep); h.Serving() {
				c.Serving++
			}
			return true
		})
		r := byRegion[cl.Region]
		if r == nil {
			r = &Region{Name: cl.Region}
			byRegion[cl.Region] = r
		}
		r.Clusters = append(r.Clusters, c)
		if client, ok := locality.ClientOfCluster(v, name); ok {
			clients = append(clients, client)
		}
	}
	for _, r := range byRegion {
		m.Regions = append(m.Regions, *r)
	}
	slices.SortFunc(m.Regions, func(a, b Region) int { return cmp.Compare(a.Name, b.Name) })
	if e != nil {
		for _, d := range e.Config().Drains {
			m.Drains = append(m.Drains, d.String())
		}
	}
	for _, k := range v.ServiceKeys() {
		m.Services = append(m.Services, service(v, e, k, clients))
	}
	return m
}

func service(v *registry.View, e *locality.Engine, k registry.ServiceKey, clients []locality.Client) Service {
	s := Service{Name: k.Name, Namespace: k.Namespace, Localities: []LocalityInfo{}, Failover: []Failover{}}
	counts := map[[2]string]*LocalityInfo{}
	for _, ep := range v.Endpoints(k) {
		key := [2]string{ep.Cluster, ep.Locality.String()}
		li := counts[key]
		if li == nil {
			li = &LocalityInfo{Cluster: ep.Cluster, Locality: ep.Locality.String()}
			counts[key] = li
		}
		li.Total++
		if h, _ := v.EffectiveHealth(ep); h.Serving() {
			li.Serving++
		}
	}
	for _, li := range counts {
		s.Localities = append(s.Localities, *li)
	}
	slices.SortFunc(s.Localities, func(a, b LocalityInfo) int {
		return cmp.Or(cmp.Compare(a.Locality, b.Locality), cmp.Compare(a.Cluster, b.Cluster))
	})
	for _, c := range clients {
		a := e.Assign(v, k, c)
		s.FailoverPolicy = a.Failover
		s.Failover = append(s.Failover, failover(&a, c.Cluster))
		if s.Residency == nil {
			s.Residency = residency(v, &a)
		}
	}
	return s
}

// failover reads a client's assignment the way its proxy will use it:
// the share of requests each priority receives under Envoy's
// overprovisioning.
func failover(a *locality.Assignment, client string) Failover {
	f := Failover{Client: client, State: StateLocal}
	shares := a.Distribution(locality.LoadOptions{})
	failing := 0.0
	var remote []string
	for _, sh := range shares {
		if sh.Failing {
			failing += sh.Percent
			continue
		}
		if sh.Priority == 0 && sh.Locality.Region != a.Client.Locality.Region {
			remote = append(remote, sh.Locality.String()+" "+percent(sh.Percent))
		}
		if sh.Priority > 0 {
			f.Moved += sh.Percent
			f.To = append(f.To, sh.Locality.String()+" "+percent(sh.Percent))
			if f.Reason == "" {
				f.Reason = a.Levels[sh.Priority].Reason.Rule
			}
		}
	}
	switch {
	case len(shares) == 0 || failing >= 99.95:
		f.State, f.Moved, f.To = StateDown, 0, nil
		f.Reason = "no serving endpoint: requests fail"
		if len(a.Blocked) > 0 {
			f.Reason = "no serving allowed endpoint: requests fail rather than leave the residency boundary"
		}
	case f.Moved > 0.05:
		f.State = StateFailover
		f.Moved = math.Round(f.Moved*10) / 10
	case len(remote) > 0:
		f.State, f.Moved, f.To = StateRemote, 0, remote
		f.Reason = a.Levels[0].Reason.Rule
	default:
		f.Moved, f.To = 0, nil
	}
	return f
}

func percent(p float64) string {
	return strconv.FormatFloat(math.Round(p*10)/10, 'f', -1, 64) + "%"
}

// residency derives a service's boundary from an assignment: the clusters
// of endpoints it may use and of those residency blocks (or would, in audit).
func residency(v *registry.View, a *locality.Assignment) *Residency {
	blocked, mode := a.Blocked, "enforce"
	if len(blocked) == 0 {
		blocked, mode = a.Audited, "audit"
	}
	if len(blocked) == 0 {
		return nil
	}
	r := &Residency{Mode: mode}
	seen := map[string]bool{}
	for _, b := range blocked {
		if !slices.Contains(r.Blocked, b.Endpoint.Cluster) {
			r.Blocked = append(r.Blocked, b.Endpoint.Cluster)
		}
		rule := b.Rule.Policy
		if rule == "" {
			rule = b.Rule.Rule
		}
		if !seen[rule] {
			seen[rule] = true
			r.Rules = append(r.Rules, rule)
		}
	}
	for _, ep := range v.Endpoints(a.Service) {
		if !slices.Contains(r.Blocked, ep.Cluster) && !slices.Contains(r.Allowed, ep.Cluster) {
			r.Allowed = append(r.Allowed, ep.Cluster)
		}
	}
	slices.Sort(r.Allowed)
	slices.Sort(r.Blocked)
	return r
}
