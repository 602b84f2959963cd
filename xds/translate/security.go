package translate

import (
	"slices"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/authz"
	"github.com/meridian-mesh/meridian/trust/jwt"
	"github.com/meridian-mesh/meridian/trust/mtls"
	"github.com/meridian-mesh/meridian/trust/sds"
)

// This file is the security translation: mTLS on outbound clusters and
// inbound listeners (package trust's SDS transport sockets), authorization
// and end-user authentication filters on inbound HTTP ports, client TLS
// from DestinationPolicies, and the credentials Gateways and
// DestinationPolicies name.

// identity is the scope's attested SPIFFE ID; zero when none.
func (s Scope) identity() spiffeid.ID {
	id, err := spiffeid.FromString(s.Identity)
	if err != nil {
		return spiffeid.ID{}
	}
	return id
}

// tlsModeOf is the client TLS mode a DestinationPolicy sets; mesh services
// default to mesh mTLS, ServiceEntry hosts to none.
func tlsModeOf(dp *v1alpha1.DestinationPolicy, mesh bool) v1alpha1.TLSMode {
	if dp != nil && dp.Spec.TLS != nil {
		return dp.Spec.TLS.Mode
	}
	if mesh {
		return v1alpha1.TLSMesh
	}
	return v1alpha1.TLSDisable
}

// clientTLS is the transport socket of an outbound cluster. peers, set for
// mesh services, gives the SPIFFE IDs their endpoints run as.
//   - mesh: trust/sds.UpstreamTLS — the proxy's SVID, the ROOTCA bundle,
//     exactly those peers, and SNI outbound_.PORT_._.HOST so that another
//     network's east-west gateway can route the session without
//     terminating it. Only for a proxy with an attested identity: without
//     one it has no SVID to present, and connects in plaintext.
//   - disable: none.
//   - simple: TLS checking the server against the CA of credential
//     NAME-cacert (SDS), or the system's roots, and the subjectAltNames.
//   - mutual: simple plus the client certificate of credential NAME.
//
// East-west gateways pass TLS through and never originate it; grpc-go
// takes certificate providers from its bootstrap, not SDS, so proxyless
// clusters carry none either (warned when a policy asks).
func clientTLS(in Input, s Scope, name, host string, peers func() []spiffeid.ID, dp *v1alpha1.DestinationPolicy, r *Result) *core.TransportSocket {
	mode := tlsModeOf(dp, peers != nil)
	switch {
	case mode == v1alpha1.TLSDisable || s.Mode == ModeEastWest:
		return nil
	case s.Mode == ModeProxyless:
		if mode != v1alpha1.TLSMesh {
			r.warnf("%s: DestinationPolicy %s/%s: tls %s is not sent to proxyless clients (grpc-go takes TLS from certificate providers in its bootstrap)", name, dp.Namespace, dp.Name, mode)
		}
		return nil
	case mode == v1alpha1.TLSMesh:
		self := s.identity()
		if self.IsZero() {
			return nil
		}
		if peers == nil {
			r.warnf("%s: DestinationPolicy %s/%s: tls mesh needs SPIFFE identities, which hosts outside the mesh have none of: plaintext", name, dp.Namespace, dp.Name)
			return nil
		}
		port, _, _, _ := ParseClusterName(name)
		ts, err := sds.UpstreamTLS(self, EastWestSNI(port, host), peers()...)
		if err != nil {
			r.warnf("%s: mTLS: %v", name, err)
			return nil
		}
		return ts
	}
	t := dp.Spec.TLS
	ctx := &tlsv3.UpstreamTlsContext{Sni: cmpOr(t.SNI, strings.TrimPrefix(host, "*.")), CommonTlsContext: &tlsv3.CommonTlsContext{}}
	vc := &tlsv3.CertificateValidationContext{}
	for _, san := range t.SubjectAltNames {
		typ := tlsv3.SubjectAltNameMatcher_DNS
		if strings.Contains(san, "://") {
			typ = tlsv3.SubjectAltNameMatcher_URI
		}
		vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{
			SanType: typ, Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: san}},
		})
	}
	if t.CredentialName == "" {
		vc.SystemRootCerts = &tlsv3.CertificateValidationContext_SystemRootCerts{}
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
	} else {
		ca := CredentialRef{Namespace: dp.Namespace, Name: t.CredentialName, CA: true}
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         vc,
			ValidationContextSdsSecretConfig: sdsConfig(ca.SecretName()),
		}}
		if mode == v1alpha1.TLSMutual {
			cert := CredentialRef{Namespace: dp.Namespace, Name: t.CredentialName}
			ctx.CommonTlsContext.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{sdsConfig(cert.SecretName())}
		}
	}
	return transportSocket(ctx)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func sdsConfig(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsSource()}
}

func transportSocket(m proto.Message) *core.TransportSocket {
	return &core.TransportSocket{Name: sds.TransportSocketName, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(m)}}
}

// peersOf returns the SPIFFE IDs of the service accounts a service's
// endpoints run as, sorted; endpoints without a service account add none
// (and with none at all, any SVID of a trusted trust domain is accepted).
func peersOf(v *registry.View, k registry.ServiceKey, td spiffeid.TrustDomain) []spiffeid.ID {
	var out []spiffeid.ID
	for _, e := range v.Endpoints(k) {
		if e.ServiceAccount == "" {
			continue
		}
		if id, err := trust.WorkloadID(td, e.Service.Namespace, e.ServiceAccount); err == nil && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	slices.SortFunc(out, func(a, b spiffeid.ID) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// ServiceAccounts returns the service accounts a service's endpoints run
// as, sorted: what its clusters' peer checks depend on. The server
// rebuilds clusters when an endpoint change alters them.
func ServiceAccounts(v *registry.View, k registry.ServiceKey) []string {
	var out []string
	for _, e := range v.Endpoints(k) {
		if e.ServiceAccount != "" && !slices.Contains(out, e.ServiceAccount) {
			out = append(out, e.ServiceAccount)
		}
	}
	slices.Sort(out)
	return out
}

// workload is who a sidecar's policies are selected for.
func (s Scope) workload() authz.Workload {
	return authz.Workload{Namespace: s.Namespace, Labels: splitLabels(s.Labels)}
}

// inboundListener is a sidecar's virtualInbound listener: per workload
// port, the chains of its mTLS mode (trust/mtls.InboundChains under
// mtls.ModeFor: an mTLS chain, and under PERMISSIVE a plaintext one), each
// forwarding to the workload on loopback — through an HTTP connection
// manager for HTTP ports, with the workload's authorization and JWT
// filters (trust/authz.HTTPFilters) before the router, else tcp_proxy.
// Traffic to undeclared ports passes through under the workload's mode:
// STRICT takes it only over mTLS. Without an identity the chains are
// plaintext, as the workload has no SVID to present.
func inboundListener(in Input, s Scope, r *Result) *listener.Listener {
	l := &listener.Listener{
		Name:               VirtualInboundListener,
		Address:            socketAddress("0.0.0.0", VirtualInboundPort),
		UseOriginalDst:     wrapperspb.Bool(true),
		DefaultFilterChain: &listener.FilterChain{Name: PassthroughCluster, Filters: []*listener.Filter{tcpFilter(PassthroughCluster)}},
	}
	w := s.workload()
	var objs []v1alpha1.Object
	if in.Policies != nil {
		objs = in.Policies.security
	}
	ports := splitInbound(s.Inbound)
	var httpFilters []*hcm.HttpFilter
	if slices.ContainsFunc(ports, func(p inboundPort) bool { return p.proto.IsHTTP() }) {
		httpFilters = inboundHTTPFilters(objs, w, r)
	} else if len(ports) > 0 && appliesAuthz(objs, w) {
		r.warnf("workload %s %s: AuthorizationPolicies select it but none of its inbound ports is HTTP: they are enforced on HTTP ports only (declare a port as PORT/http)", w.Namespace, joinLabels(w.Labels))
	}
	self := s.identity()
	for _, p := range ports {
		cl := InboundClusterName(p.port)
		filters := []*listener.Filter{tcpFilter(cl)}
		if p.proto.IsHTTP() {
			filters = []*listener.Filter{inboundHTTP(cl, httpFilters)}
		}
		match := &listener.FilterChainMatch{DestinationPort: wrapperspb.UInt32(p.port)}
		if self.IsZero() {
			l.FilterChains = append(l.FilterChains, &listener.FilterChain{Name: cl, FilterChainMatch: match, Filters: filters})
			continue
		}
		chains, err := mtls.InboundChains(mtls.ModeFor(objs, w, p.port), self)
		if err != nil {
			r.warnf("%s: inbound port %d: %v: left out", self, p.port, err)
			continue
		}
		for _, c := range chains {
			m := proto.Clone(c.Match).(*listener.FilterChainMatch)
			m.DestinationPort = wrapperspb.UInt32(p.port)
			l.FilterChains = append(l.FilterChains, &listener.FilterChain{
				Name: cl + "|" + m.GetTransportProtocol(), FilterChainMatch: m, TransportSocket: c.TransportSocket, Filters: filters,
			})
		}
	}
	if self.IsZero() {
		return l
	}
	ts, err := sds.DownstreamTLS(self)
	if err != nil {
		r.warnf("%s: inbound passthrough: %v", self, err)
		return l
	}
	def := l.DefaultFilterChain
	l.FilterChains = append(l.FilterChains, &listener.FilterChain{
		Name:             def.GetName() + "|tls",
		FilterChainMatch: &listener.FilterChainMatch{TransportProtocol: "tls"},
		TransportSocket:  ts,
		Filters:          def.GetFilters(),
	})
	if mtls.ModeFor(objs, w, 0) != v1alpha1.MTLSPermissive {
		l.DefaultFilterChain = nil
	}
	l.ListenerFilters = []*listener.ListenerFilter{tlsInspector()}
	return l
}

// inboundHTTPFilters are the workload's authorization and JWT filters.
// Policies were validated when compiled; should they still fail here, the
// port denies every request rather than serve without its policy.
func inboundHTTPFilters(objs []v1alpha1.Object, w authz.Workload, r *Result) []*hcm.HttpFilter {
	ps, err := authz.Compile(objs, w)
	if err == nil {
		var filters []*hcm.HttpFilter
		if filters, _, err = authz.HTTPFilters(ps, authz.SelectRequestAuthentications(objs, w)); err == nil {
			for _, f := range filters {
				// Package trust wraps with anypb.New, whose bytes vary
				// with map order (RBAC policies, JWT providers): equal
				// resources must hash to equal versions.
				f.ConfigType = &hcm.HttpFilter_TypedConfig{TypedConfig: restable(f.GetTypedConfig())}
			}
			return filters
		}
	}
	r.warnf("workload %s %s: authorization: %v: denying every request", w.Namespace, joinLabels(w.Labels), err)
	return []*hcm.HttpFilter{{
		Name:       authz.RBACFilterName,
		ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&rbachttp.RBAC{Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW}})},
	}}
}

func appliesAuthz(objs []v1alpha1.Object, w authz.Workload) bool {
	return slices.ContainsFunc(objs, func(o v1alpha1.Object) bool {
		ap, ok := o.(*v1alpha1.AuthorizationPolicy)
		return ok && authz.Applies(ap.ObjectMeta, ap.Spec.Selector, w)
	})
}

// inboundHTTP serves an inbound HTTP port: every request to the local
// application with no route timeout (the application decides), the given
// filters before the router, the client certificate's details forwarded.
func inboundHTTP(cl string, filters []*hcm.HttpFilter) *listener.Filter {
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

// jwksCluster is the cluster a remote JWKS is fetched through: the host
// by DNS, over TLS checked against the system's roots for https.
func jwksCluster(c jwt.JWKSCluster) *cluster.Cluster {
	out := &cluster.Cluster{
		Name:                 c.Name,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STRICT_DNS},
		ConnectTimeout:       durationpb.New(connectTimeout),
		LoadAssignment: &endpoint.ClusterLoadAssignment{ClusterName: c.Name, Endpoints: []*endpoint.LocalityLbEndpoints{{
			LbEndpoints: []*endpoint.LbEndpoint{{HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: socketAddress(c.Host, c.Port)}}}},
		}}},
	}
	if c.TLS {
		out.TransportSocket = transportSocket(&tlsv3.UpstreamTlsContext{Sni: c.Host, CommonTlsContext: &tlsv3.CommonTlsContext{
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				SystemRootCerts: &tlsv3.CertificateValidationContext_SystemRootCerts{},
			}},
		}})
	}
	return out
}

// CredentialRef names a credential a Gateway or DestinationPolicy gives by
// credentialName, in the object's namespace: a certificate with its key,
// or (CA) the bundle that verifies peers.
type CredentialRef struct {
	Namespace, Name string
	CA              bool
}

// SecretName is the SDS name of the credential: NAMESPACE/NAME, and
// NAMESPACE/NAME-cacert for its CA bundle (Istio's convention).
func (c CredentialRef) SecretName() string {
	n := c.Namespace + "/" + c.Name
	if c.CA {
		n += "-cacert"
	}
	return n
}

// Credentials returns the credentials a secret scope may receive: those
// of the Gateways that select the gateway, and of the DestinationPolicies
// that originate TLS, each only for an identity of the object's own
// namespace (as Istio confines credentialName to the gateway's namespace),
// so that no workload reads another namespace's private keys.
func Credentials(in Input, s Scope) []CredentialRef {
	self := s.identity()
	if s.Type != SecretType || self.IsZero() || in.Policies == nil {
		return nil
	}
	ns, _, ok := trust.ParseWorkloadID(self)
	if !ok {
		return nil
	}
	var out []CredentialRef
	add := func(c CredentialRef) {
		if c.Namespace == ns && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	if s.Mode == ModeIngress || s.Mode == ModeEgress {
		for _, g := range in.Policies.gatewaysFor(s) {
			for _, l := range g.Spec.Listeners {
				if t := l.TLS; t != nil && t.CredentialName != "" {
					add(CredentialRef{Namespace: g.Namespace, Name: t.CredentialName})
					if t.Mode == v1alpha1.ServerTLSMutual {
						add(CredentialRef{Namespace: g.Namespace, Name: t.CredentialName, CA: true})
					}
				}
			}
		}
	}
	if s.Mode != ModeProxyless && s.Mode != ModeEastWest {
		dests := make([]*v1alpha1.DestinationPolicy, 0, len(in.Policies.dests)+len(in.Policies.externalDests))
		for _, dp := range in.Policies.dests {
			dests = append(dests, dp)
		}
		for _, dp := range in.Policies.externalDests {
			dests = append(dests, dp)
		}
		for _, dp := range dests {
			if t := dp.Spec.TLS; t != nil && t.CredentialName != "" {
				add(CredentialRef{Namespace: dp.Namespace, Name: t.CredentialName, CA: true})
				if t.Mode == v1alpha1.TLSMutual {
					add(CredentialRef{Namespace: dp.Namespace, Name: t.CredentialName})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b CredentialRef) int { return strings.Compare(a.SecretName(), b.SecretName()) })
	return out
}

// CredentialSecret builds a credential's SDS secret from PEM: the
// certificate chain and key, or for a CA reference the trusted roots.
func CredentialSecret(c CredentialRef, certPEM, keyPEM []byte) *tlsv3.Secret {
	if c.CA {
		return &tlsv3.Secret{Name: c.SecretName(), Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: certPEM}},
		}}}
	}
	return &tlsv3.Secret{Name: c.SecretName(), Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: certPEM}},
		PrivateKey:       &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: keyPEM}},
	}}}
}
