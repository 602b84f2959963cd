package locality

import (
	"math"

	"github.com/meridian-mesh/meridian/registry"
)

// DrillReport answers "what happens if this target goes down?" without
// touching traffic: for every service the outage affects, where each
// client locality's traffic goes before and after, the capacity left, and
// whether the service loses every allowed endpoint.
type DrillReport struct {
	Target Target `json:"target"`
	// Services affected by the outage, in service order.
	Services []ServiceImpact `json:"services"`
	// Stranded lists the services left with no serving allowed endpoint
	// anywhere: every request to them fails.
	Stranded []registry.ServiceKey `json:"stranded,omitempty"`
}

// ServiceImpact is what the outage does to one service.
type ServiceImpact struct {
	Service registry.ServiceKey `json:"service"`
	// ServingBefore and ServingAfter count the allowed endpoints that get
	// traffic; CapacityLeft is their ratio in percent.
	ServingBefore int     `json:"servingBefore"`
	ServingAfter  int     `json:"servingAfter"`
	CapacityLeft  float64 `json:"capacityLeft"`
	// Stranded: no serving allowed endpoint is left.
	Stranded bool `json:"stranded,omitempty"`
	// ResidencyOutage: stranded while endpoints a residency rule blocks
	// are still up; the rule holds and requests fail, as intended.
	ResidencyOutage bool           `json:"residencyOutage,omitempty"`
	Clients         []ClientImpact `json:"clients"`
}

// ClientImpact is where one client locality's requests go.
type ClientImpact struct {
	Client Client  `json:"client"`
	Before []Share `json:"before"`
	After  []Share `json:"after"`
	// Moved is the percentage of the client's requests that land in a
	// different locality after the outage (failing requests count as moved).
	Moved float64 `json:"moved"`
}

// WhatIf computes a drill's effect on every service of the view for the
// given clients (nil: ClientsOf the view), with the engine's policies and
// the target drained on top of its drills. Services the target does not
// touch are left out.
func (e *Engine) WhatIf(v *registry.View, target Target, clients []Client) DrillReport {
	var drains []Target
	if e != nil {
		drains = e.cfg.Drains
	}
	after := e.WithDrains(append(append([]Target(nil), drains...), target)...)
	if clients == nil {
		clients = ClientsOf(v)
	}
	rep := DrillReport{Target: target}
	for _, k := range v.ServiceKeys() {
		if !touches(v, k, target) {
			continue
		}
		sb, sa := e.service(v, k), after.service(v, k)
		imp := ServiceImpact{Service: k, ServingBefore: sb.serving(), ServingAfter: sa.serving()}
		if imp.ServingBefore > 0 {
			imp.CapacityLeft = 100 * float64(imp.ServingAfter) / float64(imp.ServingBefore)
		}
		imp.Stranded = imp.ServingAfter == 0
		imp.ResidencyOutage = imp.Stranded && blockedServing(v, sa.blocked, after.cfg.Drains)
		for _, c := range clients {
			b, a := e.arrange(sb, c), after.arrange(sa, c)
			ci := ClientImpact{Client: c, Before: b.Distribution(LoadOptions{}), After: a.Distribution(LoadOptions{})}
			ci.Moved = moved(ci.Before, ci.After)
			imp.Clients = append(imp.Clients, ci)
		}
		if imp.Stranded {
			rep.Stranded = append(rep.Stranded, k)
		}
		rep.Services = append(rep.Services, imp)
	}
	return rep
}

func touches(v *registry.View, k registry.ServiceKey, t Target) bool {
	for _, e := range v.Endpoints(k) {
		if t.Covers(e) {
			return true
		}
	}
	return false
}

func (st *serviceState) serving() int {
	n := 0
	for _, g := range st.groups {
		for i := range g.eps {
			if g.eps[i].Health.Serving() {
				n++
			}
		}
	}
	return n
}

// blockedServing reports whether any blocked endpoint would still serve.
func blockedServing(v *registry.View, blocked []Blocked, drains []Target) bool {
	for _, b := range blocked {
		seg := v.Segment(b.Endpoint.Cluster)
		if seg == nil {
			continue
		}
		if e, ok := seg.Endpoint(b.Endpoint.EndpointKey); ok && mergeHealth(v, e, drains).Health.Serving() {
			return true
		}
	}
	return false
}

// moved is the share of requests whose locality changed: 100 minus the
// overlap of the two distributions (failing shares overlap nothing).
func moved(before, after []Share) float64 {
	by := map[registry.Locality]float64{}
	for _, s := range before {
		if !s.Failing {
			by[s.Locality] += s.Percent
		}
	}
	same := 0.0
	for _, s := range after {
		if !s.Failing {
			same += min(by[s.Locality], s.Percent)
			by[s.Locality] = math.Max(0, by[s.Locality]-s.Percent)
		}
	}
	return math.Max(0, 100-same)
}
