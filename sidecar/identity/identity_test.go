package identity_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/meridian-mesh/meridian/sidecar/identity"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert, key}
}

func (ca *testCA) serve(t *testing.T, dnsName string) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// TestSystemRoots: an upstream context that trusts the system's roots
// (system_root_certs, as translate sends for remote JWKS and for TLS to
// external hosts without a credential) accepts a server whose chain ends
// in a system root and whose certificate names the SNI, and refuses one
// from another CA or for another name. The system's roots here are a test
// CA, through SSL_CERT_FILE (read once per process: no other test in this
// package may load them first).
func TestSystemRoots(t *testing.T) {
	system, other := newCA(t, "system root"), newCA(t, "unknown root")
	dir := t.TempDir()
	file := filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: system.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSL_CERT_FILE", file)
	t.Setenv("SSL_CERT_DIR", dir)

	s := &identity.Secrets{}
	upstream := &xdsconfig.UpstreamTLS{SNI: "auth.example.com", Validation: &xdsconfig.ValidationRef{Inline: &xdsconfig.Validation{SystemRoots: true}}}
	dial := func(addr string, u *xdsconfig.UpstreamTLS) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, s.ClientConfig(u, ""))
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(system.serve(t, "auth.example.com"), upstream); err != nil {
		t.Fatalf("a server under a system root, named as the SNI: %v", err)
	}
	if err := dial(other.serve(t, "auth.example.com"), upstream); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("a server under an unknown root: %v, want unknown authority", err)
	}
	if err := dial(system.serve(t, "evil.example.com"), upstream); err == nil || !strings.Contains(err.Error(), "auth.example.com") {
		t.Fatalf("a server named otherwise than the SNI: %v, want refused", err)
	}
	// SAN matchers replace the SNI check, as in Envoy.
	withSAN := &xdsconfig.UpstreamTLS{SNI: "auth.example.com", Validation: &xdsconfig.ValidationRef{Inline: &xdsconfig.Validation{SystemRoots: true,
		SANs: []xdsconfig.SANMatch{{Type: tlsv3.SubjectAltNameMatcher_DNS, Match: exact(t, "edge.example.com")}}}}}
	if err := dial(system.serve(t, "edge.example.com"), withSAN); err != nil {
		t.Fatalf("a server matching the SAN matcher: %v", err)
	}
	// trusted_ca wins over system_root_certs.
	pinned := &xdsconfig.UpstreamTLS{SNI: "auth.example.com", Validation: &xdsconfig.ValidationRef{Inline: &xdsconfig.Validation{SystemRoots: true, Roots: []*x509.Certificate{other.cert}}}}
	if err := dial(system.serve(t, "auth.example.com"), pinned); err == nil {
		t.Fatal("trusted_ca given, a server under a system root was accepted")
	}
}

func exact(t *testing.T, s string) xdsconfig.StringMatch {
	t.Helper()
	m, err := xdsconfig.CompileStringMatch(&matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: s}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
