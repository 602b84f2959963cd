package xdsconfig

//lint:file-ignore SA1019 Envoy still accepts these deprecated fields, so the proxy decodes them too.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"google.golang.org/protobuf/proto"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
)

// spiffeValidator is Envoy's SPIFFE certificate validator extension.
const spiffeValidator = "envoy.tls.cert_validator.spiffe"

// Secret is a compiled SDS Secret: a certificate with its key, or a
// validation context. SVID is set when the certificate is an X.509-SVID.
//
// Mesh secrets are those package trust/sds builds; they are parsed here
// with go-spiffe, exactly as trust/sds.ParseSVIDSecret and
// ParseBundleSecret parse them (TestSameAsTrustSDS compares), rather than
// by calling them: trust/sds links the control plane's Kubernetes and etcd
// clients, which would double meridian-proxy's memory.
type Secret struct {
	Name       string
	Cert       *tls.Certificate
	SVID       *x509svid.SVID
	Validation *Validation
}

// References implements xdsclient.Resource.
func (*Secret) References(func(typeURL, name string)) {}

// Validation says which peers to trust: roots for any peer (trusted_ca),
// or bundles per SPIFFE trust domain (Envoy's SPIFFE certificate
// validator), and which subject alternative names to accept.
type Validation struct {
	Roots []*x509.Certificate
	// SystemRoots trusts the system's roots (system_root_certs), as Envoy
	// does only when no trusted_ca is given.
	SystemRoots bool
	// Bundles, when set, verify a peer against its own trust domain's
	// roots only.
	Bundles *x509bundle.Set
	SANs    []SANMatch
}

// SANMatch matches one kind of subject alternative name.
type SANMatch struct {
	Type  tlsv3.SubjectAltNameMatcher_SanType
	Match StringMatch
}

// CertRef is a certificate given inline or by SDS name.
type CertRef struct {
	SDS    string
	Inline *tls.Certificate
}

// ValidationRef is a validation context given inline, by SDS name, or
// both (Envoy's combined validation context: the SDS roots with the inline
// SAN matchers).
type ValidationRef struct {
	SDS    string
	Inline *Validation
}

// DownstreamTLS terminates TLS from clients.
type DownstreamTLS struct {
	Cert CertRef
	// Validation is nil when client certificates are not verified.
	Validation        *ValidationRef
	RequireClientCert bool
	ALPN              []string
	MinVersion        uint16
}

func (t *DownstreamTLS) references(fn func(typeURL, name string)) {
	if t.Cert.SDS != "" {
		fn(xdsclient.SecretType, t.Cert.SDS)
	}
	if t.Validation != nil && t.Validation.SDS != "" {
		fn(xdsclient.SecretType, t.Validation.SDS)
	}
}

// UpstreamTLS originates TLS to endpoints.
type UpstreamTLS struct {
	SNI string
	// Cert is empty (no SDS name, no inline certificate) for one-way TLS.
	Cert       CertRef
	Validation *ValidationRef
	ALPN       []string
	MinVersion uint16
}

func (t *UpstreamTLS) references(fn func(typeURL, name string)) {
	if t.Cert.SDS != "" {
		fn(xdsclient.SecretType, t.Cert.SDS)
	}
	if t.Validation != nil && t.Validation.SDS != "" {
		fn(xdsclient.SecretType, t.Validation.SDS)
	}
}

func secret(s *tlsv3.Secret) (*Secret, error) {
	out := &Secret{Name: s.GetName()}
	switch t := s.GetType().(type) {
	case *tlsv3.Secret_TlsCertificate:
		c, err := certificate(t.TlsCertificate)
		if err != nil {
			return nil, fieldErr("tls_certificate", err)
		}
		out.Cert = c
		if len(c.Leaf.URIs) > 0 && c.Leaf.URIs[0].Scheme == "spiffe" {
			chain, _ := inline(t.TlsCertificate.GetCertificateChain())
			key, _ := inline(t.TlsCertificate.GetPrivateKey())
			svid, err := x509svid.Parse(chain, key)
			if err != nil {
				return nil, fieldErr("tls_certificate", err)
			}
			out.SVID = svid
		}
	case *tlsv3.Secret_ValidationContext:
		v, err := validationContext(t.ValidationContext)
		if err != nil {
			return nil, fieldErr("validation_context", err)
		}
		out.Validation = v
	default:
		return nil, fmt.Errorf("secret type %T is not supported", t)
	}
	return out, nil
}

// inline reads a DataSource: only inline data is accepted from the
// control plane.
func inline(d *core.DataSource) ([]byte, error) {
	switch s := d.GetSpecifier().(type) {
	case *core.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *core.DataSource_InlineString:
		return []byte(s.InlineString), nil
	case nil:
		return nil, errors.New("empty data source")
	default:
		return nil, fmt.Errorf("data source %T: only inline data is accepted over xDS", s)
	}
}

func certificate(c *tlsv3.TlsCertificate) (*tls.Certificate, error) {
	if c.GetPrivateKeyProvider() != nil || c.GetPkcs12() != nil || c.GetWatchedDirectory() != nil {
		return nil, errors.New("only certificate_chain with private_key is supported")
	}
	chain, err := inline(c.GetCertificateChain())
	if err != nil {
		return nil, fieldErr("certificate_chain", err)
	}
	key, err := inline(c.GetPrivateKey())
	if err != nil {
		return nil, fieldErr("private_key", err)
	}
	pair, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return nil, err
	}
	return &pair, nil
}

func parsePEMCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

func validationContext(v *tlsv3.CertificateValidationContext) (*Validation, error) {
	out := &Validation{}
	if len(v.GetVerifyCertificateSpki()) > 0 || len(v.GetVerifyCertificateHash()) > 0 || v.GetCrl() != nil ||
		v.GetCaCertificateProviderInstance() != nil || v.GetWatchedDirectory() != nil {
		return nil, errors.New("only trusted_ca, system_root_certs, the SPIFFE validator and SAN matchers are supported")
	}
	out.SystemRoots = v.GetSystemRootCerts() != nil
	if v.GetTrustChainVerification() == tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED || v.GetAllowExpiredCertificate() {
		return nil, errors.New("accepting untrusted or expired certificates is not supported")
	}
	if v.GetTrustedCa() != nil {
		b, err := inline(v.GetTrustedCa())
		if err != nil {
			return nil, fieldErr("trusted_ca", err)
		}
		if out.Roots, err = parsePEMCerts(b); err != nil {
			return nil, fieldErr("trusted_ca", err)
		}
	}
	if cv := v.GetCustomValidatorConfig(); cv != nil {
		if cv.GetName() != spiffeValidator {
			return nil, fmt.Errorf("custom_validator_config %q is not supported", cv.GetName())
		}
		var sp tlsv3.SPIFFECertValidatorConfig
		if err := unmarshalTyped(cv.GetTypedConfig(), &sp); err != nil {
			return nil, fieldErr("custom_validator_config", err)
		}
		if sp.GetTrustBundles() != nil {
			return nil, errors.New("SPIFFE trust_bundles maps are not supported: list trust_domains")
		}
		set := x509bundle.NewSet()
		for _, d := range sp.GetTrustDomains() {
			td, err := spiffeid.TrustDomainFromString(d.GetName())
			if err != nil {
				return nil, fmt.Errorf("trust_domains %q: %w", d.GetName(), err)
			}
			b, err := inline(d.GetTrustBundle())
			if err != nil {
				return nil, fmt.Errorf("trust_domains %s: %w", td, err)
			}
			roots, err := parsePEMCerts(b)
			if err != nil {
				return nil, fmt.Errorf("trust_domains %s: %w", td, err)
			}
			set.Add(x509bundle.FromX509Authorities(td, roots))
		}
		out.Bundles = set
	}
	if len(v.GetMatchSubjectAltNames()) > 0 {
		return nil, errors.New("match_subject_alt_names is deprecated: use match_typed_subject_alt_names")
	}
	for i, m := range v.GetMatchTypedSubjectAltNames() {
		sm, err := stringMatch(m.GetMatcher())
		if err != nil {
			return nil, fmt.Errorf("match_typed_subject_alt_names[%d]: %w", i, err)
		}
		if m.GetSanType() == tlsv3.SubjectAltNameMatcher_OTHER_NAME || m.GetSanType() == tlsv3.SubjectAltNameMatcher_SAN_TYPE_UNSPECIFIED {
			return nil, fmt.Errorf("match_typed_subject_alt_names[%d]: SAN type %s is not supported", i, m.GetSanType())
		}
		out.SANs = append(out.SANs, SANMatch{Type: m.GetSanType(), Match: sm})
	}
	return out, nil
}

func tlsVersion(v tlsv3.TlsParameters_TlsProtocol) uint16 {
	switch v {
	case tlsv3.TlsParameters_TLSv1_3:
		return tls.VersionTLS13
	case tlsv3.TlsParameters_TLSv1_0, tlsv3.TlsParameters_TLSv1_1:
		// Go's TLS stack has removed what these would enable; 1.2 is the floor.
		return tls.VersionTLS12
	}
	return tls.VersionTLS12
}

// commonTLS reads the parts of a CommonTlsContext both directions share.
func commonTLS(c *tlsv3.CommonTlsContext) (CertRef, *ValidationRef, error) {
	var cert CertRef
	if c.GetCustomHandshaker() != nil || c.GetTlsCertificateProviderInstance() != nil || c.GetCustomTlsCertificateSelector() != nil ||
		c.GetTlsCertificateCertificateProviderInstance() != nil {
		return cert, nil, errors.New("certificate providers and custom handshakers are not supported: use SDS")
	}
	if n := len(c.GetTlsCertificates()) + len(c.GetTlsCertificateSdsSecretConfigs()); n > 1 {
		return cert, nil, errors.New("at most one certificate is supported")
	}
	if cs := c.GetTlsCertificates(); len(cs) == 1 {
		tc, err := certificate(cs[0])
		if err != nil {
			return cert, nil, fieldErr("tls_certificates", err)
		}
		cert.Inline = tc
	}
	if sds := c.GetTlsCertificateSdsSecretConfigs(); len(sds) == 1 {
		if err := checkSDS(sds[0]); err != nil {
			return cert, nil, fieldErr("tls_certificate_sds_secret_configs", err)
		}
		cert.SDS = sds[0].GetName()
	}
	var val *ValidationRef
	switch v := c.GetValidationContextType().(type) {
	case nil:
	case *tlsv3.CommonTlsContext_ValidationContext:
		inl, err := validationContext(v.ValidationContext)
		if err != nil {
			return cert, nil, fieldErr("validation_context", err)
		}
		val = &ValidationRef{Inline: inl}
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		if err := checkSDS(v.ValidationContextSdsSecretConfig); err != nil {
			return cert, nil, fieldErr("validation_context_sds_secret_config", err)
		}
		val = &ValidationRef{SDS: v.ValidationContextSdsSecretConfig.GetName()}
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		val = &ValidationRef{}
		if d := v.CombinedValidationContext.GetDefaultValidationContext(); d != nil {
			inl, err := validationContext(d)
			if err != nil {
				return cert, nil, fieldErr("combined_validation_context.default_validation_context", err)
			}
			val.Inline = inl
		}
		sds := v.CombinedValidationContext.GetValidationContextSdsSecretConfig()
		if err := checkSDS(sds); err != nil {
			return cert, nil, fieldErr("combined_validation_context.validation_context_sds_secret_config", err)
		}
		val.SDS = sds.GetName()
	default:
		return cert, nil, fmt.Errorf("validation context %T is not supported", v)
	}
	return cert, val, nil
}

// checkSDS accepts secrets from the ADS stream only: meridian-proxy keeps
// one stream to its control plane.
func checkSDS(s *tlsv3.SdsSecretConfig) error {
	if s.GetName() == "" {
		return errors.New("SDS secret without a name")
	}
	if src := s.GetSdsConfig(); src != nil && src.GetAds() == nil {
		return fmt.Errorf("SDS secret %q: sds_config must be ads", s.GetName())
	}
	return nil
}

func transportTLS(ts *core.TransportSocket, m proto.Message) error {
	if ts.GetName() != wellknown.TransportSocketTLS && ts.GetName() != "tls" && !strings.HasSuffix(string(ts.GetTypedConfig().MessageName()), "TlsContext") {
		return fmt.Errorf("transport socket %q is not supported (only TLS)", ts.GetName())
	}
	return unmarshalTyped(ts.GetTypedConfig(), m)
}

func downstreamTLS(ts *core.TransportSocket) (*DownstreamTLS, error) {
	var ctx tlsv3.DownstreamTlsContext
	if err := transportTLS(ts, &ctx); err != nil {
		return nil, err
	}
	if ctx.GetSessionTicketKeysSdsSecretConfig() != nil || ctx.GetOcspStaplePolicy() != tlsv3.DownstreamTlsContext_LENIENT_STAPLING {
		return nil, errors.New("session ticket keys over SDS and OCSP stapling are not supported")
	}
	cert, val, err := commonTLS(ctx.GetCommonTlsContext())
	if err != nil {
		return nil, err
	}
	if cert.SDS == "" && cert.Inline == nil {
		return nil, errors.New("a server certificate is required")
	}
	return &DownstreamTLS{
		Cert: cert, Validation: val,
		RequireClientCert: ctx.GetRequireClientCertificate().GetValue(),
		ALPN:              ctx.GetCommonTlsContext().GetAlpnProtocols(),
		MinVersion:        tlsVersion(ctx.GetCommonTlsContext().GetTlsParams().GetTlsMinimumProtocolVersion()),
	}, nil
}

func upstreamTLS(ts *core.TransportSocket) (*UpstreamTLS, error) {
	var ctx tlsv3.UpstreamTlsContext
	if err := transportTLS(ts, &ctx); err != nil {
		return nil, err
	}
	cert, val, err := commonTLS(ctx.GetCommonTlsContext())
	if err != nil {
		return nil, err
	}
	return &UpstreamTLS{
		SNI: ctx.GetSni(), Cert: cert, Validation: val,
		ALPN:       ctx.GetCommonTlsContext().GetAlpnProtocols(),
		MinVersion: tlsVersion(ctx.GetCommonTlsContext().GetTlsParams().GetTlsMinimumProtocolVersion()),
	}, nil
}
