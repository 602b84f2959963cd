// Package identity turns the TLS contexts and SDS secrets of meridian-proxy's
// configuration into crypto/tls configurations, and checks peers by SPIFFE
// ID with go-spiffe.
//
// Secrets holds the newest SDS secrets; every TLS configuration built here
// looks its certificate and trust bundle up at each handshake, so an SVID
// rotation or a root rotation (bundles carrying old and new roots) takes
// effect on the next connection, with no listener restart and no failed
// handshake.
//
// Peer verification follows Envoy: with a SPIFFE validator (roots per trust
// domain) or a peer whose certificate carries a spiffe:// URI, the chain is
// verified by go-spiffe's x509svid against the bundle of the peer's own
// trust domain; otherwise it is verified against the trusted CAs. SAN
// matchers, when present, must match one of the peer's names. An upstream
// context without a validation context does not verify the server, as in
// Envoy. Verification runs in VerifyConnection, so resumed sessions are
// checked too.
//
// This package does not issue or rotate certificates: package trust does,
// and its SDS secrets arrive over xDS.
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

// validation resolves a validation reference: SDS roots with inline SAN
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
		if len(in.TrustDomains) > 0 {
			out.TrustDomains = in.TrustDomains
		}
		out.SANs = append(out.SANs[:len(out.SANs):len(out.SANs)], in.SANs...)
	}
	return &out, nil
}

// ServerConfig builds the configuration of a TLS-terminating filter
// chain. alpn is used when the context names no protocols.
func (s *Secrets) ServerConfig(t *xdsconfig.DownstreamTLS, alpn []string) *tls.Config {
	cfg := &tls.Config{
		MinVersion: t.MinVersion,
		NextProtos: t.ALPN,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.certificate(t.Cert)
		},
	}
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = alpn
	}
	if t.Validation == nil {
		return cfg
	}
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
		return s.verify(t.Validation, cs.PeerCertificates)
	}
	return cfg
}

// ClientConfig builds the configuration of an upstream TLS context. sni
// replaces the context's SNI when not empty.
func (s *Secrets) ClientConfig(t *xdsconfig.UpstreamTLS, sni string) *tls.Config {
	if sni == "" {
		sni = t.SNI
	}
	cfg := &tls.Config{
		ServerName: sni,
		MinVersion: t.MinVersion,
		NextProtos: t.ALPN,
		// Verification is ours (SPIFFE IDs, SAN matchers), in
		// VerifyConnection, which resumed sessions go through too.
		InsecureSkipVerify: true,
		ClientSessionCache: tls.NewLRUClientSessionCache(64),
	}
	if t.Cert.SDS != "" || t.Cert.Inline != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.certificate(t.Cert)
		}
	}
	if t.Validation != nil {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("identity: the server presented no certificate")
			}
			return s.verify(t.Validation, cs.PeerCertificates)
		}
	}
	return cfg
}

// verify checks a peer's chain and names.
func (s *Secrets) verify(ref *xdsconfig.ValidationRef, certs []*x509.Certificate) error {
	v, err := s.validation(ref)
	if err != nil {
		return err
	}
	leaf := certs[0]
	if id, ok := spiffeID(leaf); ok || len(v.TrustDomains) > 0 {
		if !ok {
			return errors.New("identity: peer certificate has no SPIFFE ID")
		}
		if _, _, err := x509svid.Verify(certs, bundles{v}); err != nil {
			return fmt.Errorf("identity: peer %s: %w", id, err)
		}
	} else {
		if len(v.Roots) == 0 {
			return errors.New("identity: no trusted CA to verify the peer")
		}
		opts := x509.VerifyOptions{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
		for _, r := range v.Roots {
			opts.Roots.AddCert(r)
		}
		for _, c := range certs[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := leaf.Verify(opts); err != nil {
			return fmt.Errorf("identity: peer certificate: %w", err)
		}
	}
	if len(v.SANs) == 0 {
		return nil
	}
	for i := range v.SANs {
		if sanMatches(leaf, &v.SANs[i]) {
			return nil
		}
	}
	return fmt.Errorf("identity: peer %s matches none of the allowed names", describe(leaf))
}

// bundles serves the roots of a validation context as go-spiffe bundles:
// per trust domain with the SPIFFE validator, the trusted CAs for every
// trust domain otherwise.
type bundles struct{ v *xdsconfig.Validation }

func (b bundles) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if len(b.v.TrustDomains) > 0 {
		roots, ok := b.v.TrustDomains[td.Name()]
		if !ok {
			return nil, fmt.Errorf("trust domain %q is not trusted", td.Name())
		}
		return x509bundle.FromX509Authorities(td, roots), nil
	}
	if len(b.v.Roots) == 0 {
		return nil, errors.New("no trusted CA")
	}
	return x509bundle.FromX509Authorities(td, b.v.Roots), nil
}

func spiffeID(c *x509.Certificate) (string, bool) {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			return u.String(), true
		}
	}
	return "", false
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

// PeerIDOf returns the SPIFFE ID of a connection's TLS peer, or "".
func PeerIDOf(c net.Conn) string {
	if tc, ok := c.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		return PeerID(&cs)
	}
	return ""
}
