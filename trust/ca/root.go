package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meridian-mesh/meridian/trust"
)

// Defaults for certificate lifetimes. The root outlives many intermediate
// rotations; an intermediate outlives many SVIDs.
const (
	DefaultRootTTL         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateTTL = 365 * 24 * time.Hour
	// backdate makes a fresh certificate valid on peers whose clocks lag a
	// little behind the CA's.
	backdate = 30 * time.Second
)

// Root is the mesh's root of trust: a self-signed CA certificate and its key.
// It signs one intermediate per cluster and nothing else.
type Root struct {
	td   spiffeid.TrustDomain
	cert *x509.Certificate
	key  crypto.Signer
}

// RootOptions configures NewRoot. Only TrustDomain is required.
type RootOptions struct {
	TrustDomain spiffeid.TrustDomain
	// KeyType of the root key; default ECDSAP256.
	KeyType KeyType
	// TTL of the root certificate; default DefaultRootTTL.
	TTL time.Duration
	// Now is the clock; default time.Now. Tests move it.
	Now func() time.Time
}

// NewRoot creates a self-signed root CA for a trust domain. Its URI SAN is
// the trust domain's SPIFFE ID (spiffe://TD), and its path length is 1: a
// root signs intermediates, intermediates sign SVIDs, nothing deeper.
func NewRoot(opts RootOptions) (*Root, error) {
	if opts.TrustDomain.IsZero() {
		return nil, errors.New("ca: root: trust domain is required")
	}
	key, err := GenerateKey(opts.KeyType)
	if err != nil {
		return nil, err
	}
	now := clock(opts.Now)()
	ttl := orDefault(opts.TTL, DefaultRootTTL)
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Meridian"}, CommonName: "Meridian root CA " + opts.TrustDomain.Name()},
		URIs:                  []*url.URL{opts.TrustDomain.ID().URL()},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(ttl),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("ca: sign root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse root: %w", err)
	}
	return &Root{td: opts.TrustDomain, cert: cert, key: key}, nil
}

// ParseRoot imports an existing root from PEM: a CA certificate and its
// private key (PKCS#8, SEC 1 or PKCS#1). The root need not carry a SPIFFE ID
// (a corporate root usually does not); the trust domain is given.
func ParseRoot(td spiffeid.TrustDomain, certPEM, keyPEM []byte) (*Root, error) {
	if td.IsZero() {
		return nil, errors.New("ca: import root: trust domain is required")
	}
	certs, err := ParseCertificates(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: import root certificate: %w", err)
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("ca: import root certificate: want exactly one certificate, got %d", len(certs))
	}
	cert := certs[0]
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("ca: import root certificate: not a CA certificate (needs CA:true and keyCertSign)")
	}
	if cert.MaxPathLen == 0 && cert.MaxPathLenZero {
		return nil, errors.New("ca: import root certificate: path length 0 leaves no room for cluster intermediates")
	}
	if err := CheckPublicKey(cert.PublicKey); err != nil {
		return nil, fmt.Errorf("ca: import root certificate: %w", err)
	}
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: import root key: %w", err)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, errors.New("ca: import root: the key does not belong to the certificate")
	}
	return &Root{td: td, cert: cert, key: key}, nil
}

// TrustDomain is the trust domain the root anchors.
func (r *Root) TrustDomain() spiffeid.TrustDomain { return r.td }

// Certificate is the root's self-signed certificate, the value that goes
// into trust bundles.
func (r *Root) Certificate() *x509.Certificate { return r.cert }

// Signer is the root's private key, for signing trust bundle updates
// (see package bundle).
func (r *Root) Signer() crypto.Signer { return r.key }

// MarshalPEM returns the certificate and the PKCS#8 key in PEM.
func (r *Root) MarshalPEM() (certPEM, keyPEM []byte, err error) {
	keyPEM, err = MarshalPrivateKey(r.key)
	if err != nil {
		return nil, nil, err
	}
	return EncodeCertificates(r.cert), keyPEM, nil
}

// IntermediateRequest asks the root for a cluster's intermediate CA.
type IntermediateRequest struct {
	// Cluster names the cluster; the intermediate's URI SAN is
	// spiffe://TD/meridian/cluster/CLUSTER.
	Cluster string
	// PublicKey of the intermediate. A root rotation re-signs the key a
	// cluster already holds, so no private key ever travels.
	PublicKey crypto.PublicKey
	// TTL; default DefaultIntermediateTTL, never past the root's expiry.
	TTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// IssueIntermediate signs a cluster's intermediate CA certificate. It has
// path length 0 (it signs only leaves) and a name constraint permitting
// only URIs in the trust domain: a stolen intermediate cannot mint
// identities for another trust domain, nor for any DNS or IP name a peer
// would check with a URI-only policy.
func (r *Root) IssueIntermediate(req IntermediateRequest) (*x509.Certificate, error) {
	id, err := trust.ClusterID(r.td, req.Cluster)
	if err != nil {
		return nil, fmt.Errorf("ca: intermediate: %w", err)
	}
	if err := CheckPublicKey(req.PublicKey); err != nil {
		return nil, fmt.Errorf("ca: intermediate for %s: %w", req.Cluster, err)
	}
	now := clock(req.Now)()
	notAfter := now.Add(orDefault(req.TTL, DefaultIntermediateTTL))
	if notAfter.After(r.cert.NotAfter) {
		notAfter = r.cert.NotAfter
	}
	if !now.Before(r.cert.NotAfter) || now.Before(r.cert.NotBefore) {
		return nil, fmt.Errorf("ca: intermediate for %s: the root is not valid now (%s to %s)", req.Cluster, r.cert.NotBefore.Format(time.RFC3339), r.cert.NotAfter.Format(time.RFC3339))
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization:       []string{"Meridian"},
			OrganizationalUnit: []string{req.Cluster},
			CommonName:         "Meridian intermediate CA " + req.Cluster,
		},
		URIs:                        []*url.URL{id.URL()},
		NotBefore:                   now.Add(-backdate),
		NotAfter:                    notAfter,
		IsCA:                        true,
		BasicConstraintsValid:       true,
		MaxPathLen:                  0,
		MaxPathLenZero:              true,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		PermittedURIDomains:         []string{r.td.Name()},
		PermittedDNSDomainsCritical: true, // marks the NameConstraints extension critical (RFC 5280 4.2.1.10)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, r.cert, req.PublicKey, r.key)
	if err != nil {
		return nil, fmt.Errorf("ca: sign intermediate for %s: %w", req.Cluster, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse intermediate for %s: %w", req.Cluster, err)
	}
	return cert, nil
}

// ParseCertificates decodes every CERTIFICATE block of a PEM input. It
// refuses input with no certificate or with other block types, so that a
// key pasted in the wrong place is not silently ignored.
func ParseCertificates(pemBytes []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := bytes.TrimSpace(pemBytes)
	for len(rest) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("not PEM")
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
		rest = bytes.TrimSpace(rest)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}
	return certs, nil
}

// EncodeCertificates returns certificates as concatenated PEM blocks.
func EncodeCertificates(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}) // writing to a bytes.Buffer cannot fail
	}
	return b.Bytes()
}

// ParsePrivateKey decodes one PEM private key in PKCS#8, SEC 1 (EC) or
// PKCS#1 (RSA) form.
func ParsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("not PEM")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%T is not a signing key", key)
	}
	if err := CheckPublicKey(s.Public()); err != nil {
		return nil, err
	}
	return s, nil
}

// MarshalPrivateKey returns a key as PKCS#8 PEM.
func MarshalPrivateKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ca: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

func clock(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
