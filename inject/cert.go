package inject

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/meridian-mesh/meridian/trust/ca"
)

// CA is what the webhook's serving certificate comes from: the signing
// certificate of the mesh CA (the cluster's intermediate) with its chain
// and key, and the roots the API server must trust (the caBundle).
type CA struct {
	// Chain is the signing certificate first, then any certificate short
	// of the root; the serving certificate is presented with it.
	Chain []*x509.Certificate
	Key   crypto.Signer
	// Roots are the trust anchors written to the caBundle.
	Roots []*x509.Certificate
}

// CASource returns the mesh CA's current signing material. It is called
// for every new serving certificate, so an intermediate re-signed by a
// root rotation is picked up at the next renewal.
type CASource func(context.Context) (CA, error)

// StoreCA reads the cluster's intermediate chain and key from the mesh
// CA's etcd store (package trust/ca, where the trust component keeps them)
// and takes the trust anchors for the caBundle from roots (the trust
// component's bundle of the mesh's trust domain), so that a root rotation
// reaches the caBundle at the next renewal.
func StoreCA(st *ca.Store, roots func() []*x509.Certificate) CASource {
	return func(ctx context.Context) (CA, error) {
		_, chain, key, err := st.LoadIntermediate(ctx)
		if err != nil {
			return CA{}, fmt.Errorf("inject: the mesh CA has no intermediate for this cluster yet: %w", err)
		}
		r := roots()
		if len(r) == 0 {
			return CA{}, errors.New("inject: the mesh's trust bundle holds no root")
		}
		return CA{Chain: chain, Key: key, Roots: r}, nil
	}
}

// issueServing signs a serving certificate for hosts (DNS names and IP
// addresses) with the CA's signing certificate, never valid past it. SPIFFE
// SVIDs carry only a URI, and the API server checks the webhook's host name,
// hence a certificate of its own.
func issueServing(c CA, hosts []string, ttl time.Duration, now time.Time) (*tls.Certificate, error) {
	if len(c.Chain) == 0 || c.Key == nil {
		return nil, errors.New("inject: the CA has no signing certificate or key")
	}
	issuer := c.Chain[0]
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		return nil, fmt.Errorf("inject: serving key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("inject: serial number: %w", err)
	}
	notAfter := now.Add(ttl)
	if notAfter.After(issuer.NotAfter) {
		notAfter = issuer.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"Meridian"}, CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), c.Key)
	if err != nil {
		return nil, fmt.Errorf("inject: sign serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("inject: parse serving certificate: %w", err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	for _, ic := range c.Chain {
		cert.Certificate = append(cert.Certificate, ic.Raw)
	}
	return cert, nil
}
