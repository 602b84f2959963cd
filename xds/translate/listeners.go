package translate

import (
	"fmt"
	"slices"
	"strings"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	fault "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/registry"
)

func buildListeners(in Input, s Scope, r *Result) {
	switch s.Mode {
	case ModeProxyless:
		for _, svc := range services(in) {
			for _, p := range svc.def.Ports {
				target := Target(svc.host, p.Port)
				r.add(target, apiListener(target, target))
				if len(svc.def.Ports) == 1 {
					// xds:///HOST works for single-port services.
					r.add(svc.host, apiListener(svc.host, target))
				}
			}
		}
	case ModeSidecar:
		sidecarListeners(in, s, r)
	case ModeIngress, ModeEgress, ModeEastWest:
		if gws := in.Policies.gatewaysFor(s); len(gws) > 0 {
			gatewayListeners(in, s, gws, r)
			return
		}
		name := GatewayName(s.Mode, s.Port)
		if s.Mode == ModeEastWest {
			r.add(name, eastWestListener(in, name, s.Port))
			return
		}
		r.add(name, &listener.Listener{
			Name:         name,
			Address:      socketAddress("0.0.0.0", s.Port),
			FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{httpFilter(name, name)}}},
		})
	}
}

// eastWestListener routes by SNI without terminating TLS: a chain per
// service port matching outbound_.PORT_._.HOST, to the port's cluster,
// whose load assignment (the east-west scope) holds only this cluster's
// own endpoints. The session's mTLS is between the client and the
// endpoint's sidecar.
func eastWestListener(in Input, name string, port uint32) *listener.Listener {
	l := &listener.Listener{
		Name:            name,
		Address:         socketAddress("0.0.0.0", port),
		ListenerFilters: []*listener.ListenerFilter{tlsInspector()},
	}
	for _, svc := range services(in) {
		for _, p := range svc.def.Ports {
			cl := ClusterName(p.Port, svc.host)
			l.FilterChains = append(l.FilterChains, &listener.FilterChain{
				Name:             cl,
				FilterChainMatch: &listener.FilterChainMatch{ServerNames: []string{EastWestSNI(p.Port, svc.host)}},
				Filters:          []*listener.Filter{tcpFilter(cl)},
			})
		}
	}
	return l
}

// outboundTarget is a host one of a sidecar's outbound ports can reach:
// a mesh service port or a ServiceEntry host port.
type outboundTarget struct {
	host   string
	routes []*v1alpha1.TrafficRoute // mesh routes naming the host (TCP rules)
	ns     string                   // where short destination hosts resolve
}

// sidecarListeners builds the capture listeners (virtualOutbound on 15001,
// virtualInbound on 15006, both handing connections on by original
// destination) and one unbound outbound listener per port number of the
// mesh services and ServiceEntry hosts. The registry has no virtual IPs,
// so an outbound port is shared by every host on it: HTTP hosts are told
// apart by Host (route configuration PORT), TLS hosts by SNI; a plain-TCP
// port can only go to one host. Connections no host claims go to
// PassthroughCluster, or BlackHoleCluster under REGISTRY_ONLY.
func sidecarListeners(in Input, s Scope, r *Result) {
	unknown := PassthroughCluster
	if s.RegistryOnly {
		unknown = BlackHoleCluster
	}
	r.add(VirtualOutboundListener, &listener.Listener{
		Name:           VirtualOutboundListener,
		Address:        socketAddress("0.0.0.0", VirtualOutboundPort),
		UseOriginalDst: wrapperspb.Bool(true),
		FilterChains:   []*listener.FilterChain{{Name: unknown, Filters: []*listener.Filter{tcpFilter(unknown)}}},
	})
	r.add(VirtualInboundListener, inboundListener(in, s, r))

	type portUse struct {
		http bool
		tls  []outboundTarget
		tcp  []outboundTarget
	}
	uses := map[uint32]*portUse{}
	use := func(port uint32, proto registry.Protocol, t outboundTarget) {
		u := uses[port]
		if u == nil {
			u = &portUse{}
			uses[port] = u
		}
		switch {
		case proto.IsHTTP():
			u.http = true
		case proto == registry.ProtocolTLS:
			u.tls = append(u.tls, t)
		case proto == registry.ProtocolUDP:
			// Envoy's UDP proxying is a different listener kind; not served.
		default:
			u.tcp = append(u.tcp, t)
		}
	}
	for _, svc := range services(in) {
		for _, p := range svc.def.Ports {
			use(p.Port, p.Protocol, outboundTarget{host: svc.host, routes: in.Policies.routesFor(svc.key), ns: svc.key.Namespace})
		}
	}
	for _, e := range in.Policies.externalPorts() {
		use(uint32(e.port.Number), e.proto, outboundTarget{host: e.host, routes: in.Policies.externalRoutes[e.host], ns: e.entry.Namespace})
	}
	ports := make([]uint32, 0, len(uses))
	for p := range uses {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	for _, port := range ports {
		u := uses[port]
		name := OutboundListenerName(port)
		l := &listener.Listener{Name: name, Address: socketAddress("0.0.0.0", port), BindToPort: wrapperspb.Bool(false)}
		for _, t := range u.tls {
			l.FilterChains = append(l.FilterChains, &listener.FilterChain{
				Name:             ClusterName(port, t.host),
				FilterChainMatch: &listener.FilterChainMatch{ServerNames: []string{t.host}},
				Filters:          []*listener.Filter{tcpRoute(in, t, port, t.host, r)},
			})
		}
		if len(u.tls) > 0 {
			l.ListenerFilters = []*listener.ListenerFilter{tlsInspector()}
		}
		switch {
		case u.http:
			route := OutboundRouteName(port)
			l.DefaultFilterChain = &listener.FilterChain{Name: route, Filters: []*listener.Filter{httpFilter(name, route)}}
			for _, t := range u.tcp {
				r.warnf("%s: plain TCP port %d is shared with HTTP hosts and has no virtual IP to tell them apart: left out", t.host, port)
			}
		case len(u.tcp) > 0:
			l.DefaultFilterChain = &listener.FilterChain{Name: ClusterName(port, u.tcp[0].host), Filters: []*listener.Filter{tcpRoute(in, u.tcp[0], port, "", r)}}
			for _, t := range u.tcp[1:] {
				r.warnf("%s: plain TCP port %d is also used by %s and there is no virtual IP to tell them apart: left out", t.host, port, u.tcp[0].host)
			}
		default:
			// TLS to a server name no host claims.
			l.DefaultFilterChain = &listener.FilterChain{Name: unknown, Filters: []*listener.Filter{tcpFilter(unknown)}}
		}
		r.add(name, l)
	}
}

// tcpRoute forwards a host's connections on a port: by the first TCP rule
// of its mesh TrafficRoutes that matches (the port, and for TLS the server
// name), to its weighted destinations; else to the host's own cluster.
func tcpRoute(in Input, t outboundTarget, port uint32, sni string, r *Result) *listener.Filter {
	for _, tr := range t.routes {
		for i, rule := range tr.Spec.TCP {
			if !tcpMatches(rule.Match, port, sni) {
				continue
			}
			where := fmt.Sprintf("TrafficRoute %s/%s tcp[%d]", tr.Namespace, tr.Name, i)
			if w := weightedDestinations(in, tr.Namespace, rule.Route, port, where, r); len(w) > 0 {
				return tcpFilterWeighted(ClusterName(port, t.host), w)
			}
		}
	}
	return tcpFilter(ClusterName(port, t.host))
}

// tcpMatches reports whether a TCP rule's matches (any of them; none
// matches everything) hold for a connection to port with server name sni.
func tcpMatches(ms []v1alpha1.TCPMatch, port uint32, sni string) bool {
	if len(ms) == 0 {
		return true
	}
	return slices.ContainsFunc(ms, func(m v1alpha1.TCPMatch) bool {
		if m.Port != 0 && uint32(m.Port) != port {
			return false
		}
		return len(m.SNIHosts) == 0 || slices.ContainsFunc(m.SNIHosts, func(h string) bool { return hostMatches(h, sni) })
	})
}

// hostMatches reports whether a host pattern ("*", "*.example.com" or a
// name) matches a name.
func hostMatches(pattern, name string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*."):
		return strings.HasSuffix(name, pattern[1:])
	}
	return pattern == name
}

// apiListener is what a proxyless gRPC client asks for: an HTTP connection
// manager with no address, its routes over RDS, filters ending with the
// router.
func apiListener(name, route string) *listener.Listener {
	return &listener.Listener{
		Name:        name,
		ApiListener: &listener.ApiListener{ApiListener: mustAny(hcmConfig(name, route))},
	}
}

func hcmConfig(statPrefix, route string) *hcm.HttpConnectionManager {
	return &hcm.HttpConnectionManager{
		CodecType:  hcm.HttpConnectionManager_AUTO,
		StatPrefix: statPrefix,
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: route,
		}},
		HttpFilters: []*hcm.HttpFilter{{
			// Inert unless a route sets a fault (TypedPerFilterConfig).
			Name:       faultFilter,
			ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&fault.HTTPFault{})},
		}, {
			Name:       wellknown.Router,
			ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&router.Router{})},
		}},
	}
}

func httpFilter(statPrefix, route string) *listener.Filter {
	return &listener.Filter{
		Name:       wellknown.HTTPConnectionManager,
		ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(hcmConfig(statPrefix, route))},
	}
}

func tcpFilter(cluster string) *listener.Filter {
	return tcpProxy(&tcpproxy.TcpProxy{StatPrefix: cluster, ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: cluster}})
}

// tcpFilterWeighted splits connections across weighted clusters (one
// destination is a plain cluster).
func tcpFilterWeighted(statPrefix string, w []*route.WeightedCluster_ClusterWeight) *listener.Filter {
	if len(w) == 1 {
		return tcpProxy(&tcpproxy.TcpProxy{StatPrefix: statPrefix, ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: w[0].Name}})
	}
	wc := &tcpproxy.TcpProxy_WeightedCluster{}
	for _, c := range w {
		wc.Clusters = append(wc.Clusters, &tcpproxy.TcpProxy_WeightedCluster_ClusterWeight{Name: c.Name, Weight: c.Weight.GetValue()})
	}
	return tcpProxy(&tcpproxy.TcpProxy{StatPrefix: statPrefix, ClusterSpecifier: &tcpproxy.TcpProxy_WeightedClusters{WeightedClusters: wc}})
}

func tcpProxy(tp *tcpproxy.TcpProxy) *listener.Filter {
	return &listener.Filter{Name: wellknown.TCPProxy, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(tp)}}
}

func tlsInspector() *listener.ListenerFilter {
	return &listener.ListenerFilter{
		Name:       wellknown.TLSInspector,
		ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspector.TlsInspector{})},
	}
}

// restable re-marshals a typed config another package wrapped,
// deterministically.
func restable(a *anypb.Any) *anypb.Any {
	m, err := a.UnmarshalNew()
	if err != nil {
		return a
	}
	return mustAny(m)
}

// mustAny wraps a message the translation itself built; marshaling a
// well-formed Envoy message cannot fail.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	// Deterministic, so that equal resources hash to equal versions.
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic("translate: wrapping " + string(proto.MessageName(m)) + ": " + err.Error())
	}
	return a
}
