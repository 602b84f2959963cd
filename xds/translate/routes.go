package translate

import (
	"slices"
	"strconv"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfault "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	fault "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
)

// faultFilter is the name of Envoy's (and grpc-go's) fault injection
// filter; every HTTP connection manager carries it, inert unless a route
// configures it.
const faultFilter = "envoy.filters.http.fault"

func buildRoutes(in Input, s Scope, r *Result) {
	switch s.Mode {
	case ModeProxyless:
		for _, svc := range services(in) {
			for _, p := range svc.def.Ports {
				target := Target(svc.host, p.Port)
				domains := []string{target}
				if len(svc.def.Ports) == 1 {
					domains = append(domains, svc.host)
				}
				r.add(target, &route.RouteConfiguration{
					Name:         target,
					VirtualHosts: []*route.VirtualHost{meshVirtualHost(in, svc, p.Port, target, domains, r)},
				})
			}
		}
	case ModeSidecar:
		byPort := map[uint32]*vhostSet{}
		set := func(port uint32) *vhostSet {
			if byPort[port] == nil {
				byPort[port] = &vhostSet{name: OutboundRouteName(port)}
			}
			return byPort[port]
		}
		for _, svc := range services(in) {
			for _, p := range svc.def.Ports {
				if p.Protocol.IsHTTP() {
					set(p.Port).add(meshVirtualHost(in, svc, p.Port, Target(svc.host, p.Port), sidecarDomains(svc, p.Port, s.Namespace), r), r)
				}
			}
		}
		for _, e := range in.Policies.externalPorts() {
			if e.proto.IsHTTP() {
				set(uint32(e.port.Number)).add(externalVirtualHost(in, e, r), r)
			}
		}
		for _, vs := range byPort {
			// Hosts outside the mesh pass through, as Istio's ALLOW_ANY,
			// or are refused under REGISTRY_ONLY.
			vs.add(unknownHosts(s.RegistryOnly), r)
			r.add(vs.name, &route.RouteConfiguration{Name: vs.name, VirtualHosts: vs.vhs})
		}
	case ModeIngress, ModeEgress:
		if gws := in.Policies.gatewaysFor(s); len(gws) > 0 {
			gatewayRoutes(in, s, gws, r)
			return
		}
		name := GatewayName(s.Mode, s.Port)
		vs := &vhostSet{name: name}
		defaultGatewayHosts(in, s, vs, r)
		if s.RegistryOnly {
			vs.add(unknownHosts(true), r)
		}
		r.add(name, &route.RouteConfiguration{Name: name, VirtualHosts: vs.vhs})
	}
}

// defaultGatewayHosts are a gateway's virtual hosts when no Gateway object
// configures it (or for a "*" listener without routes): every HTTP port of
// every mesh service as HOST:PORT, the bare host for its first HTTP port,
// and for egress gateways the ServiceEntry HTTP hosts (an ingress gateway
// exposes the mesh, not the hosts outside it).
func defaultGatewayHosts(in Input, s Scope, vs *vhostSet, r *Result) {
	for _, svc := range services(in) {
		first := true
		for _, p := range svc.def.Ports {
			if !p.Protocol.IsHTTP() {
				continue
			}
			target := Target(svc.host, p.Port)
			domains := []string{target}
			if first {
				// The bare host goes to the service's first HTTP port.
				domains = append(domains, svc.host)
				first = false
			}
			vs.add(virtualHost(target, domains, ClusterName(p.Port, svc.host)), r)
		}
	}
	if s.Mode != ModeEgress {
		return
	}
	for _, e := range in.Policies.externalPorts() {
		if e.proto.IsHTTP() && e.entry.Spec.Resolution != v1alpha1.ResolutionNone {
			vs.add(externalVirtualHost(in, e, r), r)
		}
	}
}

// unknownHosts is the catch-all virtual host: PassthroughCluster
// (ALLOW_ANY), or BlackHoleCluster under REGISTRY_ONLY.
func unknownHosts(registryOnly bool) *route.VirtualHost {
	if registryOnly {
		return virtualHost("block_all", []string{"*"}, BlackHoleCluster)
	}
	return virtualHost("allow_any", []string{"*"}, PassthroughCluster)
}

// externalVirtualHost is a ServiceEntry HTTP host port's virtual host: the
// HTTP rules of mesh TrafficRoutes naming the host, or one route to its
// cluster.
func externalVirtualHost(in Input, e externalPort, r *Result) *route.VirtualHost {
	port := uint32(e.port.Number)
	name := Target(e.host, port)
	return virtualHostFor(in, in.Policies.externalRoutes[e.host], e.host, port, name, []string{e.host, name}, e.cluster(), r)
}

// vhostSet collects the virtual hosts of one route configuration: Envoy
// refuses a configuration in which two virtual hosts claim one domain, so
// a domain already claimed is dropped (warned), and a virtual host left
// without domains with it.
type vhostSet struct {
	name    string
	vhs     []*route.VirtualHost
	domains map[string]string // domain → virtual host that claimed it
}

func (vs *vhostSet) add(vh *route.VirtualHost, r *Result) {
	if vs.domains == nil {
		vs.domains = map[string]string{}
	}
	kept := vh.Domains[:0:0]
	for _, d := range vh.Domains {
		if owner, dup := vs.domains[d]; dup {
			if owner != vh.Name {
				r.warnf("route %s: domain %q of %s is already served by %s: left out", vs.name, d, vh.Name, owner)
			}
			continue
		}
		vs.domains[d] = vh.Name
		kept = append(kept, d)
	}
	if len(kept) == 0 {
		return
	}
	vh.Domains = kept
	vs.vhs = append(vs.vhs, vh)
}

// sidecarDomains are the names an application may use for a service, as
// Kubernetes DNS search paths allow them; the short name only resolves in
// the proxy's own namespace.
func sidecarDomains(svc service, port uint32, proxyNamespace string) []string {
	names := []string{svc.host, svc.key.Name + "." + svc.key.Namespace + ".svc", svc.key.Name + "." + svc.key.Namespace}
	if svc.key.Namespace == proxyNamespace {
		names = append(names, svc.key.Name)
	}
	out := make([]string, 0, 2*len(names))
	for _, n := range names {
		out = append(out, n, Target(n, port))
	}
	slices.Sort(out)
	return out
}

func virtualHost(name string, domains []string, cluster string) *route.VirtualHost {
	return &route.VirtualHost{Name: name, Domains: domains, Routes: []*route.Route{catchAll(cluster)}}
}

func catchAll(cluster string) *route.Route {
	return &route.Route{
		Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
		Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: cluster}}},
	}
}

// meshVirtualHost is a service port's virtual host for sidecars and
// proxyless clients (see virtualHostFor).
func meshVirtualHost(in Input, svc service, port uint32, name string, domains []string, r *Result) *route.VirtualHost {
	return virtualHostFor(in, in.Policies.routesFor(svc.key), svc.host, port, name, domains, ClusterName(port, svc.host), r)
}

// virtualHostFor is a host port's virtual host: the HTTP rules of the
// TrafficRoutes given, in order (first match wins; a request no rule
// matches gets a 404, as with Istio's VirtualService), or one catch-all
// route to cluster when there are none.
func virtualHostFor(in Input, routes []*v1alpha1.TrafficRoute, host string, port uint32, name string, domains []string, cluster string, r *Result) *route.VirtualHost {
	vh := &route.VirtualHost{Name: name, Domains: domains}
	for _, tr := range routes {
		for i := range tr.Spec.HTTP {
			vh.Routes = append(vh.Routes, httpRoutes(in, tr, i, host, port, r)...)
		}
	}
	if len(vh.Routes) == 0 {
		vh.Routes = []*route.Route{catchAll(cluster)}
	}
	return vh
}

// weightedDestinations resolves a rule's destinations to weighted
// clusters, leaving out (warned) those that are no mesh service port or
// ServiceEntry host port, and those of weight zero.
func weightedDestinations(in Input, ns string, dests []v1alpha1.RouteDestination, port uint32, where string, r *Result) []*route.WeightedCluster_ClusterWeight {
	var weighted []*route.WeightedCluster_ClusterWeight
	for j, d := range dests {
		cl, ok := destinationCluster(in, ns, d.Destination, port)
		if !ok {
			r.warnf("%s route[%d]: destination %q port %d is not a mesh service port or ServiceEntry host port: left out", where, j, d.Host, d.Port)
			continue
		}
		w := uint32(max(d.Weight, 0))
		if len(dests) == 1 {
			w = 1
		}
		if w > 0 {
			weighted = append(weighted, &route.WeightedCluster_ClusterWeight{Name: cl, Weight: wrapperspb.UInt32(w)})
		}
	}
	return weighted
}

// httpRoutes translates one HTTP rule: an Envoy route per match (or one
// matching every request), sharing one action.
func httpRoutes(in Input, tr *v1alpha1.TrafficRoute, i int, host string, port uint32, r *Result) []*route.Route {
	rule := tr.Spec.HTTP[i]
	where := "TrafficRoute " + tr.Namespace + "/" + tr.Name + " http[" + strconv.Itoa(i) + "]"
	action := &route.RouteAction{}
	weighted := weightedDestinations(in, tr.Namespace, rule.Route, port, where, r)
	switch len(weighted) {
	case 0:
		r.warnf("%s: no destination left: the rule is left out of %s", where, host)
		return nil
	case 1:
		action.ClusterSpecifier = &route.RouteAction_Cluster{Cluster: weighted[0].Name}
	default:
		action.ClusterSpecifier = &route.RouteAction_WeightedClusters{WeightedClusters: &route.WeightedCluster{Clusters: weighted}}
	}
	if rule.Timeout != nil {
		action.Timeout = durationpb.New(rule.Timeout.Duration)
	}
	if rt := rule.Retries; rt != nil {
		rp := &route.RetryPolicy{NumRetries: wrapperspb.UInt32(uint32(max(rt.Attempts, 0)))}
		on := make([]string, len(rt.RetryOn))
		for k, c := range rt.RetryOn {
			on[k] = string(c)
		}
		if len(on) == 0 {
			on = []string{"connect-failure", "refused-stream", "unavailable", "cancelled", "reset"}
		}
		rp.RetryOn = strings.Join(on, ",")
		if rt.PerTryTimeout != nil {
			rp.PerTryTimeout = durationpb.New(rt.PerTryTimeout.Duration)
		}
		action.RetryPolicy = rp
	}
	if m := rule.Mirror; m != nil {
		if cl, ok := destinationCluster(in, tr.Namespace, m.Destination, port); ok {
			pct := 100.0
			if m.Percent != nil {
				pct = *m.Percent
			}
			action.RequestMirrorPolicies = []*route.RouteAction_RequestMirrorPolicy{{
				Cluster:         cl,
				RuntimeFraction: &core.RuntimeFractionalPercent{DefaultValue: fraction(pct)},
			}}
		} else {
			r.warnf("%s mirror: destination %q is not a mesh service port: left out", where, m.Host)
		}
	}
	var perFilter map[string]*anypb.Any
	if f := rule.Fault; f != nil {
		hf := &fault.HTTPFault{}
		if a := f.Abort; a != nil {
			hf.Abort = &fault.FaultAbort{ErrorType: &fault.FaultAbort_HttpStatus{HttpStatus: uint32(a.Status)}, Percentage: fraction(a.Percent)}
		}
		if d := f.Delay; d != nil {
			hf.Delay = &commonfault.FaultDelay{FaultDelaySecifier: &commonfault.FaultDelay_FixedDelay{FixedDelay: durationpb.New(d.Delay.Duration)}, Percentage: fraction(d.Percent)}
		}
		perFilter = map[string]*anypb.Any{faultFilter: mustAny(hf)}
	}
	matches := rule.Match
	if len(matches) == 0 {
		matches = []v1alpha1.HTTPMatch{{}}
	}
	out := make([]*route.Route, 0, len(matches))
	for _, m := range matches {
		out = append(out, &route.Route{
			Name:                 rule.Name,
			Match:                routeMatch(m),
			Action:               &route.Route_Route{Route: action},
			TypedPerFilterConfig: perFilter,
		})
	}
	return out
}

// destinationCluster names the cluster of a route destination, resolving
// its host in the route's namespace and its port: the one given, the
// service's only port, or the port the request came in on.
func destinationCluster(in Input, ns string, d v1alpha1.Destination, inPort uint32) (string, bool) {
	if in.Policies.isExternal(d.Host) {
		e, ok := in.Policies.externalPort(d.Host, uint32(d.Port))
		if !ok && d.Port == 0 {
			e, ok = in.Policies.externalPort(d.Host, inPort)
		}
		return e.cluster(), ok
	}
	k, ok := serviceKey(d.Host, ns)
	if !ok {
		return "", false
	}
	def, ok := in.View.Service(k)
	if !ok {
		return "", false
	}
	port := uint32(d.Port)
	switch {
	case port != 0:
	case len(def.Ports) == 1:
		port = def.Ports[0].Port
	default:
		port = inPort // gateways pass 0: a multi-port destination needs its port
	}
	if _, ok := def.Port(port); !ok {
		return "", false
	}
	return SubsetClusterName(port, variant{subset: d.Subset, cluster: d.Cluster}.name(), Host(k, in.domain())), true
}

func routeMatch(m v1alpha1.HTTPMatch) *route.RouteMatch {
	rm := &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}}
	if p := m.Path; p != nil {
		switch {
		case p.Exact != "":
			rm.PathSpecifier = &route.RouteMatch_Path{Path: p.Exact}
		case p.Prefix != "":
			rm.PathSpecifier = &route.RouteMatch_Prefix{Prefix: p.Prefix}
		case p.Regex != "":
			rm.PathSpecifier = &route.RouteMatch_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: p.Regex}}
		}
	}
	if m.Method != "" {
		rm.Headers = append(rm.Headers, headerMatcher(":method", v1alpha1.StringMatch{Exact: m.Method}))
	}
	for _, h := range m.Headers {
		rm.Headers = append(rm.Headers, headerMatcher(strings.ToLower(h.Name), h.StringMatch))
	}
	return rm
}

func headerMatcher(name string, m v1alpha1.StringMatch) *route.HeaderMatcher {
	sm := &matcher.StringMatcher{}
	switch {
	case m.Exact != "":
		sm.MatchPattern = &matcher.StringMatcher_Exact{Exact: m.Exact}
	case m.Prefix != "":
		sm.MatchPattern = &matcher.StringMatcher_Prefix{Prefix: m.Prefix}
	default:
		sm.MatchPattern = &matcher.StringMatcher_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: m.Regex}}
	}
	return &route.HeaderMatcher{Name: name, HeaderMatchSpecifier: &route.HeaderMatcher_StringMatch{StringMatch: sm}}
}

// fraction renders a percentage (0-100, fractions allowed) exactly enough:
// in millionths.
func fraction(percent float64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(percent*10_000 + 0.5), Denominator: typev3.FractionalPercent_MILLION}
}
