package translate

import (
	"cmp"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/trust/authz"
	"github.com/meridian-mesh/meridian/trust/jwt"
)

// Policies are the compiled policies the translation reads: the locality
// engine (failover, distribute, residency, outlier detection — applied
// through its Assignments, never re-implemented here), the TrafficRoutes
// of the mesh ("mesh" gateway) and of named Gateways, the
// DestinationPolicies, Gateways, ServiceEntries, and the security kinds
// (PeerAuthentication, AuthorizationPolicy, RequestAuthentication), which
// package trust's own functions translate. Immutable; a nil *Policies
// means no policies.
type Policies struct {
	engine *locality.Engine
	// routes lists, per service, the mesh TrafficRoutes naming it among
	// their hosts, ordered by namespace and name.
	routes map[registry.ServiceKey][]*v1alpha1.TrafficRoute
	dests  map[registry.ServiceKey]*v1alpha1.DestinationPolicy
	// budgets is, per destination service, the retry budget its routes
	// ask for: Envoy keeps the budget on the upstream cluster, not the
	// route. Several routes' budgets for one service combine into the
	// strictest (the smallest percent and minimum).
	budgets map[registry.ServiceKey]v1alpha1.RetryBudget
	// variants lists, per service, the subsets and pinned clusters that
	// get clusters of their own: every subset of its DestinationPolicy and
	// every subset/cluster pair a route sends to.
	variants map[registry.ServiceKey][]variant

	// security holds the PeerAuthentications, AuthorizationPolicies and
	// RequestAuthentications, as trust/mtls and trust/authz select them.
	security []v1alpha1.Object
	// jwks are the clusters every remote JWKS of every
	// RequestAuthentication needs, by name.
	jwks []jwt.JWKSCluster
	// gateways in namespace/name order; gatewayRoutes lists, per
	// "namespace/name" of a Gateway, the TrafficRoutes bound to it.
	gateways      []*v1alpha1.Gateway
	gatewayRoutes map[string][]*v1alpha1.TrafficRoute
	// external is every ServiceEntry host and port, by host then port;
	// externalRoutes and externalDests are the mesh TrafficRoutes and the
	// DestinationPolicy of each external host.
	external       []externalPort
	externalRoutes map[string][]*v1alpha1.TrafficRoute
	externalDests  map[string]*v1alpha1.DestinationPolicy
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
		engine:         engine,
		routes:         map[registry.ServiceKey][]*v1alpha1.TrafficRoute{},
		dests:          map[registry.ServiceKey]*v1alpha1.DestinationPolicy{},
		variants:       map[registry.ServiceKey][]variant{},
		budgets:        map[registry.ServiceKey]v1alpha1.RetryBudget{},
		gatewayRoutes:  map[string][]*v1alpha1.TrafficRoute{},
		externalRoutes: map[string][]*v1alpha1.TrafficRoute{},
		externalDests:  map[string]*v1alpha1.DestinationPolicy{},
	}
	sorted := slices.Clone(objs)
	slices.SortFunc(sorted, func(a, b v1alpha1.Object) int {
		return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
	})
	// ServiceEntry hosts first: a host they declare is external even when
	// it looks like "name.namespace".
	for _, o := range sorted {
		if se, ok := o.(*v1alpha1.ServiceEntry); ok {
			p.addServiceEntry(se)
		}
	}
	slices.SortStableFunc(p.external, func(a, b externalPort) int {
		return cmp.Or(cmp.Compare(a.host, b.host), cmp.Compare(a.port.Number, b.port.Number))
	})
	p.external = slices.CompactFunc(p.external, func(a, b externalPort) bool { return a.host == b.host && a.port.Number == b.port.Number })
	var ras []*v1alpha1.RequestAuthentication
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
		case *v1alpha1.PeerAuthentication, *v1alpha1.AuthorizationPolicy:
			p.security = append(p.security, o)
		case *v1alpha1.RequestAuthentication:
			p.security = append(p.security, o)
			ras = append(ras, o)
		case *v1alpha1.Gateway:
			p.gateways = append(p.gateways, o)
		case *v1alpha1.DestinationPolicy:
			if p.isExternal(o.Spec.Host) {
				if _, dup := p.externalDests[o.Spec.Host]; !dup {
					p.externalDests[o.Spec.Host] = o
				}
				continue
			}
			k, ok := serviceKey(o.Spec.Host, o.Namespace)
			if !ok {
				continue // a host neither in the mesh nor declared: ValidateSet reports it
			}
			if _, dup := p.dests[k]; !dup { // the first by namespace/name wins; ValidateSet reports the conflict
				p.dests[k] = o
			}
			for _, s := range o.Spec.Subsets {
				addVariant(k, variant{subset: s.Name})
			}
		case *v1alpha1.TrafficRoute:
			mesh := len(o.Spec.Gateways) == 0
			for _, g := range o.Spec.Gateways {
				if g == v1alpha1.MeshGateway {
					mesh = true
				} else {
					key := o.Namespace + "/" + g
					p.gatewayRoutes[key] = append(p.gatewayRoutes[key], o)
				}
			}
			for _, h := range o.Spec.Hosts {
				if !mesh {
					break
				}
				if p.isExternal(h) {
					p.externalRoutes[h] = append(p.externalRoutes[h], o)
				} else if k, ok := serviceKey(h, o.Namespace); ok && !slices.Contains(p.routes[k], o) {
					p.routes[k] = append(p.routes[k], o)
				}
			}
			var dests []v1alpha1.Destination
			for _, r := range o.Spec.HTTP {
				for _, d := range r.Route {
					dests = append(dests, d.Destination)
					if r.Retries != nil && r.Retries.Budget != nil {
						p.addBudget(d.Destination, o.Namespace, *r.Retries.Budget)
					}
				}
				if m := r.Mirror; m != nil {
					dests = append(dests, m.Destination)
				}
			}
			for _, r := range o.Spec.TCP {
				for _, d := range r.Route {
					dests = append(dests, d.Destination)
				}
			}
			for _, d := range dests {
				if k, ok := serviceKey(d.Host, o.Namespace); ok && !p.isExternal(d.Host) {
					addVariant(k, variant{subset: d.Subset, cluster: d.Cluster})
				}
			}
		}
	}
	for _, ra := range ras {
		// Checked here, so that a bad JWKS URI refuses the set rather than
		// failing a build.
		_, clusters, err := jwt.EnvoyFilter(authz.JWTRules([]*v1alpha1.RequestAuthentication{ra}))
		if err != nil {
			return nil, fmt.Errorf("translate: %s: %w", v1alpha1.Describe(ra), err)
		}
		for _, c := range clusters {
			if !slices.ContainsFunc(p.jwks, func(x jwt.JWKSCluster) bool { return x.Name == c.Name }) {
				p.jwks = append(p.jwks, c)
			}
		}
	}
	slices.SortFunc(p.jwks, func(a, b jwt.JWKSCluster) int { return cmp.Compare(a.Name, b.Name) })
	for k := range p.variants {
		slices.SortFunc(p.variants[k], func(a, b variant) int { return cmp.Compare(a.name(), b.name()) })
	}
	return p, nil
}

// addBudget records a route's retry budget for its destination service,
// keeping the strictest when several routes set one.
func (p *Policies) addBudget(d v1alpha1.Destination, ns string, b v1alpha1.RetryBudget) {
	k, ok := serviceKey(d.Host, ns)
	if !ok || p.isExternal(d.Host) {
		return
	}
	if b.MinRetryConcurrency == 0 {
		b.MinRetryConcurrency = 3 // Envoy's default, so that the strictest compares what applies
	}
	if old, seen := p.budgets[k]; seen {
		b.Percent = min(b.Percent, old.Percent)
		b.MinRetryConcurrency = min(b.MinRetryConcurrency, old.MinRetryConcurrency)
	}
	p.budgets[k] = b
}

func (p *Policies) retryBudget(k registry.ServiceKey) (v1alpha1.RetryBudget, bool) {
	if p == nil {
		return v1alpha1.RetryBudget{}, false
	}
	b, ok := p.budgets[k]
	return b, ok
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
