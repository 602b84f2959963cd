package xdsconfig

//lint:file-ignore SA1019 Envoy still accepts these deprecated fields, so the proxy decodes them too.

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	jwtauthn "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnet "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
)

// Listener is a compiled Listener.
type Listener struct {
	Name string
	// Addr is where the listener binds; zero for API listeners.
	Addr netip.AddrPort
	// API listeners serve proxyless gRPC clients; the proxy skips them.
	API bool
	// Bind is false for listeners that only receive connections handed
	// over by a use_original_dst listener.
	Bind bool
	// UseOriginalDst hands each connection to the listener bound to its
	// original destination, when there is one (Envoy's virtual listeners);
	// it implies restoring the original destination.
	UseOriginalDst bool
	// RestoreOriginalDst (the original_dst listener filter) reads the
	// original destination for filter-chain matching and ORIGINAL_DST
	// clusters, without handing the connection off.
	RestoreOriginalDst bool
	// TLSInspector reads SNI and ALPN from a ClientHello; HTTPInspector
	// tells HTTP/1.1 and HTTP/2 from other plaintext.
	TLSInspector, HTTPInspector bool
	// InspectTimeout bounds the listener filters (Envoy's
	// listener_filters_timeout, default 15s).
	InspectTimeout time.Duration
	Chains         []*FilterChain
	Default        *FilterChain
}

// References implements xdsclient.Resource.
func (l *Listener) References(fn func(typeURL, name string)) {
	for _, c := range l.allChains() {
		if c.HTTP != nil && c.HTTP.RDS != "" {
			fn(xdsclient.RouteType, c.HTTP.RDS)
		}
		if c.TLS != nil {
			c.TLS.references(fn)
		}
	}
}

func (l *Listener) allChains() []*FilterChain {
	if l.Default == nil {
		return l.Chains
	}
	return append(l.Chains[:len(l.Chains):len(l.Chains)], l.Default)
}

// FilterChain is one way to handle a connection.
type FilterChain struct {
	Name  string
	Match ChainMatch
	// TLS terminates TLS on the connection; nil for plaintext (and for
	// TLS passthrough).
	TLS *DownstreamTLS
	// Authz is the network RBAC filter, checked once per connection.
	Authz Authorizer
	// Exactly one of HTTP and TCP is set.
	HTTP *HTTPManager
	TCP  *TCPProxy
}

// ChainMatch is Envoy's FilterChainMatch.
type ChainMatch struct {
	DestPort          uint32
	DestPrefixes      []netip.Prefix
	SourcePrefixes    []netip.Prefix
	ServerNames       []string
	TransportProtocol string
	ALPN              []string
}

// Codec is the downstream HTTP codec.
type Codec uint8

// Codecs.
const (
	CodecAuto Codec = iota
	CodecHTTP1
	CodecHTTP2
)

// HTTPManager is a compiled http_connection_manager.
type HTTPManager struct {
	StatPrefix string
	// RDS names the route configuration; Routes is set instead when the
	// routes are inline.
	RDS     string
	Routes  *RouteConfig
	Codec   Codec
	Filters []HTTPFilter
	// MaxRequestHeadersBytes bounds the request headers (Envoy default
	// 60 KiB); MaxHeadersCount their number (default 100).
	MaxRequestHeadersBytes int
	MaxHeadersCount        int
	// RequestHeadersTimeout bounds reading a request's headers. Envoy's
	// default is none; meridian-proxy applies DefaultRequestHeadersTimeout
	// when unset, so slow clients cannot hold connections forever.
	RequestHeadersTimeout time.Duration
	// RequestTimeout bounds a whole request (0: none).
	RequestTimeout time.Duration
	// StreamIdleTimeout (default 5m) and IdleTimeout (connection, default 1h).
	StreamIdleTimeout, IdleTimeout time.Duration
	// MaxConcurrentStreams per HTTP/2 connection (default 1024).
	MaxConcurrentStreams uint32
	// Tracing is set when the manager asks for tracing.
	Tracing bool
	// UseRemoteAddress appends the peer address to X-Forwarded-For.
	UseRemoteAddress bool
	// ForwardClientCert adds the peer's identity as X-Forwarded-Client-Cert.
	ForwardClientCert bool
}

// Defaults of HTTPManager fields Envoy leaves open.
const (
	DefaultRequestHeadersTimeout = 10 * time.Second
	DefaultMaxConcurrentStreams  = 1024
)

// FilterKind identifies an HTTP filter.
type FilterKind uint8

// HTTP filters meridian-proxy runs.
const (
	FilterRouter FilterKind = iota
	FilterFault
	FilterRBAC
	FilterJWT
)

// HTTPFilter is one compiled HTTP filter.
type HTTPFilter struct {
	Name  string
	Kind  FilterKind
	Fault *Fault
	Authz Authorizer
	JWT   Authenticator
}

// TCPProxy is a compiled tcp_proxy.
type TCPProxy struct {
	StatPrefix string
	// Cluster, or Weighted when the connection is split.
	Cluster  string
	Weighted []WeightedCluster
	// IdleTimeout closes a connection without traffic (default 1h).
	IdleTimeout time.Duration
	// MaxConnectAttempts (default 1) tries other endpoints on connect
	// failure.
	MaxConnectAttempts int
}

func (d *Decoder) listener(l *listener.Listener) (*Listener, error) {
	out := &Listener{
		Name:           l.GetName(),
		Bind:           l.GetBindToPort() == nil || l.GetBindToPort().GetValue(),
		UseOriginalDst: l.GetUseOriginalDst().GetValue(),
		InspectTimeout: duration(l.GetListenerFiltersTimeout(), 15*time.Second),
	}
	if l.GetApiListener() != nil {
		out.API = true
		return out, nil
	}
	if l.GetInternalListener() != nil {
		return nil, errors.New("internal listeners are not supported")
	}
	if l.GetUdpListenerConfig() != nil {
		return nil, errors.New("udp listeners are not supported")
	}
	if l.GetFcdsConfig() != nil || l.GetFilterChainMatcher() != nil {
		return nil, errors.New("filter_chain_matcher and FCDS are not supported: use filter_chain_match")
	}
	addr, err := socketAddr(l.GetAddress())
	if err != nil {
		return nil, fieldErr("address", err)
	}
	out.Addr = addr
	for i, lf := range l.GetListenerFilters() {
		if lf.GetFilterDisabled() != nil {
			return nil, fieldErr(fmt.Sprintf("listener_filters[%d]", i), errors.New("filter_disabled is not supported"))
		}
		switch lf.GetName() {
		case wellknown.TLSInspector, "envoy.listener.tls_inspector":
			out.TLSInspector = true
		case wellknown.HTTPInspector, "envoy.listener.http_inspector":
			out.HTTPInspector = true
		case wellknown.OriginalDestination, "envoy.listener.original_dst":
			out.RestoreOriginalDst = true
		default:
			return nil, fieldErr(fmt.Sprintf("listener_filters[%d]", i), fmt.Errorf("unsupported listener filter %q", lf.GetName()))
		}
	}
	for i, fc := range l.GetFilterChains() {
		c, err := d.filterChain(fc)
		if err != nil {
			return nil, fieldErr(fmt.Sprintf("filter_chains[%d] %s", i, fc.GetName()), err)
		}
		out.Chains = append(out.Chains, c)
	}
	if fc := l.GetDefaultFilterChain(); fc != nil {
		if fc.GetFilterChainMatch() != nil {
			return nil, fieldErr("default_filter_chain", errors.New("must not have a filter_chain_match"))
		}
		c, err := d.filterChain(fc)
		if err != nil {
			return nil, fieldErr("default_filter_chain", err)
		}
		out.Default = c
	}
	if len(out.Chains) == 0 && out.Default == nil {
		return nil, errors.New("no filter chains")
	}
	if err := checkDuplicateMatches(out.Chains); err != nil {
		return nil, err
	}
	return out, nil
}

func (d *Decoder) filterChain(fc *listener.FilterChain) (*FilterChain, error) {
	out := &FilterChain{Name: fc.GetName()}
	if fc.GetUseProxyProto() != nil && fc.GetUseProxyProto().GetValue() {
		return nil, errors.New("use_proxy_proto is not supported")
	}
	if m := fc.GetFilterChainMatch(); m != nil {
		cm, err := chainMatch(m)
		if err != nil {
			return nil, fieldErr("filter_chain_match", err)
		}
		out.Match = cm
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		t, err := downstreamTLS(ts)
		if err != nil {
			return nil, fieldErr("transport_socket", err)
		}
		out.TLS = t
	}
	filters := fc.GetFilters()
	if len(filters) == 0 {
		return nil, errors.New("no network filters")
	}
	for i, f := range filters {
		last := i == len(filters)-1
		path := fmt.Sprintf("filters[%d] %s", i, f.GetName())
		switch f.GetName() {
		case wellknown.HTTPConnectionManager, "envoy.http_connection_manager":
			if !last {
				return nil, fieldErr(path, errors.New("a terminal filter must come last"))
			}
			var cfg hcm.HttpConnectionManager
			if err := unmarshalTyped(f.GetTypedConfig(), &cfg); err != nil {
				return nil, fieldErr(path, err)
			}
			h, err := d.httpManager(&cfg)
			if err != nil {
				return nil, fieldErr(path, err)
			}
			out.HTTP = h
		case wellknown.TCPProxy, "envoy.tcp_proxy":
			if !last {
				return nil, fieldErr(path, errors.New("a terminal filter must come last"))
			}
			var cfg tcpproxy.TcpProxy
			if err := unmarshalTyped(f.GetTypedConfig(), &cfg); err != nil {
				return nil, fieldErr(path, err)
			}
			t, err := tcpProxy(&cfg)
			if err != nil {
				return nil, fieldErr(path, err)
			}
			out.TCP = t
		case wellknown.RoleBasedAccessControl:
			var cfg rbacnet.RBAC
			if err := unmarshalTyped(f.GetTypedConfig(), &cfg); err != nil {
				return nil, fieldErr(path, err)
			}
			if d.opts.Authz == nil {
				return nil, fieldErr(path, errors.New("RBAC is configured but this proxy has no authorization evaluator"))
			}
			a, err := d.opts.Authz(cfg.GetRules(), cfg.GetShadowRules())
			if err != nil {
				return nil, fieldErr(path, err)
			}
			out.Authz = a
		default:
			return nil, fieldErr(path, fmt.Errorf("unsupported network filter %q", f.GetName()))
		}
	}
	if out.HTTP == nil && out.TCP == nil {
		return nil, errors.New("the chain ends without http_connection_manager or tcp_proxy")
	}
	return out, nil
}

func chainMatch(m *listener.FilterChainMatch) (ChainMatch, error) {
	out := ChainMatch{
		DestPort:          m.GetDestinationPort().GetValue(),
		TransportProtocol: m.GetTransportProtocol(),
		ALPN:              m.GetApplicationProtocols(),
	}
	if len(m.GetSourcePorts()) > 0 || m.GetSourceType() != listener.FilterChainMatch_ANY || len(m.GetDirectSourcePrefixRanges()) > 0 {
		return out, errors.New("source_type, source_ports and direct_source_prefix_ranges are not supported")
	}
	switch out.TransportProtocol {
	case "", "tls", "raw_buffer":
	default:
		return out, fmt.Errorf("transport_protocol %q: want tls or raw_buffer", out.TransportProtocol)
	}
	var err error
	if out.DestPrefixes, err = prefixes(m.GetPrefixRanges()); err != nil {
		return out, fieldErr("prefix_ranges", err)
	}
	if out.SourcePrefixes, err = prefixes(m.GetSourcePrefixRanges()); err != nil {
		return out, fieldErr("source_prefix_ranges", err)
	}
	for _, n := range m.GetServerNames() {
		n = strings.ToLower(n)
		if n == "" || strings.Contains(n[1:], "*") || (strings.HasPrefix(n, "*") && !strings.HasPrefix(n, "*.")) {
			return out, fmt.Errorf("server_names: %q is not a name or a *.suffix wildcard", n)
		}
		out.ServerNames = append(out.ServerNames, n)
	}
	return out, nil
}

func prefixes(rs []*core.CidrRange) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, r := range rs {
		a, err := netip.ParseAddr(r.GetAddressPrefix())
		if err != nil {
			return nil, err
		}
		bits := int(r.GetPrefixLen().GetValue())
		if r.GetPrefixLen() == nil {
			bits = a.BitLen()
		}
		p, err := a.Prefix(bits)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// checkDuplicateMatches refuses two chains with the same match, as Envoy
// does: which one applies would be arbitrary.
func checkDuplicateMatches(chains []*FilterChain) error {
	seen := map[string]string{}
	for _, c := range chains {
		k := fmt.Sprintf("%v", c.Match)
		if other, dup := seen[k]; dup {
			return fmt.Errorf("filter chains %q and %q have the same filter_chain_match", other, c.Name)
		}
		seen[k] = c.Name
	}
	return nil
}

func socketAddr(a *core.Address) (netip.AddrPort, error) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return netip.AddrPort{}, errors.New("only socket addresses are supported")
	}
	if sa.GetProtocol() != core.SocketAddress_TCP {
		return netip.AddrPort{}, errors.New("only TCP is supported")
	}
	ip, err := netip.ParseAddr(sa.GetAddress())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q is not an IP", sa.GetAddress())
	}
	if sa.GetNamedPort() != "" {
		return netip.AddrPort{}, errors.New("named ports are not supported")
	}
	return netip.AddrPortFrom(ip, uint16(sa.GetPortValue())), nil
}

func (d *Decoder) httpManager(c *hcm.HttpConnectionManager) (*HTTPManager, error) {
	h := &HTTPManager{
		StatPrefix:             c.GetStatPrefix(),
		MaxRequestHeadersBytes: 60 << 10,
		MaxHeadersCount:        100,
		RequestHeadersTimeout:  duration(c.GetRequestHeadersTimeout(), DefaultRequestHeadersTimeout),
		RequestTimeout:         duration(c.GetRequestTimeout(), 0),
		StreamIdleTimeout:      duration(c.GetStreamIdleTimeout(), 5*time.Minute),
		IdleTimeout:            duration(c.GetCommonHttpProtocolOptions().GetIdleTimeout(), time.Hour),
		MaxConcurrentStreams:   DefaultMaxConcurrentStreams,
		Tracing:                c.GetTracing() != nil,
		UseRemoteAddress:       c.GetUseRemoteAddress().GetValue(),
		ForwardClientCert:      c.GetForwardClientCertDetails() != hcm.HttpConnectionManager_SANITIZE,
	}
	if h.RequestHeadersTimeout == 0 {
		h.RequestHeadersTimeout = DefaultRequestHeadersTimeout
	}
	if kb := c.GetMaxRequestHeadersKb(); kb != nil {
		h.MaxRequestHeadersBytes = int(kb.GetValue()) << 10
	}
	if n := c.GetCommonHttpProtocolOptions().GetMaxHeadersCount(); n != nil {
		h.MaxHeadersCount = int(n.GetValue())
	}
	if n := c.GetHttp2ProtocolOptions().GetMaxConcurrentStreams(); n != nil {
		h.MaxConcurrentStreams = n.GetValue()
	}
	switch c.GetCodecType() {
	case hcm.HttpConnectionManager_AUTO:
	case hcm.HttpConnectionManager_HTTP1:
		h.Codec = CodecHTTP1
	case hcm.HttpConnectionManager_HTTP2:
		h.Codec = CodecHTTP2
	default:
		return nil, fmt.Errorf("codec_type %s is not supported", c.GetCodecType())
	}
	switch rs := c.GetRouteSpecifier().(type) {
	case *hcm.HttpConnectionManager_Rds:
		if rs.Rds.GetRouteConfigName() == "" {
			return nil, errors.New("rds.route_config_name is empty")
		}
		if src := rs.Rds.GetConfigSource(); src != nil && src.GetAds() == nil {
			return nil, errors.New("rds.config_source must be ads: meridian-proxy keeps one stream")
		}
		h.RDS = rs.Rds.GetRouteConfigName()
	case *hcm.HttpConnectionManager_RouteConfig:
		rc, err := d.routeConfig(rs.RouteConfig)
		if err != nil {
			return nil, fieldErr("route_config", err)
		}
		h.Routes = rc
	default:
		return nil, errors.New("scoped routes are not supported")
	}
	filters := c.GetHttpFilters()
	for i, f := range filters {
		path := fmt.Sprintf("http_filters[%d] %s", i, f.GetName())
		hf, skip, err := d.httpFilter(f)
		if err != nil {
			return nil, fieldErr(path, err)
		}
		if skip {
			continue
		}
		if hf.Kind == FilterRouter && i != len(filters)-1 {
			return nil, fieldErr(path, errors.New("the router must be the last HTTP filter"))
		}
		h.Filters = append(h.Filters, hf)
	}
	if len(h.Filters) == 0 || h.Filters[len(h.Filters)-1].Kind != FilterRouter {
		return nil, errors.New("http_filters must end with the router")
	}
	return h, nil
}

// httpFilter compiles one HTTP filter; skip is set for optional filters
// the proxy does not know (Envoy's is_optional).
func (d *Decoder) httpFilter(f *hcm.HttpFilter) (HTTPFilter, bool, error) {
	out := HTTPFilter{Name: f.GetName()}
	if f.GetConfigDiscovery() != nil {
		return out, false, errors.New("config_discovery (ECDS) is not supported")
	}
	tc := f.GetTypedConfig()
	typeName := ""
	if tc != nil {
		typeName = string(tc.MessageName())
	}
	is := func(name, msg string) bool { return f.GetName() == name || typeName == msg }
	switch {
	case is(wellknown.Router, "envoy.extensions.filters.http.router.v3.Router"):
		if tc != nil {
			if err := unmarshalTyped(tc, &router.Router{}); err != nil {
				return out, false, err
			}
		}
		out.Kind = FilterRouter
	case is(wellknown.Fault, "envoy.extensions.filters.http.fault.v3.HTTPFault"):
		var cfg faultv3.HTTPFault
		if err := unmarshalTyped(orEmpty(tc, &cfg), &cfg); err != nil {
			return out, false, err
		}
		ft, err := fault(&cfg)
		if err != nil {
			return out, false, err
		}
		out.Kind, out.Fault = FilterFault, ft
	case is(wellknown.HTTPRoleBasedAccessControl, "envoy.extensions.filters.http.rbac.v3.RBAC"):
		var cfg rbachttp.RBAC
		if err := unmarshalTyped(tc, &cfg); err != nil {
			return out, false, err
		}
		if d.opts.Authz == nil {
			return out, false, errors.New("RBAC is configured but this proxy has no authorization evaluator")
		}
		a, err := d.opts.Authz(cfg.GetRules(), cfg.GetShadowRules())
		if err != nil {
			return out, false, err
		}
		out.Kind, out.Authz = FilterRBAC, a
	case is("envoy.filters.http.jwt_authn", "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"):
		var cfg jwtauthn.JwtAuthentication
		if err := unmarshalTyped(tc, &cfg); err != nil {
			return out, false, err
		}
		if d.opts.JWT == nil {
			return out, false, errors.New("jwt_authn is configured but this proxy has no JWT evaluator")
		}
		a, err := d.opts.JWT(&cfg)
		if err != nil {
			return out, false, err
		}
		out.Kind, out.JWT = FilterJWT, a
	case f.GetIsOptional():
		return out, true, nil
	default:
		return out, false, fmt.Errorf("unsupported HTTP filter (type %q); mark it is_optional to let proxies without it go on", typeName)
	}
	if f.GetDisabled() {
		// A filter disabled on the manager is enabled per route; only
		// the fault filter is configured per route here.
		if out.Kind != FilterFault {
			return out, false, errors.New("disabled filters are only supported for the fault filter")
		}
		out.Fault = &Fault{disabled: true}
	}
	return out, false, nil
}

// orEmpty lets a filter with no typed_config decode as its empty message.
func orEmpty(a *anypb.Any, m proto.Message) *anypb.Any {
	if a != nil {
		return a
	}
	e, _ := anypb.New(m)
	return e
}

func tcpProxy(c *tcpproxy.TcpProxy) (*TCPProxy, error) {
	t := &TCPProxy{
		StatPrefix:         c.GetStatPrefix(),
		IdleTimeout:        duration(c.GetIdleTimeout(), time.Hour),
		MaxConnectAttempts: 1,
	}
	if n := c.GetMaxConnectAttempts(); n != nil {
		t.MaxConnectAttempts = int(min(n.GetValue(), 10))
	}
	if c.GetTunnelingConfig() != nil || c.GetOnDemand() != nil {
		return nil, errors.New("tunneling_config and on_demand are not supported")
	}
	switch cs := c.GetClusterSpecifier().(type) {
	case *tcpproxy.TcpProxy_Cluster:
		t.Cluster = cs.Cluster
	case *tcpproxy.TcpProxy_WeightedClusters:
		for _, wc := range cs.WeightedClusters.GetClusters() {
			if wc.GetWeight() > 0 {
				t.Weighted = append(t.Weighted, WeightedCluster{Name: wc.GetName(), Weight: wc.GetWeight()})
			}
		}
		if len(t.Weighted) == 0 {
			return nil, errors.New("weighted_clusters: every weight is zero")
		}
	default:
		return nil, errors.New("no cluster")
	}
	return t, nil
}
