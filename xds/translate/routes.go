package translate

import (
	"slices"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

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
					VirtualHosts: []*route.VirtualHost{virtualHost(target, domains, ClusterName(p.Port, svc.host))},
				})
			}
		}
	case ModeSidecar:
		byPort := map[uint32][]*route.VirtualHost{}
		for _, svc := range services(in) {
			for _, p := range svc.def.Ports {
				if p.Protocol.IsHTTP() {
					byPort[p.Port] = append(byPort[p.Port], virtualHost(Target(svc.host, p.Port), sidecarDomains(svc, p.Port, s.Namespace), ClusterName(p.Port, svc.host)))
				}
			}
		}
		for port, vhs := range byPort {
			name := OutboundRouteName(port)
			// Hosts outside the mesh pass through, as Istio's ALLOW_ANY.
			vhs = append(vhs, virtualHost("allow_any", []string{"*"}, PassthroughCluster))
			r.add(name, &route.RouteConfiguration{Name: name, VirtualHosts: vhs})
		}
	case ModeIngress, ModeEgress:
		name := GatewayName(s.Mode, s.Port)
		rc := &route.RouteConfiguration{Name: name}
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
				rc.VirtualHosts = append(rc.VirtualHosts, virtualHost(target, domains, ClusterName(p.Port, svc.host)))
			}
		}
		r.add(name, rc)
	}
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
	return &route.VirtualHost{
		Name:    name,
		Domains: domains,
		Routes: []*route.Route{{
			Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
			Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: cluster}}},
		}},
	}
}
