package sds

import (
	"errors"
	"fmt"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meridian-mesh/meridian/trust/ca"
)

// Names of secrets and extensions.
const (
	// BundleSecretName is the validation-context secret: every trusted root
	// of every trust domain. (Istio users know it as ROOTCA.)
	BundleSecretName = "ROOTCA"
	// SPIFFEValidator is Envoy's SPIFFE certificate validator extension.
	SPIFFEValidator = "envoy.tls.cert_validator.spiffe"
	// SecretType is the Secret resource's type URL.
	SecretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
)

// SVIDSecretName is the name of the tls_certificate secret holding id's SVID:
// the SPIFFE ID itself, so proxies of different identities that share a
// snapshot never collide.
func SVIDSecretName(id spiffeid.ID) string { return id.String() }

// SVIDSecret is a tls_certificate secret: the SVID's full chain and its key,
// inline. It carries a private key: publish it only on a stream whose
// proxy was attested as s.ID (see AttestStream).
func SVIDSecret(s *x509svid.SVID) (*tlsv3.Secret, error) {
	certs, key, err := s.Marshal()
	if err != nil {
		return nil, fmt.Errorf("sds: %s: %w", s.ID, err)
	}
	sec := &tlsv3.Secret{
		Name: SVIDSecretName(s.ID),
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(certs),
			PrivateKey:       inline(key),
		}},
	}
	if err := sec.ValidateAll(); err != nil {
		return nil, fmt.Errorf("sds: %s: %w", s.ID, err)
	}
	return sec, nil
}

// BundleSecret is the validation_context secret for peers of any trust
// domain in bundles (in the order given; bundle.Source.Bundles sorts them):
// Envoy's SPIFFE certificate validator, which checks each peer against its
// own trust domain's roots only. A plain trusted_ca pool of every root
// would let a federated trust domain's root vouch for this mesh's
// identities. It holds no SAN matcher: Envoy merges the matchers of a
// transport socket's default context with the secret's, so the exact peer
// IDs an upstream expects live in UpstreamTLS, where nothing widens them.
func BundleSecret(bundles []*spiffebundle.Bundle) (*tlsv3.Secret, error) {
	if len(bundles) == 0 {
		return nil, errors.New("sds: no trust bundle")
	}
	cfg := &tlsv3.SPIFFECertValidatorConfig{}
	for _, b := range bundles {
		cfg.TrustDomains = append(cfg.TrustDomains, &tlsv3.SPIFFECertValidatorConfig_TrustDomain{
			Name:        b.TrustDomain().Name(),
			TrustBundle: inline(ca.EncodeCertificates(b.X509Authorities()...)),
		})
	}
	a, err := anypb.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("sds: %w", err)
	}
	sec := &tlsv3.Secret{Name: BundleSecretName, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		CustomValidatorConfig: &core.TypedExtensionConfig{Name: SPIFFEValidator, TypedConfig: a},
	}}}
	if err := sec.ValidateAll(); err != nil {
		return nil, fmt.Errorf("sds: bundle: %w", err)
	}
	return sec, nil
}

func inline(b []byte) *core.DataSource {
	return &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: b}}
}

// ParseSVIDSecret turns a tls_certificate secret back into an SVID, for
// meridian-proxy, which gets the same resources Envoy does.
func ParseSVIDSecret(sec *tlsv3.Secret) (*x509svid.SVID, error) {
	tc := sec.GetTlsCertificate()
	if tc == nil {
		return nil, fmt.Errorf("sds: secret %q is not a tls_certificate", sec.GetName())
	}
	s, err := x509svid.Parse(tc.GetCertificateChain().GetInlineBytes(), tc.GetPrivateKey().GetInlineBytes())
	if err != nil {
		return nil, fmt.Errorf("sds: secret %q: %w", sec.GetName(), err)
	}
	return s, nil
}

// ParseBundleSecret turns a BundleSecret back into bundles per trust
// domain.
func ParseBundleSecret(sec *tlsv3.Secret) (*x509bundle.Set, error) {
	cv := sec.GetValidationContext().GetCustomValidatorConfig()
	var cfg tlsv3.SPIFFECertValidatorConfig
	if cv.GetName() != SPIFFEValidator || cv.GetTypedConfig().UnmarshalTo(&cfg) != nil {
		return nil, fmt.Errorf("sds: secret %q is not a SPIFFE validation context", sec.GetName())
	}
	set := x509bundle.NewSet()
	for _, d := range cfg.GetTrustDomains() {
		td, err := spiffeid.TrustDomainFromString(d.GetName())
		if err != nil {
			return nil, fmt.Errorf("sds: secret %q: %w", sec.GetName(), err)
		}
		roots, err := ca.ParseCertificates(d.GetTrustBundle().GetInlineBytes())
		if err != nil {
			return nil, fmt.Errorf("sds: secret %q: trust domain %s: %w", sec.GetName(), td, err)
		}
		set.Add(x509bundle.FromX509Authorities(td, roots))
	}
	return set, nil
}
