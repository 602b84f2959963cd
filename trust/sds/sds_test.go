package sds_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/metadata"
	authnv1 "k8s.io/api/authentication/v1"

	"github.com/meridian-mesh/meridian/trust/attest"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
	"github.com/meridian-mesh/meridian/trust/sds"
	"github.com/meridian-mesh/meridian/trust/svid"
)

var (
	td  = trusttest.TD
	web = spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/web")
	db  = spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/db")
)

func partner(t *testing.T) *spiffebundle.Bundle {
	r, err := ca.NewRoot(ca.RootOptions{TrustDomain: spiffeid.RequireTrustDomainFromString("partner.test")})
	if err != nil {
		t.Fatal(err)
	}
	return trusttest.Bundle(r)
}

func TestSecretsRoundTrip(t *testing.T) {
	c := trusttest.NewCA(t, td, "a")
	s, _ := c.Authority.Mint(web, 0)
	sec, err := sds.SVIDSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	if sec.Name != "spiffe://mesh.test/ns/shop/sa/web" {
		t.Fatalf("name %q", sec.Name)
	}
	back, err := sds.ParseSVIDSecret(sec)
	if err != nil || back.ID != web || len(back.Certificates) != 2 || !back.Certificates[0].Equal(s.Certificates[0]) {
		t.Fatalf("SVID back: %v", err)
	}

	bundles := []*spiffebundle.Bundle{trusttest.Bundle(c.Root), partner(t)}
	bs, err := sds.BundleSecret(bundles)
	if err != nil {
		t.Fatal(err)
	}
	if bs.Name != sds.BundleSecretName || bs.GetValidationContext().GetCustomValidatorConfig().GetName() != sds.SPIFFEValidator {
		t.Fatalf("bundle secret %v", bs)
	}
	set, err := sds.ParseBundleSecret(bs)
	if err != nil || set.Len() != 2 {
		t.Fatalf("bundles back: %v", err)
	}
	if b, _ := set.Get(td); !b.HasX509Authority(c.Root.Certificate()) {
		t.Fatal("own root lost")
	}
	if _, err := sds.BundleSecret(nil); err == nil {
		t.Fatal("empty bundle accepted")
	}
	if _, err := sds.ParseBundleSecret(sec); err == nil {
		t.Fatal("a certificate parsed as a bundle")
	}
	if _, err := sds.ParseSVIDSecret(bs); err == nil {
		t.Fatal("a bundle parsed as a certificate")
	}

	// What meridian-proxy does with them: a real mTLS handshake from the
	// parsed secrets.
	peer, _ := c.Authority.Mint(db, 0)
	peerSec, _ := sds.SVIDSecret(peer)
	peerBack, _ := sds.ParseSVIDSecret(peerSec)
	if err := handshake(back, peerBack, set); err != nil {
		t.Fatalf("handshake from SDS secrets: %v", err)
	}
}

func handshake(server, client *x509svid.SVID, bundles *x509bundle.Set) error {
	l, err := tls.Listen("tcp", "127.0.0.1:0", tlsconfig.MTLSServerConfig(server, bundles, tlsconfig.AuthorizeAny()))
	if err != nil {
		return err
	}
	defer l.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := l.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			io.Copy(io.Discard, c)
			c.Close()
		}
	})
	defer wg.Wait()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), tlsconfig.MTLSClientConfig(client, bundles, tlsconfig.AuthorizeID(server.ID)))
	if err != nil {
		return err
	}
	return conn.Close()
}

func TestTransportSockets(t *testing.T) {
	down, err := sds.DownstreamTLS(web)
	if err != nil {
		t.Fatal(err)
	}
	var dctx tlsv3.DownstreamTlsContext
	if err := down.GetTypedConfig().UnmarshalTo(&dctx); err != nil {
		t.Fatal(err)
	}
	if !dctx.GetRequireClientCertificate().GetValue() || dctx.CommonTlsContext.TlsCertificateSdsSecretConfigs[0].Name != web.String() {
		t.Fatalf("downstream: %v", &dctx)
	}
	up, err := sds.UpstreamTLS(web, "outbound_.80_._.db.shop.svc.cluster.local", db)
	if err != nil {
		t.Fatal(err)
	}
	var uctx tlsv3.UpstreamTlsContext
	if err := up.GetTypedConfig().UnmarshalTo(&uctx); err != nil {
		t.Fatal(err)
	}
	combined := uctx.CommonTlsContext.GetCombinedValidationContext()
	sans := combined.GetDefaultValidationContext().GetMatchTypedSubjectAltNames()
	if len(sans) != 1 || sans[0].GetMatcher().GetExact() != db.String() || combined.GetValidationContextSdsSecretConfig().GetName() != sds.BundleSecretName {
		t.Fatalf("upstream: %v", &uctx)
	}
}

// The provider hands out current secrets and signals rotations and bundle
// changes.
func TestProvider(t *testing.T) {
	c := trusttest.NewCA(t, td, "a")
	m := svid.NewManager(svid.ManagerConfig{Minter: c.Authority})
	src := bundle.NewSource(trusttest.Bundle(c.Root))
	p := sds.NewProvider(m, src)
	changed, unsub := p.Subscribe()
	defer unsub()

	first, err := p.Secrets(web)
	if err != nil || len(first) != 2 {
		t.Fatalf("secrets: %v", err)
	}
	m.RotateAll()
	recv(t, changed)
	second, _ := p.Secrets(web)
	a, _ := sds.ParseSVIDSecret(first[0])
	b, _ := sds.ParseSVIDSecret(second[0])
	if a.Certificates[0].Equal(b.Certificates[0]) {
		t.Fatal("rotation not visible")
	}
	src.Set(partner(t))
	recv(t, changed)
	third, _ := p.Secrets(web)
	if set, _ := sds.ParseBundleSecret(third[1]); set.Len() != 2 {
		t.Fatal("bundle change not visible")
	}
	if _, err := p.Secrets(spiffeid.RequireFromString("spiffe://other.test/ns/a/sa/b")); err == nil {
		t.Fatal("secrets for another trust domain")
	}
}

type reviewer authnv1.TokenReviewStatus

func (r reviewer) Review(context.Context, string, []string) (authnv1.TokenReviewStatus, error) {
	return authnv1.TokenReviewStatus(r), nil
}

func TestAttestStream(t *testing.T) {
	kube := attest.NewKube(attest.KubeConfig{TrustDomain: td, Reviewer: reviewer{Authenticated: true, Audiences: []string{"meridian"}, User: authnv1.UserInfo{Username: "system:serviceaccount:shop:web"}}})
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer tok"))
	id, err := sds.AttestStream(ctx, kube)
	if err != nil || id != web {
		t.Fatalf("%v %v", id, err)
	}
	if _, err := sds.AttestStream(context.Background(), kube); err == nil || !strings.Contains(err.Error(), "no bearer token") {
		t.Fatalf("no token: %v", err)
	}
}

func recv(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no signal after 5s")
	}
}
