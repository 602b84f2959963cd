// Package proposal is meridian-proxy's PROPOSAL to the owner of
// xds/translate: what the translation does not produce yet and the proxy
// needs, written as a function of translate's own output so the change is
// easy to read and to move. meridian-proxy's tests serve its output from a
// real xDS server (go-control-plane's); testdata/proposal/*.json in package
// sidecar holds golden examples. Nothing in the product imports it.
//
// What it adds to a sidecar's resources (Istio's shape, built with
// package trust's own functions):
//
//  1. mTLS. Every outbound EDS cluster gets trust/sds.UpstreamTLS: the
//     proxy's SVID, the ROOTCA bundle, exact peer IDs (the service
//     accounts of the service's endpoints) and SNI outbound_.PORT_._.HOST
//     (translate.EastWestSNI), so that an east-west gateway can route the
//     session by SNI without terminating it. The inbound listener's chain
//     for each workload port becomes trust/mtls.InboundChains(mode, self):
//     an mTLS chain (and under PERMISSIVE a raw_buffer one), with a
//     tls_inspector; HTTP ports get an HTTP connection manager (so RBAC,
//     JWT and response codes apply at the destination) instead of
//     tcp_proxy. The SVID and ROOTCA secrets come from trust/sds.
//  2. REGISTRY_ONLY. The sidecar's allow_any virtual hosts and the
//     virtualOutbound default chain go to BlackHoleCluster instead of
//     PassthroughCluster.
//  3. ServiceEntries (AddServiceEntries): a cluster per host and port
//     (STRICT_DNS for names), a virtual host in the sidecar's route for the
//     port and in gateways' routes; an egress gateway under REGISTRY_ONLY
//     refuses every other host through BlackHoleCluster.
//  4. Authorization. The RBAC and JWT filters of trust/authz.HTTPFilters
//     are placed before the router of inbound HTTP chains.
package proposal

import (
	"fmt"
	"net"
	"slices"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspector "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/mtls"
	"github.com/meridian-mesh/meridian/trust/sds"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// MTLS is a proxy's identity and the mesh's roots.
type MTLS struct {
	SVID    *x509svid.SVID
	Bundles []*spiffebundle.Bundle
	// Mode of the workload's inbound ports; default STRICT.
	Mode v1alpha1.MTLSMode
}

// Options say what to add.
type Options struct {
	MTLS *MTLS
	// InboundHTTP lists the workload ports that carry HTTP.
	InboundHTTP []uint32
	// InboundFilters are HTTP filters (RBAC, JWT) for inbound HTTP chains,
	// before the router.
	InboundFilters []*hcm.HttpFilter
	RegistryOnly   bool
}

// Resources returns what a proxy gets: translate's output for every type,
// with the additions of the package doc.
func Resources(in translate.Input, p translate.Proxy, o Options) (map[resource.Type][]types.Resource, error) {
	out := map[resource.Type][]types.Resource{}
	for _, t := range translate.Types {
		res := translate.Build(in, p.Scope(t))
		for _, r := range res.Resources {
			m := proto.Clone(r.Message)
			if err := augment(in, p, o, m); err != nil {
				return nil, fmt.Errorf("proposal: %s: %w", r.Name, err)
			}
			out[t] = append(out[t], m.(types.Resource))
		}
	}
	if o.MTLS != nil {
		svid, err := sds.SVIDSecret(o.MTLS.SVID)
		if err != nil {
			return nil, err
		}
		bundle, err := sds.BundleSecret(o.MTLS.Bundles)
		if err != nil {
			return nil, err
		}
		out[resource.SecretType] = []types.Resource{svid, bundle}
	}
	return out, nil
}

func augment(in translate.Input, p translate.Proxy, o Options, m proto.Message) error {
	switch r := m.(type) {
	case *cluster.Cluster:
		if o.MTLS == nil || r.GetType() != cluster.Cluster_EDS {
			return nil
		}
		port, _, host, err := translate.ParseClusterName(r.GetName())
		if err != nil {
			return nil
		}
		ts, err := sds.UpstreamTLS(o.MTLS.SVID.ID, translate.EastWestSNI(port, host), peers(in, o.MTLS.SVID.ID.TrustDomain(), host)...)
		if err != nil {
			return err
		}
		r.TransportSocket = ts
	case *route.RouteConfiguration:
		if o.RegistryOnly {
			for _, vh := range r.GetVirtualHosts() {
				for _, rt := range vh.GetRoutes() {
					if a := rt.GetRoute(); a != nil && a.GetCluster() == translate.PassthroughCluster {
						a.ClusterSpecifier = &route.RouteAction_Cluster{Cluster: translate.BlackHoleCluster}
					}
				}
			}
		}
	case *listener.Listener:
		switch r.GetName() {
		case translate.VirtualOutboundListener:
			if o.RegistryOnly {
				for _, fc := range append(r.GetFilterChains(), r.GetDefaultFilterChain()) {
					retarget(fc, translate.PassthroughCluster, translate.BlackHoleCluster)
				}
			}
		case translate.VirtualInboundListener:
			return inbound(r, p, o)
		}
	}
	return nil
}

// peers are the SPIFFE IDs the endpoints of a service run as.
func peers(in translate.Input, td spiffeid.TrustDomain, host string) []spiffeid.ID {
	domain := in.Domain
	if domain == "" {
		domain = translate.DefaultDomain
	}
	var out []spiffeid.ID
	for _, k := range in.View.ServiceKeys() {
		if translate.Host(k, domain) != host {
			continue
		}
		for _, e := range in.View.Endpoints(k) {
			if e.ServiceAccount == "" {
				continue
			}
			id, err := trust.WorkloadID(td, e.Service.Namespace, e.ServiceAccount)
			if err == nil && !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	return out
}

func retarget(fc *listener.FilterChain, from, to string) {
	for _, f := range fc.GetFilters() {
		if f.GetName() != wellknown.TCPProxy {
			continue
		}
		var tp tcpproxy.TcpProxy
		if f.GetTypedConfig().UnmarshalTo(&tp) != nil || tp.GetCluster() != from {
			continue
		}
		tp.ClusterSpecifier = &tcpproxy.TcpProxy_Cluster{Cluster: to}
		f.ConfigType = &listener.Filter_TypedConfig{TypedConfig: mustAny(&tp)}
	}
}

// inbound rewrites the inbound listener's per-port chains (translate
// names them inbound|PORT||) into the mode's mTLS chains.
func inbound(l *listener.Listener, p translate.Proxy, o Options) error {
	if o.MTLS == nil && len(o.InboundHTTP) == 0 {
		return nil
	}
	var chains []*listener.FilterChain
	for _, fc := range l.GetFilterChains() {
		port := fc.GetFilterChainMatch().GetDestinationPort().GetValue()
		cl := translate.InboundClusterName(port)
		filters := []*listener.Filter{tcpFilter(cl)}
		if slices.Contains(o.InboundHTTP, port) {
			filters = []*listener.Filter{httpFilter(cl, o.InboundFilters)}
		}
		if o.MTLS == nil {
			chains = append(chains, &listener.FilterChain{Name: cl, FilterChainMatch: fc.GetFilterChainMatch(), Filters: filters})
			continue
		}
		mode := o.MTLS.Mode
		if mode == "" {
			mode = mtls.DefaultMode
		}
		ics, err := mtls.InboundChains(mode, o.MTLS.SVID.ID)
		if err != nil {
			return err
		}
		for _, ic := range ics {
			m := proto.Clone(ic.Match).(*listener.FilterChainMatch)
			m.DestinationPort = wrapperspb.UInt32(port)
			chains = append(chains, &listener.FilterChain{
				Name: cl + "|" + m.GetTransportProtocol(), FilterChainMatch: m, TransportSocket: ic.TransportSocket, Filters: filters,
			})
		}
	}
	if o.MTLS != nil && l.GetDefaultFilterChain() != nil {
		// Traffic to undeclared ports passes through, under the same mode
		// as the rest (Istio's inbound passthrough chains): STRICT takes
		// it only over mTLS.
		ts, err := sds.DownstreamTLS(o.MTLS.SVID.ID)
		if err != nil {
			return err
		}
		def := l.GetDefaultFilterChain()
		chains = append(chains, &listener.FilterChain{
			Name:             def.GetName() + "|tls",
			FilterChainMatch: &listener.FilterChainMatch{TransportProtocol: "tls"},
			TransportSocket:  ts,
			Filters:          def.GetFilters(),
		})
		if o.MTLS.Mode != v1alpha1.MTLSPermissive {
			l.DefaultFilterChain = nil
		}
	}
	l.FilterChains = chains
	if o.MTLS != nil {
		l.ListenerFilters = []*listener.ListenerFilter{{
			Name:       wellknown.TLSInspector,
			ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspector.TlsInspector{})},
		}}
	}
	return nil
}

func tcpFilter(cl string) *listener.Filter {
	return &listener.Filter{Name: wellknown.TCPProxy, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(&tcpproxy.TcpProxy{
		StatPrefix: cl, ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: cl},
	})}}
}

// httpFilter serves an inbound HTTP port: every request to the local
// application, no route timeout (the application decides), the given
// filters before the router.
func httpFilter(cl string, filters []*hcm.HttpFilter) *listener.Filter {
	hf := append(slices.Clone(filters), &hcm.HttpFilter{Name: wellknown.Router, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&router.Router{})}})
	m := &hcm.HttpConnectionManager{
		StatPrefix: cl,
		RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{
			Name: cl,
			VirtualHosts: []*route.VirtualHost{{Name: "inbound", Domains: []string{"*"}, Routes: []*route.Route{{
				Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
				Action: &route.Route_Route{Route: &route.RouteAction{
					ClusterSpecifier: &route.RouteAction_Cluster{Cluster: cl},
					Timeout:          durationpb.New(0),
				}},
			}}}},
		}},
		HttpFilters:              hf,
		ForwardClientCertDetails: hcm.HttpConnectionManager_APPEND_FORWARD,
	}
	return &listener.Filter{Name: wellknown.HTTPConnectionManager, ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(m)}}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// ServiceEntry is a host outside the mesh the proposal turns into a
// cluster and routes (translate does not read ServiceEntries yet): an HTTP
// port reached at Endpoint (a DNS name is a STRICT_DNS cluster, an IP a
// STATIC one).
type ServiceEntry struct {
	Host         string
	Port         uint32
	Endpoint     string
	EndpointPort uint32
}

// AddServiceEntries adds the entries' clusters and their virtual hosts
// to a proxy's route configurations: a sidecar's route for the port, a
// gateway's route. With registryOnly, a gateway's route refuses every
// other host through BlackHoleCluster (a sidecar's allow_any does so
// already under Options.RegistryOnly).
func AddServiceEntries(res map[resource.Type][]types.Resource, p translate.Proxy, entries []ServiceEntry, registryOnly bool) {
	for _, se := range entries {
		name := translate.ClusterName(se.Port, se.Host)
		typ := cluster.Cluster_STRICT_DNS
		if net.ParseIP(se.Endpoint) != nil {
			typ = cluster.Cluster_STATIC
		}
		res[resource.ClusterType] = append(res[resource.ClusterType], &cluster.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &cluster.Cluster_Type{Type: typ},
			ConnectTimeout:       durationpb.New(5 * time.Second),
			LoadAssignment: &endpoint.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpoint.LocalityLbEndpoints{{
				LbEndpoints: []*endpoint.LbEndpoint{{HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
					Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
						Address: se.Endpoint, PortSpecifier: &core.SocketAddress_PortValue{PortValue: se.EndpointPort}}}},
				}}}},
			}}},
		})
	}
	for _, r := range res[resource.RouteType] {
		rc := r.(*route.RouteConfiguration)
		gateway := p.Mode == translate.ModeIngress || p.Mode == translate.ModeEgress
		for _, se := range entries {
			if !gateway && rc.GetName() != translate.OutboundRouteName(se.Port) {
				continue
			}
			vh := &route.VirtualHost{Name: translate.Target(se.Host, se.Port), Domains: []string{se.Host, translate.Target(se.Host, se.Port)},
				Routes: []*route.Route{{Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
					Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: translate.ClusterName(se.Port, se.Host)}}}}}}
			rc.VirtualHosts = append([]*route.VirtualHost{vh}, rc.GetVirtualHosts()...)
		}
		if gateway && registryOnly {
			rc.VirtualHosts = append(rc.VirtualHosts, &route.VirtualHost{Name: "registry_only", Domains: []string{"*"},
				Routes: []*route.Route{{Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
					Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: translate.BlackHoleCluster}}}}}})
		}
	}
}

// HostnameGateways rewrites load-assignment endpoints at the given
// addresses ("IP:PORT") to DNS names: what translate should emit for a
// cluster whose east-west gateway is published as a hostname (an EKS load
// balancer), instead of leaving it out. meridian-proxy resolves and
// re-resolves such endpoints; for Envoy the translation would need a
// STRICT_DNS cluster per gateway instead.
func HostnameGateways(res map[resource.Type][]types.Resource, names map[string]string) {
	for _, r := range res[resource.EndpointType] {
		cla := r.(*endpoint.ClusterLoadAssignment)
		for _, le := range cla.GetEndpoints() {
			for _, lbe := range le.GetLbEndpoints() {
				sa := lbe.GetEndpoint().GetAddress().GetSocketAddress()
				if name, ok := names[net.JoinHostPort(sa.GetAddress(), fmt.Sprint(sa.GetPortValue()))]; ok {
					sa.Address = name
				}
			}
		}
	}
}
