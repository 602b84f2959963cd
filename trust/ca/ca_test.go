package ca_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
)

var td = trusttest.TD

func bundleOf(roots ...*ca.Root) *x509bundle.Bundle { return trusttest.Bundle(roots...).X509Bundle() }

func TestRootIntermediateSVIDChain(t *testing.T) {
	c := trusttest.NewCA(t, td, "eks-use1")
	root := c.Root.Certificate()
	if !root.IsCA || root.MaxPathLen != 1 || len(root.URIs) != 1 || root.URIs[0].String() != "spiffe://mesh.test" {
		t.Fatalf("root: CA=%v pathlen=%d URIs=%v", root.IsCA, root.MaxPathLen, root.URIs)
	}
	if _, ok := root.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatalf("root key is %T, want ECDSA (P-256 by default)", root.PublicKey)
	}
	ic := c.Authority.Chain()[0]
	if !ic.MaxPathLenZero || ic.MaxPathLen != 0 {
		t.Errorf("intermediate path length: %d zero=%v, want 0", ic.MaxPathLen, ic.MaxPathLenZero)
	}
	if len(ic.PermittedURIDomains) != 1 || ic.PermittedURIDomains[0] != "mesh.test" {
		t.Errorf("intermediate name constraints: %v", ic.PermittedURIDomains)
	}
	if got := ic.URIs[0].String(); got != "spiffe://mesh.test/meridian/cluster/eks-use1" {
		t.Errorf("intermediate URI %s", got)
	}

	id := spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/web")
	svid, err := c.Authority.Mint(id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(svid.Certificates) != 2 {
		t.Fatalf("chain of %d certificates, want SVID + intermediate", len(svid.Certificates))
	}
	leaf := svid.Certificates[0]
	if ttl := time.Until(leaf.NotAfter); ttl < 59*time.Minute || ttl > time.Hour {
		t.Errorf("default TTL: %v left, want 1h", ttl)
	}
	if leaf.Subject.OrganizationalUnit[0] != "eks-use1" {
		t.Errorf("leaf subject %v does not name the cluster", leaf.Subject)
	}
	got, _, err := x509svid.Verify(svid.Certificates, bundleOf(c.Root))
	if err != nil || got != id {
		t.Fatalf("verify: %v %v", got, err)
	}
	// go-spiffe's own SVID checks (key usage, CA flags, key match) pass.
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509svid.Parse(certPEM, keyPEM); err != nil {
		t.Fatalf("x509svid.Parse: %v", err)
	}
	if n := trusttest.Count(t, c.Registry, "meridian_trust_svids_issued_total"); n != 1 {
		t.Errorf("issued counter %v, want 1", n)
	}
	if got := trusttest.Count(t, c.Registry, "meridian_trust_intermediate_expiry_timestamp_seconds", "cluster", "eks-use1"); got != float64(ic.NotAfter.Unix()) {
		t.Errorf("intermediate expiry gauge %v, want %d", got, ic.NotAfter.Unix())
	}
}

// The intermediate's name constraint is enforced by verifiers: a leaf for
// another trust domain signed by a stolen intermediate does not chain.
func TestNameConstraintStopsOtherTrustDomains(t *testing.T) {
	c := trusttest.NewCA(t, td, "a")
	ic := c.Authority.Chain()[0]
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://evil.test/ns/x/sa/y")
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: bigOne(), URIs: []*url.URL{u}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}, ic, key.Public(), c.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c.Root.Certificate())
	inter := x509.NewCertPool()
	inter.AddCert(ic)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	var cie x509.CertificateInvalidError
	if !errors.As(err, &cie) || cie.Reason != x509.CANotAuthorizedForThisName {
		t.Fatalf("leaf outside the trust domain verified: %v", err)
	}
}

func TestSignCSR(t *testing.T) {
	c := trusttest.NewCA(t, td, "a")
	id := spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/web")
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsa2k, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, csr := range map[string][]byte{
		"P-256 no SAN":          trusttest.CSR(t, mustKey(t), nil),
		"P-256 with its own ID": trusttest.CSR(t, mustKey(t), nil, id.String()),
		"P-384":                 trusttest.CSR(t, p384, nil),
		"RSA-2048":              trusttest.CSR(t, rsa2k, nil),
		"subject is not copied": trusttest.CSR(t, mustKey(t), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "admin"}}),
		"CA:false is harmless":  trusttest.CSR(t, mustKey(t), &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{basicConstraints(t, false)}}),
	} {
		t.Run(name, func(t *testing.T) {
			chain, err := c.Authority.SignCSR(ca.SignRequest{CSR: csr, ID: id, TTL: 10 * time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			leaf := chain[0]
			if leaf.IsCA || len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() || leaf.Subject.CommonName != "" {
				t.Fatalf("leaf: CA=%v URIs=%v subject=%v", leaf.IsCA, leaf.URIs, leaf.Subject)
			}
			if d := time.Until(leaf.NotAfter); d > 10*time.Minute {
				t.Fatalf("TTL not honoured: %v", d)
			}
			if _, _, err := x509svid.Verify(chain, bundleOf(c.Root)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSignCSRRefusals(t *testing.T) {
	c := trusttest.NewCA(t, td, "a")
	id := spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/web")
	k := mustKey(t)
	good := trusttest.CSR(t, k, nil)
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-5] ^= 0xff // inside the signature
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rsa1k, _ := rsa.GenerateKey(rand.Reader, 1024)
	keyCertSign := pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: true, Value: mustASN1(t, asn1.BitString{Bytes: []byte{0x04}, BitLength: 7})}

	cases := []struct {
		name   string
		req    ca.SignRequest
		reason string
	}{
		{"garbage", ca.SignRequest{CSR: []byte("not a csr"), ID: id}, ca.ReasonMalformed},
		{"empty", ca.SignRequest{ID: id}, ca.ReasonMalformed},
		{"oversized", ca.SignRequest{CSR: make([]byte, ca.MaxCSRSize+1), ID: id}, ca.ReasonOversized},
		{"bad signature", ca.SignRequest{CSR: tampered, ID: id}, ca.ReasonBadSignature},
		{"DNS SAN", ca.SignRequest{CSR: trusttest.CSR(t, k, &x509.CertificateRequest{DNSNames: []string{"bank.example"}}), ID: id}, ca.ReasonExtraSAN},
		{"IP SAN", ca.SignRequest{CSR: trusttest.CSR(t, k, &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}), ID: id}, ca.ReasonExtraSAN},
		{"e-mail SAN", ca.SignRequest{CSR: trusttest.CSR(t, k, &x509.CertificateRequest{EmailAddresses: []string{"a@b.c"}}), ID: id}, ca.ReasonExtraSAN},
		{"two URI SANs", ca.SignRequest{CSR: trusttest.CSR(t, k, nil, id.String(), "spiffe://mesh.test/ns/shop/sa/admin"), ID: id}, ca.ReasonExtraSAN},
		{"CA:true", ca.SignRequest{CSR: trusttest.CSR(t, k, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{basicConstraints(t, true)}}), ID: id}, ca.ReasonCA},
		{"keyCertSign", ca.SignRequest{CSR: trusttest.CSR(t, k, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{keyCertSign}}), ID: id}, ca.ReasonCA},
		{"Ed25519 key", ca.SignRequest{CSR: trusttest.CSR(t, edKey, nil), ID: id}, ca.ReasonKeyType},
		{"P-521 key", ca.SignRequest{CSR: trusttest.CSR(t, p521, nil), ID: id}, ca.ReasonKeyType},
		{"RSA-1024 key", ca.SignRequest{CSR: trusttest.CSR(t, rsa1k, nil), ID: id}, ca.ReasonKeyType},
		{"attested in another trust domain", ca.SignRequest{CSR: good, ID: spiffeid.RequireFromString("spiffe://other.test/ns/shop/sa/web")}, ca.ReasonTrustDomain},
		{"CSR asks for another trust domain", ca.SignRequest{CSR: trusttest.CSR(t, k, nil, "spiffe://other.test/ns/shop/sa/web"), ID: id}, ca.ReasonTrustDomain},
		{"CSR asks for another workload", ca.SignRequest{CSR: trusttest.CSR(t, k, nil, "spiffe://mesh.test/ns/shop/sa/admin"), ID: id}, ca.ReasonIdentity},
		{"CSR asks for a non-SPIFFE URI", ca.SignRequest{CSR: trusttest.CSR(t, k, nil, "https://mesh.test/x"), ID: id}, ca.ReasonIdentity},
		{"trust domain ID, no path", ca.SignRequest{CSR: good, ID: td.ID()}, ca.ReasonIdentity},
		{"another cluster's control plane", ca.SignRequest{CSR: good, ID: spiffeid.RequireFromString("spiffe://mesh.test/meridian/cluster/b")}, ca.ReasonIdentity},
		{"reserved path", ca.SignRequest{CSR: good, ID: spiffeid.RequireFromString("spiffe://mesh.test/meridian/admin")}, ca.ReasonIdentity},
		{"TTL above max", ca.SignRequest{CSR: good, ID: id, TTL: 48 * time.Hour}, ca.ReasonTTL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := trusttest.Count(t, c.Registry, "meridian_trust_csr_refused_total", "reason", tc.reason)
			_, err := c.Authority.SignCSR(tc.req)
			r, ok := errors.AsType[*trust.RefusedError](err)
			if !ok || r.Reason != tc.reason {
				t.Fatalf("got %v, want refusal %q", err, tc.reason)
			}
			if !strings.HasPrefix(err.Error(), "ca: sign SVID: refused") || r.Detail == "" {
				t.Errorf("unclear error: %v", err)
			}
			if after := trusttest.Count(t, c.Registry, "meridian_trust_csr_refused_total", "reason", tc.reason); after != before+1 {
				t.Errorf("refusal %q counted %v -> %v", tc.reason, before, after)
			}
		})
	}
}

func TestMintRefusesOtherTrustDomain(t *testing.T) {
	c := trusttest.NewCA(t, td, "a")
	_, err := c.Authority.Mint(spiffeid.RequireFromString("spiffe://other.test/ns/a/sa/b"), 0)
	if r, ok := errors.AsType[*trust.RefusedError](err); !ok || r.Reason != ca.ReasonTrustDomain {
		t.Fatalf("got %v", err)
	}
}

// Certificates outside their validity window are refused by verifiers; the
// authority never signs past its intermediate.
func TestExpiredAndNotYetValid(t *testing.T) {
	root, _ := ca.NewRoot(ca.RootOptions{TrustDomain: td})
	id := spiffeid.RequireFromString("spiffe://mesh.test/ns/a/sa/b")
	for name, at := range map[string]time.Time{
		"expired":       time.Now().Add(-3 * time.Hour),
		"not yet valid": time.Now().Add(3 * time.Hour),
	} {
		t.Run(name, func(t *testing.T) {
			key := mustKey(t)
			ic, err := root.IssueIntermediate(ca.IntermediateRequest{Cluster: "a", PublicKey: key.Public()})
			if err != nil {
				t.Fatal(err)
			}
			a, err := ca.NewAuthority(ca.AuthorityConfig{TrustDomain: td, Cluster: "a", Chain: []*x509.Certificate{ic}, Key: key, Now: func() time.Time { return at }})
			if err != nil {
				t.Fatal(err)
			}
			svid, err := a.Mint(id, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = x509svid.Verify(svid.Certificates, bundleOf(root))
			var cie x509.CertificateInvalidError
			if !errors.As(err, &cie) || cie.Reason != x509.Expired {
				t.Fatalf("%s SVID: %v", name, err)
			}
		})
	}
	t.Run("capped by the intermediate", func(t *testing.T) {
		key := mustKey(t)
		ic, _ := root.IssueIntermediate(ca.IntermediateRequest{Cluster: "a", PublicKey: key.Public(), TTL: 10 * time.Minute})
		a, _ := ca.NewAuthority(ca.AuthorityConfig{TrustDomain: td, Cluster: "a", Chain: []*x509.Certificate{ic}, Key: key})
		svid, err := a.Mint(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if svid.Certificates[0].NotAfter.After(ic.NotAfter) {
			t.Fatal("SVID outlives its intermediate")
		}
	})
}

func TestAuthorityChecksItsChain(t *testing.T) {
	root, _ := ca.NewRoot(ca.RootOptions{TrustDomain: td})
	key, other := mustKey(t), mustKey(t)
	ic, _ := root.IssueIntermediate(ca.IntermediateRequest{Cluster: "a", PublicKey: key.Public()})
	for name, cfg := range map[string]ca.AuthorityConfig{
		"no chain":      {TrustDomain: td, Cluster: "a", Key: key},
		"wrong key":     {TrustDomain: td, Cluster: "a", Chain: []*x509.Certificate{ic}, Key: other},
		"wrong cluster": {TrustDomain: td, Cluster: "b", Chain: []*x509.Certificate{ic}, Key: key},
		"leaf as CA":    {TrustDomain: td, Cluster: "a", Chain: []*x509.Certificate{root.Certificate()}, Key: root.Signer()},
		"bad key type":  {TrustDomain: td, Cluster: "a", Chain: []*x509.Certificate{ic}, Key: key, KeyType: "dsa"},
		"no td":         {Cluster: "a", Chain: []*x509.Certificate{ic}, Key: key},
	} {
		if _, err := ca.NewAuthority(cfg); err == nil || !strings.HasPrefix(err.Error(), "ca: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestImportRoot(t *testing.T) {
	orig, _ := ca.NewRoot(ca.RootOptions{TrustDomain: td, KeyType: ca.ECDSAP384})
	certPEM, keyPEM, err := orig.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	r, err := ca.ParseRoot(td, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Certificate().Equal(orig.Certificate()) {
		t.Fatal("imported a different certificate")
	}
	if _, err := r.IssueIntermediate(ca.IntermediateRequest{Cluster: "a", PublicKey: mustKey(t).Public()}); err != nil {
		t.Fatal(err)
	}
	other, _ := ca.NewRoot(ca.RootOptions{TrustDomain: td})
	_, otherKey, _ := other.MarshalPEM()
	a := trusttest.NewCA(t, td, "a")
	icPEM := ca.EncodeCertificates(a.Authority.Chain()[0])
	leafSVID, _ := a.Authority.Mint(spiffeid.RequireFromString("spiffe://mesh.test/ns/a/sa/b"), 0)
	leafPEM := ca.EncodeCertificates(leafSVID.Certificates[0])
	leafKey, _ := ca.MarshalPrivateKey(leafSVID.PrivateKey)
	for name, in := range map[string][2][]byte{
		"key of another root":        {certPEM, otherKey},
		"not PEM":                    {[]byte("hello"), keyPEM},
		"two certificates":           {append(certPEM, certPEM...), keyPEM},
		"key where the cert goes":    {keyPEM, keyPEM},
		"path length 0 intermediate": {icPEM, keyPEM},
		"a leaf":                     {leafPEM, leafKey},
	} {
		if _, err := ca.ParseRoot(td, in[0], in[1]); err == nil {
			t.Errorf("%s: imported", name)
		}
	}
	if _, err := ca.ParseRoot(spiffeid.TrustDomain{}, certPEM, keyPEM); err == nil {
		t.Error("imported without a trust domain")
	}
}

// Root rotation re-signs a cluster's existing intermediate key under the new
// root: SVIDs signed before and after chain to whichever root a verifier
// holds, as long as the bundle carries both.
func TestResignIntermediateUnderNewRoot(t *testing.T) {
	c := trusttest.NewCA(t, td, "a")
	id := spiffeid.RequireFromString("spiffe://mesh.test/ns/a/sa/b")
	old, _ := c.Authority.Mint(id, 0)
	root2, _ := ca.NewRoot(ca.RootOptions{TrustDomain: td})
	ic2, err := root2.IssueIntermediate(ca.IntermediateRequest{Cluster: "a", PublicKey: c.Key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Authority.SetChain([]*x509.Certificate{ic2}, c.Key); err != nil {
		t.Fatal(err)
	}
	fresh, _ := c.Authority.Mint(id, 0)
	both := bundleOf(c.Root, root2)
	for name, chain := range map[string][]*x509.Certificate{"old": old.Certificates, "new": fresh.Certificates} {
		if _, _, err := x509svid.Verify(chain, both); err != nil {
			t.Errorf("%s SVID with both roots: %v", name, err)
		}
	}
	if _, _, err := x509svid.Verify(fresh.Certificates, bundleOf(c.Root)); err == nil {
		t.Error("new SVID verified with the old root only")
	}
	if _, _, err := x509svid.Verify(fresh.Certificates, bundleOf(root2)); err != nil {
		t.Errorf("new SVID with the new root only: %v", err)
	}
	if got := trusttest.Count(t, c.Registry, "meridian_trust_intermediate_expiry_timestamp_seconds", "cluster", "a"); got != float64(ic2.NotAfter.Unix()) {
		t.Errorf("intermediate expiry gauge %v after SetChain, want %d", got, ic2.NotAfter.Unix())
	}
}
