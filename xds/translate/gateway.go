package translate

import (
	"fmt"
	"slices"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/registry"
)

// This file translates Gateway objects: the listeners of the gateway
// proxies they select, and the routes bound to them by TrafficRoutes
// (spec.gateways naming the Gateway, in the route's namespace).

var gatewayTypes = map[Mode]v1alpha1.GatewayType{
	ModeIngress:  v1alpha1.GatewayIngress,
	ModeEgress:   v1alpha1.GatewayEgress,
	ModeEastWest: v1alpha1.GatewayEastWest,
}

// gatewaysFor returns the Gateways that configure a gateway proxy: of its
// mode's type, whose selector matches its labels — from any namespace, as
// Istio's — or, without a selector, every gateway proxy of that type in
// the Gateway's own namespace. In namespace/name order.
func (p *Policies) gatewaysFor(s Scope) []*v1alpha1.Gateway {
	typ, ok := gatewayTypes[s.Mode]
	if p == nil || !ok {
		return nil
	}
	lbls := labels.Set(splitLabels(s.Labels))
	var out []*v1alpha1.Gateway
	for _, g := range p.gateways {
		if g.Spec.Type != typ {
			continue
		}
		if len(g.Spec.Selector) == 0 {
			if g.Namespace == s.Namespace {
				out = append(out, g)
			}
		} else if labels.SelectorFromSet(g.Spec.Selector).Matches(lbls) {
			out = append(out, g)
		}
	}
	return out
}

// gatewayListener is one listener of one Gateway.
type gatewayListener struct {
	gw *v1alpha1.Gateway
	l  v1alpha1.Listener
}

func (gl gatewayListener) where() string {
	return fmt.Sprintf("Gateway %s/%s listener %s", gl.gw.Namespace, gl.gw.Name, gl.l.Name)
}

// httpish reports whether the listener serves HTTP (terminated TLS
// included), routed by the port's route configuration.
func (gl gatewayListener) httpish() bool {
	switch gl.l.Protocol {
	case v1alpha1.ListenerHTTP, v1alpha1.ListenerHTTP2, v1alpha1.ListenerGRPC, v1alpha1.ListenerHTTPS:
		return true
	}
	return false
}

// byPort groups the listeners of the Gateways by port; on a port that
// Gateways open with different protocols, the first (by Gateway
// namespace/name) wins and the others are warned about and left out.
func byPort(gws []*v1alpha1.Gateway, r *Result) ([]uint32, map[uint32][]gatewayListener) {
	out := map[uint32][]gatewayListener{}
	for _, g := range gws {
		for _, l := range g.Spec.Listeners {
			port := uint32(l.Port)
			if first := out[port]; len(first) > 0 && (first[0].httpish() != (gatewayListener{l: l}).httpish() || !first[0].httpish() && first[0].l.Protocol != l.Protocol) {
				r.warnf("%s: port %d is already opened with protocol %s by %s: left out", gatewayListener{g, l}.where(), port, first[0].l.Protocol, first[0].where())
				continue
			}
			out[port] = append(out[port], gatewayListener{g, l})
		}
	}
	ports := make([]uint32, 0, len(out))
	for p := range out {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	return ports, out
}

// gatewayListeners builds one listener per port the Gateways open, named
// MODE_PORT:
//   - HTTP, HTTP2, GRPC: an HTTP connection manager with the routes of
//     route configuration MODE_PORT;
//   - HTTPS: a chain per listener, matched by its hosts as server names,
//     terminating TLS with its credential over SDS (NAMESPACE/NAME; mutual
//     also verifies client certificates against NAME-cacert), then the
//     same routes;
//   - TLS passthrough: a chain per host, by server name, forwarded without
//     terminating TLS to the destination of the bound TCP rules, or to the
//     mesh service or ServiceEntry host of that name;
//   - TLS mesh (east-west): the SNI chains of every local service port;
//   - TCP: the destination of the first bound TCP rule for the port.
func gatewayListeners(in Input, s Scope, gws []*v1alpha1.Gateway, r *Result) {
	ports, listeners := byPort(gws, r)
	for _, port := range ports {
		gls := listeners[port]
		name := GatewayName(s.Mode, port)
		first := gls[0]
		switch {
		case first.l.Protocol == v1alpha1.ListenerTLS && first.l.TLS != nil && first.l.TLS.Mode == v1alpha1.ServerTLSMesh:
			r.add(name, eastWestListener(in, name, port))
			continue
		case first.l.Protocol == v1alpha1.ListenerTCP:
			l := &listener.Listener{Name: name, Address: socketAddress("0.0.0.0", port)}
			if f := gatewayTCP(in, first, port, "", r); f != nil {
				l.DefaultFilterChain = &listener.FilterChain{Name: name, Filters: []*listener.Filter{f}}
			}
			r.add(name, l)
			continue
		}
		l := &listener.Listener{Name: name, Address: socketAddress("0.0.0.0", port)}
		seen := map[string]string{} // server name → listener that claimed it
		claim := func(gl gatewayListener, names []string) []string {
			var kept []string
			for _, n := range names {
				if owner, dup := seen[n]; dup {
					r.warnf("%s: server name %q is already served by %s: left out", gl.where(), n, owner)
					continue
				}
				seen[n] = gl.where()
				kept = append(kept, n)
			}
			return kept
		}
		for _, gl := range gls {
			switch {
			case gl.l.Protocol == v1alpha1.ListenerHTTPS:
				sni := serverNames(gl.l.Hosts)
				kept := claim(gl, sniOrAny(sni))
				if len(kept) == 0 {
					continue
				}
				ts, err := downstreamTLS(gl)
				if err != nil {
					r.warnf("%s: %v: left out", gl.where(), err)
					continue
				}
				l.FilterChains = append(l.FilterChains, &listener.FilterChain{
					Name:             gl.gw.Namespace + "/" + gl.gw.Name + "/" + gl.l.Name,
					FilterChainMatch: chainMatch(kept),
					TransportSocket:  transportSocket(ts),
					Filters:          []*listener.Filter{httpFilter(name, name)},
				})
			case gl.httpish():
				if l.DefaultFilterChain == nil {
					l.DefaultFilterChain = &listener.FilterChain{Name: name, Filters: []*listener.Filter{httpFilter(name, name)}}
				}
			default: // TLS passthrough
				for _, h := range gl.l.Hosts {
					if len(claim(gl, []string{h})) == 0 {
						continue
					}
					if f := gatewayTCP(in, gl, port, h, r); f != nil {
						l.FilterChains = append(l.FilterChains, &listener.FilterChain{
							Name:             gl.gw.Namespace + "/" + gl.gw.Name + "/" + gl.l.Name + "/" + h,
							FilterChainMatch: chainMatch([]string{h}),
							Filters:          []*listener.Filter{f},
						})
					}
				}
			}
		}
		if len(l.FilterChains) > 0 {
			l.ListenerFilters = []*listener.ListenerFilter{tlsInspector()}
		}
		r.add(name, l)
	}
}

// serverNames are a listener's hosts as TLS server names; "*" matches any
// name, which Envoy expresses as no server_names at all.
func serverNames(hosts []string) []string {
	if slices.Contains(hosts, "*") {
		return nil
	}
	return hosts
}

// sniOrAny names the "any server name" claim as "*" for the duplicate
// check.
func sniOrAny(names []string) []string {
	if len(names) == 0 {
		return []string{"*"}
	}
	return names
}

func chainMatch(names []string) *listener.FilterChainMatch {
	if slices.Equal(names, []string{"*"}) {
		return &listener.FilterChainMatch{TransportProtocol: "tls"}
	}
	return &listener.FilterChainMatch{ServerNames: names}
}

// downstreamTLS terminates TLS for an HTTPS listener with the credential
// its Gateway names, fetched over SDS.
func downstreamTLS(gl gatewayListener) (*tlsv3.DownstreamTlsContext, error) {
	t := gl.l.TLS
	if t == nil || t.CredentialName == "" {
		return nil, fmt.Errorf("HTTPS without a credential")
	}
	ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsConfig(CredentialRef{Namespace: gl.gw.Namespace, Name: t.CredentialName}.SecretName())},
		TlsParams:                      &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
		AlpnProtocols:                  []string{"h2", "http/1.1"},
	}}
	if t.MinVersion == "1.3" {
		ctx.CommonTlsContext.TlsParams.TlsMinimumProtocolVersion = tlsv3.TlsParameters_TLSv1_3
	}
	if t.Mode == v1alpha1.ServerTLSMutual {
		ctx.RequireClientCertificate = wrapperspb.Bool(true)
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: sdsConfig(CredentialRef{Namespace: gl.gw.Namespace, Name: t.CredentialName, CA: true}.SecretName()),
		}
	}
	return ctx, nil
}

// boundRoutes are the TrafficRoutes bound to a Gateway.
func (p *Policies) boundRoutes(g *v1alpha1.Gateway) []*v1alpha1.TrafficRoute {
	if p == nil {
		return nil
	}
	return p.gatewayRoutes[g.Namespace+"/"+g.Name]
}

// gatewayTCP forwards a TCP listener, or one server name of a TLS
// passthrough listener: by the first matching TCP rule of the routes
// bound to the Gateway whose hosts cover the name, else to the mesh
// service or ServiceEntry host of that name; nil (warned) when nothing
// does.
func gatewayTCP(in Input, gl gatewayListener, port uint32, sni string, r *Result) *listener.Filter {
	for _, tr := range in.Policies.boundRoutes(gl.gw) {
		if sni != "" && !slices.ContainsFunc(tr.Spec.Hosts, func(h string) bool { return hostMatches(h, sni) || hostMatches(sni, h) }) {
			continue
		}
		for i, rule := range tr.Spec.TCP {
			if !tcpMatches(rule.Match, port, sni) {
				continue
			}
			where := fmt.Sprintf("TrafficRoute %s/%s tcp[%d]", tr.Namespace, tr.Name, i)
			if w := weightedDestinations(in, tr.Namespace, rule.Route, port, where, r); len(w) > 0 {
				return tcpFilterWeighted(GatewayName(Mode(gl.gw.Spec.Type), port), w)
			}
		}
	}
	if sni != "" {
		if cl, ok := destinationCluster(in, gl.gw.Namespace, v1alpha1.Destination{Host: sni}, port); ok && in.hostExists(gl.gw.Namespace, sni) {
			return tcpFilter(cl)
		}
	}
	what := "port " + fmt.Sprint(port)
	if sni != "" {
		what = "server name " + sni
	}
	r.warnf("%s: no TCP route and no mesh service or ServiceEntry host for %s: left out", gl.where(), what)
	return nil
}

// hostExists reports whether a host names a mesh service (resolved in
// namespace ns) or a ServiceEntry host.
func (in Input) hostExists(ns, host string) bool {
	if in.Policies.isExternal(host) {
		return true
	}
	k, ok := serviceKey(host, ns)
	if !ok {
		return false
	}
	_, ok = in.View.Service(k)
	return ok
}

// gatewayRoutes builds the route configuration MODE_PORT of each HTTP
// port the Gateways open. For each listener host: a virtual host per host
// of the TrafficRoutes bound to the Gateway that the listener host covers,
// with their HTTP rules; a host no bound route covers goes to the mesh
// service or ServiceEntry host of that name, and "*" to every one of them
// (as without Gateway objects). An egress gateway under REGISTRY_ONLY
// refuses every other host through BlackHoleCluster.
func gatewayRoutes(in Input, s Scope, gws []*v1alpha1.Gateway, r *Result) {
	ports, listeners := byPort(gws, r)
	for _, port := range ports {
		gls := listeners[port]
		if !gls[0].httpish() {
			continue
		}
		name := GatewayName(s.Mode, port)
		vs := &vhostSet{name: name}
		for _, gl := range gls {
			for _, h := range gl.l.Hosts {
				covered := false
				for _, tr := range in.Policies.boundRoutes(gl.gw) {
					for _, rh := range tr.Spec.Hosts {
						if !hostMatches(h, rh) {
							continue
						}
						covered = true
						vh := &route.VirtualHost{Name: rh, Domains: []string{rh, Target(rh, port)}}
						for i := range tr.Spec.HTTP {
							vh.Routes = append(vh.Routes, httpRoutes(in, tr, i, rh, 0, r)...)
						}
						if len(vh.Routes) > 0 {
							vs.add(vh, r)
						}
					}
				}
				switch {
				case covered:
				case h == "*":
					defaultGatewayHosts(in, s, vs, r)
				default:
					if cl, ok := gatewayHTTPDestination(in, gl.gw.Namespace, h); ok {
						vs.add(virtualHost(h, []string{h, Target(h, port)}, cl), r)
					} else {
						r.warnf("%s: host %s has no bound route and names no mesh service or ServiceEntry host with an HTTP port: requests get 404", gl.where(), h)
					}
				}
			}
		}
		if s.RegistryOnly {
			vs.add(unknownHosts(true), r)
		}
		r.add(name, &route.RouteConfiguration{Name: name, VirtualHosts: vs.vhs})
	}
}

// gatewayHTTPDestination is the cluster of the first HTTP port of the mesh
// service or ServiceEntry host a gateway host names.
func gatewayHTTPDestination(in Input, ns, host string) (string, bool) {
	for _, e := range in.Policies.externalPorts() {
		if e.host == host && e.proto.IsHTTP() {
			return e.cluster(), true
		}
	}
	k, ok := serviceKey(host, ns)
	if !ok {
		return "", false
	}
	def, ok := in.View.Service(k)
	if !ok {
		return "", false
	}
	i := slices.IndexFunc(def.Ports, func(p registry.ServicePort) bool { return p.Protocol.IsHTTP() })
	if i < 0 {
		return "", false
	}
	return ClusterName(def.Ports[i].Port, Host(k, in.domain())), true
}
