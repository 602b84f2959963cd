package mtls_test

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
	"github.com/meridian-mesh/meridian/trust/mtls"
	"github.com/meridian-mesh/meridian/trust/svid"
)

// BenchmarkHandshake is the cost of one full TLS 1.3 handshake (no
// resumption) over a Unix socket pair, both ends in this process:
//
//	plain-tls  the baseline: a web-style server certificate (P-256, DNS SAN,
//	           one intermediate) verified by name, no client certificate;
//	mtls       Meridian's mesh mTLS: both ends present SVIDs (P-256, one
//	           intermediate), both verify the other's chain against the
//	           bundle and check its SPIFFE ID.
//
// bench/trust.sh prints mtls beside plain-tls as a ratio.
func BenchmarkHandshake(b *testing.B) {
	c := trusttest.NewCA(b, td, "a")
	bundles := bundle.NewSource(trusttest.Bundle(c.Root))
	m := svid.NewManager(svid.ManagerConfig{Minter: c.Authority})

	b.Run("plain-tls", func(b *testing.B) {
		server, roots := webCertificate(b)
		srv := &tls.Config{Certificates: []tls.Certificate{server}, MinVersion: tls.VersionTLS13}
		cli := &tls.Config{RootCAs: roots, ServerName: "shop.example", MinVersion: tls.VersionTLS13}
		handshakes(b, srv, cli)
	})
	b.Run("mtls", func(b *testing.B) {
		srv := mtls.ServerTLS(m.Source(web), bundles)
		cli := mtls.ClientTLS(m.Source(db), bundles, web)
		srv.MinVersion, cli.MinVersion = tls.VersionTLS13, tls.VersionTLS13
		handshakes(b, srv, cli)
	})
}

func handshakes(b *testing.B, srv, cli *tls.Config) {
	srv.SessionTicketsDisabled = true
	for b.Loop() {
		a, z := socketPair(b)
		done := make(chan error, 1)
		go func() {
			s := tls.Server(a, srv)
			done <- s.Handshake()
			s.Close()
		}()
		c := tls.Client(z, cli)
		if err := c.Handshake(); err != nil {
			b.Fatal(err)
		}
		// TLS 1.3: the server learns the client's verdict on its first read;
		// the server side's Handshake has verified the client by now.
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// socketPair is a connected pair of Unix stream sockets: kernel-buffered
// like TCP, without TCP's connection set-up in the measurement.
func socketPair(b *testing.B) (net.Conn, net.Conn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		b.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// webCertificate is a server certificate as a public web server has one:
// leaf (DNS SAN) and intermediate, under a root the client trusts.
func webCertificate(b *testing.B) (tls.Certificate, *x509.CertPool) {
	now := time.Now()
	issue := func(tmpl *x509.Certificate, parent *x509.Certificate, parentKey any) (*x509.Certificate, any) {
		key, _ := ca.GenerateKey(ca.ECDSAP256)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
		if err != nil {
			b.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		return cert, key
	}
	caTmpl := func(n int64, name string) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: name}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	}
	root, rootKey := issue(caTmpl(1, "root"), nil, nil)
	inter, interKey := issue(caTmpl(2, "intermediate"), root, rootKey)
	leaf, leafKey := issue(&x509.Certificate{SerialNumber: big.NewInt(3), DNSNames: []string{"shop.example"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, inter, interKey)
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return tls.Certificate{Certificate: [][]byte{leaf.Raw, inter.Raw}, PrivateKey: leafKey, Leaf: leaf}, pool
}
