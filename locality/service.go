package locality

import (
	"cmp"
	"slices"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/registry"
)

// serviceState is everything about a service that does not depend on the
// client: the policies that select it, its endpoints with merged health,
// the residency filter's verdicts, and the allowed endpoints grouped by
// locality and cluster. It is computed once per service and shared by the
// assignments of every client, and never modified afterwards.
type serviceState struct {
	key      registry.ServiceKey
	failover *failoverPolicy
	groups   []group
	blocked  []Blocked
	audited  []Blocked
	od       v1alpha1.OutlierDetection
	odWhy    Reason
	total    int  // endpoints before the residency filter
	resident bool // some residency rule (enforce or audit) selects it
}

// group is the allowed endpoints of one locality in one cluster.
type group struct {
	place
	weight uint32
	eps    []Endpoint
}

func (e *Engine) service(v *registry.View, svc registry.ServiceKey) *serviceState {
	st := &serviceState{key: svc}
	var svcLabels map[string]string
	if def, ok := v.Service(svc); ok {
		svcLabels = def.Labels
	}
	var enforce, audit []*residencyRule
	if e != nil {
		for _, f := range e.failover {
			if f.matches(svc, svcLabels) {
				st.failover = f
				break
			}
		}
		for _, r := range e.residency {
			if r.matches(svc, svcLabels) {
				if r.obj.Spec.Enforced() {
					enforce = append(enforce, r)
				} else {
					audit = append(audit, r)
				}
			}
		}
	}
	st.resident = len(enforce)+len(audit) > 0
	st.od, st.odWhy = e.outlierFor(st.failover, svc)

	eps := v.Endpoints(svc)
	st.total = len(eps)
	clusters := map[string]*registry.Cluster{}
	clusterOf := func(name string) *registry.Cluster {
		c, ok := clusters[name]
		if !ok {
			if seg := v.Segment(name); seg != nil {
				cl := seg.Cluster()
				c = &cl
			}
			clusters[name] = c
		}
		return c
	}
	var drains []Target
	if e != nil {
		drains = e.cfg.Drains
	}
	for _, ep := range eps {
		cl := clusterOf(ep.Cluster)
		if r := firstDenying(enforce, ep.Locality, cl); r != nil {
			st.blocked = append(st.blocked, blockedOf(ep, r))
			continue
		}
		if r := firstDenying(audit, ep.Locality, cl); r != nil {
			st.audited = append(st.audited, blockedOf(ep, r))
		}
		out := mergeHealth(v, ep, drains)
		n := len(st.groups)
		if n == 0 || st.groups[n-1].locality != ep.Locality || st.groups[n-1].cluster != ep.Cluster {
			g := group{place: place{locality: ep.Locality, cluster: ep.Cluster}}
			if cl != nil {
				g.network, g.labels = cl.Network, cl.Labels
			}
			st.groups = append(st.groups, g)
			n++
		}
		g := &st.groups[n-1]
		g.eps = append(g.eps, out)
		g.weight += max(ep.Weight, 1)
	}
	// The view orders endpoints by cluster then key; groups by locality
	// then cluster. Groups of one cluster and locality are contiguous only
	// if keys sort by locality, so merge what the scan split.
	slices.SortStableFunc(st.groups, func(a, b group) int {
		if c := compareLocality(a.locality, b.locality); c != 0 {
			return c
		}
		return cmp.Compare(a.cluster, b.cluster)
	})
	st.groups = mergeGroups(st.groups)
	return st
}

// mergeGroups joins adjacent groups of the same locality and cluster.
func mergeGroups(gs []group) []group {
	out := gs[:0]
	for _, g := range gs {
		if n := len(out); n > 0 && out[n-1].locality == g.locality && out[n-1].cluster == g.cluster {
			out[n-1].eps = append(out[n-1].eps, g.eps...)
			out[n-1].weight += g.weight
			continue
		}
		out = append(out, g)
	}
	return out
}

func firstDenying(rules []*residencyRule, l registry.Locality, cl *registry.Cluster) *residencyRule {
	for _, r := range rules {
		if !r.allows(l, cl) {
			return r
		}
	}
	return nil
}

func blockedOf(ep *registry.Endpoint, r *residencyRule) Blocked {
	return Blocked{Endpoint: registry.EndpointRef{Cluster: ep.Cluster, EndpointKey: ep.Key()}, Locality: ep.Locality, Rule: r.why}
}

// outlierFor picks the outlier detection of a service: its failover
// policy's, else its destination policy's, else the default.
func (e *Engine) outlierFor(f *failoverPolicy, svc registry.ServiceKey) (v1alpha1.OutlierDetection, Reason) {
	if f != nil && f.od != nil {
		return f.od.WithDefaults(), Reason{Rule: "outlier detection of the failover policy", Policy: f.name, Field: "spec.outlierDetection"}
	}
	if e != nil {
		for _, d := range e.outliers {
			if d.svc == svc {
				return d.od.WithDefaults(), d.why
			}
		}
	}
	return v1alpha1.DefaultOutlierDetection(), defaultOutlierReason
}
