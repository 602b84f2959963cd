package translate

import (
	"slices"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	fault "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

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
	case ModeIngress, ModeEgress:
		name := GatewayName(s.Mode, s.Port)
		r.add(name, &listener.Listener{
			Name:         name,
			Address:      socketAddress("0.0.0.0", s.Port),
			FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{httpFilter(name, name)}}},
		})
	case ModeEastWest:
		name := GatewayName(s.Mode, s.Port)
		l := &listener.Listener{
			Name:            name,
			Address:         socketAddress("0.0.0.0", s.Port),
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
		r.add(name, l)
	}
}

// sidecarListeners builds the capture listeners (virtualOutbound on 15001,
// virtualInbound on 15006, both handing connections on by original
// destination) and one unbound outbound listener per service port number.
// The registry has no virtual IPs, so an outbound port is shared by every
// service on it: HTTP services are told apart by Host (route configuration
// PORT), TLS services by SNI; a plain-TCP port can only go to one service.
func sidecarListeners(in Input, s Scope, r *Result) {
	r.add(VirtualOutboundListener, &listener.Listener{
		Name:           VirtualOutboundListener,
		Address:        socketAddress("0.0.0.0", VirtualOutboundPort),
		UseOriginalDst: wrapperspb.Bool(true),
		FilterChains:   []*listener.FilterChain{{Name: PassthroughCluster, Filters: []*listener.Filter{tcpFilter(PassthroughCluster)}}},
	})
	in2 := &listener.Listener{
		Name:           VirtualInboundListener,
		Address:        socketAddress("0.0.0.0", VirtualInboundPort),
		UseOriginalDst: wrapperspb.Bool(true),
		// Traffic to ports the workload did not declare passes through, as
		// Istio's does; authorization arrives with the trust work.
		DefaultFilterChain: &listener.FilterChain{Name: PassthroughCluster, Filters: []*listener.Filter{tcpFilter(PassthroughCluster)}},
	}
	for _, port := range splitPorts(s.Inbound) {
		cl := InboundClusterName(port)
		in2.FilterChains = append(in2.FilterChains, &listener.FilterChain{
			Name:             cl,
			FilterChainMatch: &listener.FilterChainMatch{DestinationPort: wrapperspb.UInt32(port)},
			Filters:          []*listener.Filter{tcpFilter(cl)},
		})
	}
	r.add(VirtualInboundListener, in2)

	type portUse struct {
		http bool
		tls  []service
		tcp  []service
	}
	uses := map[uint32]*portUse{}
	for _, svc := range services(in) {
		for _, p := range svc.def.Ports {
			u := uses[p.Port]
			if u == nil {
				u = &portUse{}
				uses[p.Port] = u
			}
			switch {
			case p.Protocol.IsHTTP():
				u.http = true
			case p.Protocol == registry.ProtocolTLS:
				u.tls = append(u.tls, svc)
			case p.Protocol == registry.ProtocolUDP:
				// Envoy's UDP proxying is a different listener kind; not served.
			default:
				u.tcp = append(u.tcp, svc)
			}
		}
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
		for _, svc := range u.tls {
			cl := ClusterName(port, svc.host)
			l.FilterChains = append(l.FilterChains, &listener.FilterChain{
				Name:             cl,
				FilterChainMatch: &listener.FilterChainMatch{ServerNames: []string{svc.host}},
				Filters:          []*listener.Filter{tcpFilter(cl)},
			})
		}
		if len(u.tls) > 0 {
			l.ListenerFilters = []*listener.ListenerFilter{tlsInspector()}
		}
		switch {
		case u.http:
			route := OutboundRouteName(port)
			l.DefaultFilterChain = &listener.FilterChain{Name: route, Filters: []*listener.Filter{httpFilter(name, route)}}
			for _, svc := range u.tcp {
				r.warnf("%s: plain TCP port %d is shared with HTTP services and has no virtual IP to tell them apart: left out", svc.host, port)
			}
		case len(u.tcp) > 0:
			cl := ClusterName(port, u.tcp[0].host)
			l.DefaultFilterChain = &listener.FilterChain{Name: cl, Filters: []*listener.Filter{tcpFilter(cl)}}
			for _, svc := range u.tcp[1:] {
				r.warnf("%s: plain TCP port %d is also used by %s and there is no virtual IP to tell them apart: left out", svc.host, port, u.tcp[0].host)
			}
		}
		r.add(name, l)
	}
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
	return &listener.Filter{
		Name: wellknown.TCPProxy,
		ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(&tcpproxy.TcpProxy{
			StatPrefix:       cluster,
			ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: cluster},
		})},
	}
}

func tlsInspector() *listener.ListenerFilter {
	return &listener.ListenerFilter{
		Name:       wellknown.TLSInspector,
		ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspector.TlsInspector{})},
	}
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
