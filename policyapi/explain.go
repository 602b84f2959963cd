package policyapi

import (
	"fmt"
	"slices"
	"strings"

	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/registry"
)

// Explanation is what explain shows: the assignment a client gets for a
// service under the policies and drills in force, Envoy's load per
// priority, and the share of requests each locality receives.
type Explanation struct {
	locality.Assignment
	// From is the client as asked ("eks-use1", "us-east-1/use1-az1").
	From string `json:"from"`
	// Load is the priority load (Assignment.PriorityLoad) of the levels.
	Load locality.Load `json:"load"`
	// Shares is where an Envoy-like proxy sends the client's requests.
	Shares []locality.Share `json:"shares"`
	// Drains are the live drills' targets in force.
	Drains []locality.Target `json:"drains,omitempty"`
}

// Explain computes the explanation of a service ("name.namespace") for a
// client ("CLUSTER" or "region[/zone[/subzone]]") with the engine in
// force.
func (s *Server) Explain(service, from string) (Explanation, error) {
	v := s.cfg.Registry.View()
	k, err := serviceOf(v, service)
	if err != nil {
		return Explanation{}, err
	}
	c, err := clientOf(v, from)
	if err != nil {
		return Explanation{}, err
	}
	e := s.Engine()
	a := e.Assign(v, k, c)
	return Explanation{
		Assignment: a, From: from,
		Load:   a.PriorityLoad(locality.LoadOptions{}),
		Shares: a.Distribution(locality.LoadOptions{}),
		Drains: e.Config().Drains,
	}, nil
}

// serviceOf parses "name.namespace" and checks the mesh knows it.
func serviceOf(v *registry.View, s string) (registry.ServiceKey, error) {
	name, ns, ok := strings.Cut(s, ".")
	if !ok || name == "" || ns == "" || strings.Contains(ns, ".") {
		return registry.ServiceKey{}, &RefusedError{Violations: []Violation{{Field: "service", Description: fmt.Sprintf("%q: want name.namespace, such as web.shop", s)}}}
	}
	k := registry.ServiceKey{Namespace: ns, Name: name}
	if _, ok := v.Service(k); !ok && len(v.Endpoints(k)) == 0 {
		return k, &NotFoundError{What: "service " + k.String()}
	}
	return k, nil
}

// clientOf turns "CLUSTER" or "region[/zone[/subzone]]" into a client. A
// locality's client is put in a cluster of its region — the one with
// endpoints in its zone, else the first by name — since failover orders
// may read cluster labels.
func clientOf(v *registry.View, from string) (locality.Client, error) {
	bad := func(msg string) error {
		return &RefusedError{Violations: []Violation{{Field: "from", Description: fmt.Sprintf("%q: %s", from, msg)}}}
	}
	if from == "" {
		return locality.Client{}, bad("give a cluster or a locality region[/zone[/subzone]]")
	}
	if !strings.Contains(from, "/") {
		if c, ok := locality.ClientOfCluster(v, from); ok {
			return c, nil
		}
	}
	l, err := registry.ParseLocality(from)
	if err != nil {
		return locality.Client{}, bad(err.Error())
	}
	var inRegion []string
	for _, name := range v.Clusters() {
		if v.Segment(name).Cluster().Region == l.Region {
			inRegion = append(inRegion, name)
		}
	}
	if len(inRegion) == 0 {
		return locality.Client{}, &NotFoundError{What: fmt.Sprintf("cluster or region %q (clusters: %s; regions: %s)",
			from, strings.Join(v.Clusters(), ", "), strings.Join(locality.ContextOf(v).Regions, ", "))}
	}
	slices.Sort(inRegion)
	cluster := inRegion[0]
	for _, name := range inRegion {
		if hasZone(v.Segment(name), l) {
			cluster = name
			break
		}
	}
	c, _ := locality.ClientOfCluster(v, cluster)
	c.Locality = l
	return c, nil
}

func hasZone(seg *registry.Segment, l registry.Locality) bool {
	found := false
	seg.EachEndpoint(func(e *registry.Endpoint) bool {
		found = e.Locality.Region == l.Region && e.Locality.Zone == l.Zone
		return !found
	})
	return found
}
