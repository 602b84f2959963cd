package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// Secrets is the live set of SDS secrets. Safe for concurrent use.
type Secrets struct {
	m atomic.Pointer[map[string]*xdsconfig.Secret]
}

// Set replaces the secrets.
func (s *Secrets) Set(m map[string]*xdsconfig.Secret) { s.m.Store(&m) }

func (s *Secrets) get(name string) *xdsconfig.Secret {
	if p := s.m.Load(); p != nil {
		return (*p)[name]
	}
	return nil
}

// certificate resolves a certificate reference.
func (s *Secrets) certificate(ref xdsconfig.CertRef) (*tls.Certificate, error) {
	if ref.Inline != nil {
		return ref.Inline, nil
	}
	if sec := s.get(ref.SDS); sec != nil && sec.Cert != nil {
		return sec.Cert, nil
	}
	return nil, fmt.Errorf("identity: certificate %q has not been received over SDS", ref.SDS)
}

// validation resolves a validation reference: SDS bundle with inline SAN
// matchers (Envoy's combined validation context), or either alone.
func (s *Secrets) validation(ref *xdsconfig.ValidationRef) (*xdsconfig.Validation, error) {
	var out xdsconfig.Validation
	if ref.SDS != "" {
		sec := s.get(ref.SDS)
		if sec == nil || sec.Validation == nil {
			return nil, fmt.Errorf("identity: validation context %q has not been received over SDS", ref.SDS)
		}
		out = *sec.Validation
	}
	if in := ref.Inline; in != nil {
		out.Roots = append(out.Roots[:len(out.Roots):len(out.Roots)], in.Roots...)
		out.SystemRoots = out.SystemRoots || in.SystemRoots
		if in.Bundles != nil {
			out.Bundles = in.Bundles
		}
		out.SANs = append(out.SANs[:len(out.SANs):len(out.SANs)], in.SANs...)
	}
	return &out, nil
}

// mesh reports whether a validation context is SPIFFE mTLS: delivered
// over SDS (trust's bundle) or an inline SPIFFE validator.
func mesh(ref *xdsconfig.ValidationRef) bool {
	return ref != nil && (ref.SDS != "" || (ref.Inline != nil && ref.Inline.Bundles != nil))
}

// svidSource serves the current SVID of a certificate reference.
type svidSource struct {
	s   *Secrets
	ref xdsconfig.CertRef
}

func (x svidSource) GetX509SVID() (*x509svid.SVID, error) {
	if sec := x.s.get(x.ref.SDS); sec != nil && sec.SVID != nil {
		return sec.SVID, nil
	}
	return nil, fmt.Errorf("identity: SVID %q has not been received over SDS", x.ref.SDS)
}

// bundleSource serves the current bundles of a validation reference; a
// trusted-CA context vouches for every trust domain.
type bundleSource struct {
	s   *Secrets
	ref *xdsconfig.ValidationRef
}

func (x bundleSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	v, err := x.s.validation(x.ref)
	if err != nil {
		return nil, err
	}
	if v.Bundles != nil {
		return v.Bundles.GetX509BundleForTrustDomain(td)
	}
	if len(v.Roots) > 0 {
		return x509bundle.FromX509Authorities(td, v.Roots), nil
	}
	return nil, fmt.Errorf("identity: no trust bundle for %q", td)
}

// ServerConfig builds the configuration of a TLS-terminating filter
// chain. alpn is used when the context names no protocols.
func (s *Secrets) ServerConfig(t *xdsconfig.DownstreamTLS, alpn []string) *tls.Config {
	var cfg *tls.Config
	if mesh(t.Validation) && t.Cert.Inline == nil {
		bundles := bundleSource{s, t.Validation}
		cfg = tlsconfig.MTLSServerConfig(svidSource{s, t.Cert}, bundles, tlsconfig.AuthorizeAny())
		s.addSANCheck(cfg, t.Validation)
	} else {
		cfg = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.certificate(t.Cert) }}
		if t.Validation != nil {
			cfg.ClientAuth = tls.RequestClientCert
			if t.RequireClientCert {
				cfg.ClientAuth = tls.RequireAnyClientCert
			}
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					if t.RequireClientCert {
						return errors.New("identity: client certificate required")
					}
					return nil
				}
				return s.verify(t.Validation, cs.PeerCertificates, "")
			}
		}
	}
	cfg.MinVersion = max(cfg.MinVersion, t.MinVersion)
	cfg.NextProtos = t.ALPN
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = alpn
	}
	return cfg
}

// addSANCheck adds the context's SAN matchers to a go-spiffe
// configuration's verification: the peer must match one of them too.
func (s *Secrets) addSANCheck(cfg *tls.Config, ref *xdsconfig.ValidationRef) {
	if ref.Inline == nil || len(ref.Inline.SANs) == 0 {
		return
	}
	verify := cfg.VerifyPeerCertificate
	sans := ref.Inline.SANs
	cfg.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		if err := verify(raw, chains); err != nil {
			return err
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return err
		}
		return matchSANs(leaf, sans)
	}
}

// ClientConfig builds the configuration of an upstream TLS context. sni
// replaces the context's SNI when not empty.
func (s *Secrets) ClientConfig(t *xdsconfig.UpstreamTLS, sni string) *tls.Config {
	if sni == "" {
		sni = t.SNI
	}
	var cfg *tls.Config
	if mesh(t.Validation) {
		bundles := bundleSource{s, t.Validation}
		ids, exact := exactIDs(t.Validation)
		switch {
		case t.Cert.SDS != "" && exact && len(ids) > 0:
			cfg = tlsconfig.MTLSClientConfig(svidSource{s, t.Cert}, bundles, tlsconfig.AuthorizeOneOf(ids...))
		case t.Cert.SDS != "":
			cfg = tlsconfig.MTLSClientConfig(svidSource{s, t.Cert}, bundles, authorizer(t.Validation))
		default:
			cfg = tlsconfig.TLSClientConfig(bundles, authorizer(t.Validation))
		}
	} else {
		// Verification is ours (SAN matchers; none without a validation
		// context, as in Envoy), in VerifyConnection, which resumed
		// sessions go through too.
		cfg = &tls.Config{InsecureSkipVerify: true}
		if t.Cert.SDS != "" || t.Cert.Inline != nil {
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return s.certificate(t.Cert) }
		}
		if t.Validation != nil {
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("identity: the server presented no certificate")
				}
				return s.verify(t.Validation, cs.PeerCertificates, cs.ServerName)
			}
		}
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	cfg.ServerName = sni
	cfg.MinVersion = max(cfg.MinVersion, t.MinVersion)
	cfg.NextProtos = t.ALPN
	return cfg
}

// exactIDs returns the SPIFFE IDs of a context whose SAN matchers are all
// exact URI matches (the shape trust/sds.UpstreamTLS builds).
func exactIDs(ref *xdsconfig.ValidationRef) ([]spiffeid.ID, bool) {
	if ref.Inline == nil {
		return nil, true
	}
	var ids []spiffeid.ID
	for _, m := range ref.Inline.SANs {
		v, ok := m.Match.Exact()
		if m.Type != tlsv3.SubjectAltNameMatcher_URI || !ok {
			return nil, false
		}
		id, err := spiffeid.FromString(v)
		if err != nil {
			return nil, false
		}
		ids = append(ids, id)
	}
	return ids, true
}

// authorizer admits a verified SPIFFE peer whose ID matches one of the
// context's URI SAN matchers (any, when there are none).
func authorizer(ref *xdsconfig.ValidationRef) tlsconfig.Authorizer {
	if ref.Inline == nil || len(ref.Inline.SANs) == 0 {
		return tlsconfig.AuthorizeAny()
	}
	sans := ref.Inline.SANs
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		for i := range sans {
			if sans[i].Type == tlsv3.SubjectAltNameMatcher_URI && sans[i].Match.Match(id.String()) {
				return nil
			}
		}
		return fmt.Errorf("identity: peer %s matches none of the allowed names", id)
	}
}

// verify checks a non-mesh peer's chain against the trusted CAs (the
// system's roots when the context says so and names none) and its names
// against the SAN matchers. serverName is the SNI a client sent.
//
// With the system's roots and no SAN matcher, the server's certificate
// must also be valid for the SNI: any public CA vouches for any name, so
// the chain alone proves nothing about who answered. Envoy checks the
// chain only unless told to match names; this is stricter on purpose.
func (s *Secrets) verify(ref *xdsconfig.ValidationRef, certs []*x509.Certificate, serverName string) error {
	v, err := s.validation(ref)
	if err != nil {
		return err
	}
	opts := x509.VerifyOptions{Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	switch {
	case len(v.Roots) > 0:
		opts.Roots = x509.NewCertPool()
		for _, r := range v.Roots {
			opts.Roots.AddCert(r)
		}
	case v.SystemRoots:
		// nil Roots: the system's pool.
		if len(v.SANs) == 0 {
			opts.DNSName = serverName
		}
	default:
		return errors.New("identity: no trusted CA to verify the peer")
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return fmt.Errorf("identity: peer certificate: %w", err)
	}
	return matchSANs(certs[0], v.SANs)
}

func matchSANs(leaf *x509.Certificate, sans []xdsconfig.SANMatch) error {
	if len(sans) == 0 {
		return nil
	}
	for i := range sans {
		if sanMatches(leaf, &sans[i]) {
			return nil
		}
	}
	return fmt.Errorf("identity: peer %s matches none of the allowed names", describe(leaf))
}

func sanMatches(c *x509.Certificate, m *xdsconfig.SANMatch) bool {
	var names []string
	switch m.Type {
	case tlsv3.SubjectAltNameMatcher_URI:
		for _, u := range c.URIs {
			names = append(names, u.String())
		}
	case tlsv3.SubjectAltNameMatcher_DNS:
		names = c.DNSNames
	case tlsv3.SubjectAltNameMatcher_EMAIL:
		names = c.EmailAddresses
	case tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
		for _, ip := range c.IPAddresses {
			names = append(names, ip.String())
		}
	}
	for _, n := range names {
		if m.Match.Match(n) {
			return true
		}
	}
	return false
}

func spiffeID(c *x509.Certificate) (string, bool) {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			return u.String(), true
		}
	}
	return "", false
}

func describe(c *x509.Certificate) string {
	if id, ok := spiffeID(c); ok {
		return id
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return c.Subject.String()
}

// PeerID returns the SPIFFE ID of a TLS connection's peer, or "".
func PeerID(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return ""
	}
	id, _ := spiffeID(cs.PeerCertificates[0])
	return id
}

// PeerSubject returns the subject of a TLS connection's peer certificate
// in RFC 2253 form, or "".
func PeerSubject(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return ""
	}
	return cs.PeerCertificates[0].Subject.String()
}

// PeerIDOf returns the SPIFFE ID of a connection's TLS peer, or "".
func PeerIDOf(c net.Conn) string {
	if tc, ok := c.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		return PeerID(&cs)
	}
	return ""
}
