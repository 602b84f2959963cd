package ca_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
)

// FuzzSignCSR feeds arbitrary bytes as a CSR. Whatever comes in, SignCSR
// either refuses with a reason or returns an SVID for exactly the attested
// ID: one URI SAN, not a CA, no certSign, chained to the root.
func FuzzSignCSR(f *testing.F) {
	k := mustKey(f)
	id := spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/web")
	f.Add(trusttest.CSR(f, k, nil))
	f.Add(trusttest.CSR(f, k, nil, id.String()))
	f.Add(trusttest.CSR(f, k, &x509.CertificateRequest{DNSNames: []string{"x.example"}}))
	f.Add(trusttest.CSR(f, k, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{basicConstraints(f, true)}}))
	f.Add([]byte{0x30, 0x82, 0x01})
	c := trusttest.NewCA(f, td, "a")
	bundle := trusttest.Bundle(c.Root).X509Bundle()
	f.Fuzz(func(t *testing.T, csr []byte) {
		chain, err := c.Authority.SignCSR(ca.SignRequest{CSR: csr, ID: id})
		if err != nil {
			if _, ok := errors.AsType[*trust.RefusedError](err); !ok {
				t.Fatalf("not a refusal: %v", err)
			}
			return
		}
		leaf := chain[0]
		if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign != 0 || len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() ||
			len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
			t.Fatalf("signed a bad leaf: %+v", leaf)
		}
		if _, _, err := verify(chain, bundle); err != nil {
			t.Fatal(err)
		}
	})
}
