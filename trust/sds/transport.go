package sds

import (
	"fmt"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TransportSocketName is Envoy's TLS transport socket.
const TransportSocketName = "envoy.transport_sockets.tls"

func ads() *core.ConfigSource {
	return &core.ConfigSource{
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
		ResourceApiVersion:    core.ApiVersion_V3,
	}
}

// commonTLS presents self's SVID and validates peers with the bundle, both
// fetched over the same ADS stream.
func commonTLS(self spiffeid.ID, defaults *tlsv3.CertificateValidationContext) *tlsv3.CommonTlsContext {
	return &tlsv3.CommonTlsContext{
		TlsParams:                      &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: SVIDSecretName(self), SdsConfig: ads()}},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         defaults,
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: BundleSecretName, SdsConfig: ads()},
		}},
	}
}

// DownstreamTLS is the transport socket of a sidecar's inbound mTLS
// listener for a workload running as self: it presents self's SVID and
// requires a client SVID from a trusted trust domain. Which peers may do
// what is then RBAC's business (package authz).
func DownstreamTLS(self spiffeid.ID) (*core.TransportSocket, error) {
	return transportSocket(&tlsv3.DownstreamTlsContext{
		CommonTlsContext:         commonTLS(self, &tlsv3.CertificateValidationContext{}),
		RequireClientCertificate: wrapperspb.Bool(true),
	})
}

// UpstreamTLS is the transport socket of a cluster of mesh endpoints: it
// presents self's SVID, sends sni, and accepts only a server whose SVID is
// one of peers (exact URI SAN) and chains to its trust domain's roots. With
// no peers any SVID of a trusted trust domain is accepted.
func UpstreamTLS(self spiffeid.ID, sni string, peers ...spiffeid.ID) (*core.TransportSocket, error) {
	defaults := &tlsv3.CertificateValidationContext{}
	for _, p := range peers {
		defaults.MatchTypedSubjectAltNames = append(defaults.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: p.String()}},
		})
	}
	return transportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: commonTLS(self, defaults), Sni: sni})
}

func transportSocket(ctx interface {
	proto.Message
	ValidateAll() error
}) (*core.TransportSocket, error) {
	if err := ctx.ValidateAll(); err != nil {
		return nil, fmt.Errorf("sds: transport socket: %w", err)
	}
	a, err := anypb.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("sds: transport socket: %w", err)
	}
	return &core.TransportSocket{Name: TransportSocketName, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: a}}, nil
}
