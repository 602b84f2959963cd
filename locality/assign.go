package locality

import (
	"slices"
	"time"

	"github.com/meridian-mesh/meridian/registry"
)

// Client is the side that asks: where it runs and what its cluster is.
type Client struct {
	Locality registry.Locality
	Cluster  string
	// Labels are the client cluster's labels (jurisdiction=eu, ...), used by
	// label-matching failover orders.
	Labels map[string]string
}

// Endpoint is an endpoint as a client sees it: the registry's value with its
// effective health (cluster state folded in).
type Endpoint struct {
	*registry.Endpoint
	Health registry.Health
	// StaleSince is set for stale endpoints: when their control plane was
	// last heard from.
	StaleSince time.Time
}

// LocalityEndpoints is one locality inside a priority level.
type LocalityEndpoints struct {
	Locality registry.Locality
	// Weight is the locality's load-balancing weight, never zero.
	Weight    uint32
	Endpoints []Endpoint
}

// Level is one priority level.
type Level struct {
	Localities []LocalityEndpoints
}

// Assignment is what one client gets for one service.
type Assignment struct {
	Service registry.ServiceKey
	// Levels[0] is priority 0. No level is empty.
	Levels []Level
}

// Assign computes a client's assignment for a service in the default order:
// own zone, own region, other regions; each locality weighted by its
// endpoint count.
func Assign(v *registry.View, svc registry.ServiceKey, c Client) Assignment {
	byLevel := map[int]map[registry.Locality][]Endpoint{}
	for _, e := range v.Endpoints(svc) {
		h, since := v.EffectiveHealth(e)
		lvl := defaultLevel(c.Locality, e.Locality)
		if byLevel[lvl] == nil {
			byLevel[lvl] = map[registry.Locality][]Endpoint{}
		}
		byLevel[lvl][e.Locality] = append(byLevel[lvl][e.Locality], Endpoint{Endpoint: e, Health: h, StaleSince: since})
	}
	a := Assignment{Service: svc}
	for lvl := 0; lvl < 3; lvl++ {
		locs := byLevel[lvl]
		if len(locs) == 0 {
			continue
		}
		var level Level
		for l, eps := range locs {
			level.Localities = append(level.Localities, LocalityEndpoints{Locality: l, Weight: uint32(len(eps)), Endpoints: eps})
		}
		slices.SortFunc(level.Localities, func(a, b LocalityEndpoints) int { return compareLocality(a.Locality, b.Locality) })
		a.Levels = append(a.Levels, level)
	}
	return a
}

func defaultLevel(client, ep registry.Locality) int {
	switch {
	case client.Region == ep.Region && client.Zone == ep.Zone:
		return 0
	case client.Region == ep.Region:
		return 1
	default:
		return 2
	}
}

func compareLocality(a, b registry.Locality) int {
	if c := compareStr(a.Region, b.Region); c != 0 {
		return c
	}
	if c := compareStr(a.Zone, b.Zone); c != 0 {
		return c
	}
	return compareStr(a.Subzone, b.Subzone)
}

func compareStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
