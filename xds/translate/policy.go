package translate

import (
	"cmp"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/registry"
)

// Policies are the compiled policies the translation reads: the locality
// engine (failover, distribute, residency, outlier detection — applied
// through its Assignments, never re-implemented here), the TrafficRoutes
// that apply to the mesh ("mesh" gateway), and the DestinationPolicies.
// Immutable; a nil *Policies means no policies.
type Policies struct {
	engine *locality.Engine
	// routes lists, per service, the mesh TrafficRoutes naming it among
	// their hosts, ordered by namespace and name.
	routes map[registry.ServiceKey][]*v1alpha1.TrafficRoute
	dests  map[registry.ServiceKey]*v1alpha1.DestinationPolicy
	// variants lists, per service, the subsets and pinned clusters that
	// get clusters of their own: every subset of its DestinationPolicy and
	// every subset/cluster pair a route sends to.
	variants map[registry.ServiceKey][]variant
}

// variant is a part of a service's endpoints a route can send to.
type variant struct {
	subset  string
	cluster string
}

// name is the subset field of the variant's cluster name.
func (v variant) name() string {
	switch {
	case v.cluster == "":
		return v.subset
	case v.subset == "":
		return "@" + v.cluster
	default:
		return v.subset + "@" + v.cluster
	}
}

// CompilePolicies checks and indexes a policy set. Objects of kinds the
// translation does not read are ignored here (the locality engine reads
// FailoverPolicy and ResidencyRule); invalid objects are refused, naming
// the object and field.
func CompilePolicies(objs []v1alpha1.Object) (*Policies, error) {
	engine, err := locality.New(locality.Config{Policies: objs})
	if err != nil {
		return nil, fmt.Errorf("translate: %w", err)
	}
	p := &Policies{
		engine:   engine,
		routes:   map[registry.ServiceKey][]*v1alpha1.TrafficRoute{},
		dests:    map[registry.ServiceKey]*v1alpha1.DestinationPolicy{},
		variants: map[registry.ServiceKey][]variant{},
	}
	sorted := slices.Clone(objs)
	slices.SortFunc(sorted, func(a, b v1alpha1.Object) int {
		return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
	})
	seen := map[registry.ServiceKey]map[variant]bool{}
	addVariant := func(k registry.ServiceKey, v variant) {
		if v == (variant{}) {
			return
		}
		if seen[k] == nil {
			seen[k] = map[variant]bool{}
		}
		if !seen[k][v] {
			seen[k][v] = true
			p.variants[k] = append(p.variants[k], v)
		}
	}
	for _, o := range sorted {
		switch o := o.(type) {
		case *v1alpha1.DestinationPolicy:
			k, ok := serviceKey(o.Spec.Host, o.Namespace)
			if !ok {
				continue // an external host: ServiceEntries are not translated yet
			}
			if _, dup := p.dests[k]; !dup { // the first by namespace/name wins; ValidateSet reports the conflict
				p.dests[k] = o
			}
			for _, s := range o.Spec.Subsets {
				addVariant(k, variant{subset: s.Name})
			}
		case *v1alpha1.TrafficRoute:
			if len(o.Spec.Gateways) > 0 && !slices.Contains(o.Spec.Gateways, v1alpha1.MeshGateway) {
				continue // gateway routes come with the Gateway kind
			}
			for _, h := range o.Spec.Hosts {
				if k, ok := serviceKey(h, o.Namespace); ok && !slices.Contains(p.routes[k], o) {
					p.routes[k] = append(p.routes[k], o)
				}
			}
			for _, r := range o.Spec.HTTP {
				for _, d := range r.Route {
					if k, ok := serviceKey(d.Host, o.Namespace); ok {
						addVariant(k, variant{subset: d.Subset, cluster: d.Cluster})
					}
				}
				if m := r.Mirror; m != nil {
					if k, ok := serviceKey(m.Host, o.Namespace); ok {
						addVariant(k, variant{subset: m.Subset, cluster: m.Cluster})
					}
				}
			}
		}
	}
	for k := range p.variants {
		slices.SortFunc(p.variants[k], func(a, b variant) int { return cmp.Compare(a.name(), b.name()) })
	}
	return p, nil
}

func serviceKey(host, ns string) (registry.ServiceKey, bool) {
	n, name, ok := v1alpha1.ServiceHost(host, ns)
	return registry.ServiceKey{Namespace: n, Name: name}, ok
}

func (p *Policies) eng() *locality.Engine {
	if p == nil {
		return nil
	}
	return p.engine
}

// ClientKey is what, under these policies, a client's load assignments
// depend on (see locality.Engine.ClientKey); for logs and tests.
func (p *Policies) ClientKey(c locality.Client) string { return p.eng().ClientKey(c) }

func (p *Policies) destination(k registry.ServiceKey) *v1alpha1.DestinationPolicy {
	if p == nil {
		return nil
	}
	return p.dests[k]
}

func (p *Policies) routesFor(k registry.ServiceKey) []*v1alpha1.TrafficRoute {
	if p == nil {
		return nil
	}
	return p.routes[k]
}

// variantsOf returns the service's variants; the whole service (the zero
// variant) comes first.
func (p *Policies) variantsOf(k registry.ServiceKey) []variant {
	out := []variant{{}}
	if p != nil {
		out = append(out, p.variants[k]...)
	}
	return out
}

// selects reports whether an endpoint belongs to a variant: it carries the
// subset's labels and runs in the pinned cluster. A subset the service's
// DestinationPolicy does not define selects nothing (ValidateSet reports
// the dangling reference).
func (p *Policies) selects(k registry.ServiceKey, v variant, e *registry.Endpoint) bool {
	if v.cluster != "" && e.Cluster != v.cluster {
		return false
	}
	if v.subset == "" {
		return true
	}
	dp := p.destination(k)
	if dp == nil {
		return false
	}
	for _, s := range dp.Spec.Subsets {
		if s.Name == v.subset {
			return labels.SelectorFromSet(s.Labels).Matches(labels.Set(e.Labels))
		}
	}
	return false
}
