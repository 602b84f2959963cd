package server_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/internal/kubetest"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/attest"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/mtls"
	"github.com/meridian-mesh/meridian/trust/sds"
	"github.com/meridian-mesh/meridian/trust/svid"
	"github.com/meridian-mesh/meridian/xds/server"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// meshTrust is a real root of trust: a root CA, one cluster's
// intermediate authority, the SVID manager and bundle source a meridiand
// holds, and the SDS provider over them — package trust's own parts.
type meshTrust struct {
	td        spiffeid.TrustDomain
	root      *ca.Root
	authority *ca.Authority
	svids     *svid.Manager
	bundles   *bundle.Source
	provider  *sds.Provider
}

func newMeshTrust(t *testing.T, td string) *meshTrust {
	t.Helper()
	m := &meshTrust{td: spiffeid.RequireTrustDomainFromString(td)}
	var err error
	if m.root, err = ca.NewRoot(ca.RootOptions{TrustDomain: m.td}); err != nil {
		t.Fatal(err)
	}
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := m.root.IssueIntermediate(ca.IntermediateRequest{Cluster: "c1", PublicKey: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if m.authority, err = ca.NewAuthority(ca.AuthorityConfig{TrustDomain: m.td, Cluster: "c1", Chain: []*x509.Certificate{ic}, Key: key}); err != nil {
		t.Fatal(err)
	}
	m.svids = svid.NewManager(svid.ManagerConfig{Minter: m.authority})
	m.bundles = bundle.NewSource(spiffebundle.FromX509Authorities(m.td, []*x509.Certificate{m.root.Certificate()}))
	m.provider = sds.NewProvider(m.svids, m.bundles)
	return m
}

// mint issues an SVID directly, as the CA service does for a workload
// that redeemed a join token.
func (m *meshTrust) mint(t *testing.T, ns, sa string) *x509svid.SVID {
	t.Helper()
	id, err := trust.WorkloadID(m.td, ns, sa)
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.authority.Mint(id, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var meridiandID = spiffeid.RequireFromString("spiffe://mesh.test/ns/meridian-system/sa/meridiand")

// tlsHarness serves xDS over TLS that asks for, but does not require, a
// client certificate: proxies that present an SVID are attested by it
// (server.PeerSVID, which verifies it against the bundles), others are
// served without secrets.
func tlsHarness(t *testing.T, m *meshTrust, seed func(*harness)) *harness {
	t.Helper()
	own := m.mint(t, "meridian-system", "meridiand")
	cfg := tlsconfig.TLSServerConfig(own)
	cfg.ClientAuth = tls.RequestClientCert
	return newHarness(t, harnessOpts{
		seed:     seed,
		grpcOpts: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(cfg))},
		configure: func(c *server.Config) {
			c.Secrets = m.provider
			c.Attestor = server.PeerSVID(m.bundles)
		},
	})
}

// dialAs connects to the harness with a client SVID (nil: TLS without a
// client certificate), checking the server's SPIFFE ID.
func dialAs(h *harness, m *meshTrust, s *x509svid.SVID) *grpc.ClientConn {
	h.t.Helper()
	cfg := tlsconfig.TLSClientConfig(m.bundles, tlsconfig.AuthorizeID(meridiandID))
	if s != nil {
		cfg = tlsconfig.MTLSClientConfig(s, m.bundles, tlsconfig.AuthorizeID(meridiandID))
	}
	return h.conn(grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
}

// secrets asks for secrets by name and returns what came back by name.
func secrets(c *sotw, names ...string) (map[string]*tlsv3.Secret, *discovery.DiscoveryResponse) {
	c.t.Helper()
	c.send(&discovery.DiscoveryRequest{TypeUrl: translate.SecretType, ResourceNames: names})
	r := c.recv()
	out := map[string]*tlsv3.Secret{}
	for _, a := range r.Resources {
		var s tlsv3.Secret
		if err := a.UnmarshalTo(&s); err != nil {
			c.t.Fatal(err)
		}
		out[s.GetName()] = &s
	}
	return out, r
}

func echoSeed(echoAddr net.Addr) func(*harness) {
	return func(h *harness) {
		a := echoAddr.(*net.TCPAddr)
		h.must(h.reg.SetCluster(registry.Cluster{Name: "c1", Region: "r1"}))
		_, err := h.reg.Apply("c1",
			registry.PutService(&registry.Service{Namespace: "shop", Name: "echo", Ports: []registry.ServicePort{{Port: 7000, Protocol: registry.ProtocolTCP}}}),
			registry.PutEndpoint(&registry.Endpoint{Service: registry.ServiceKey{Namespace: "shop", Name: "echo"}, ID: "echo-0",
				Addresses: []string{a.IP.String()}, Port: uint32(a.Port), ServiceAccount: "echo", Locality: registry.Locality{Region: "r1", Zone: "z1"}}),
		)
		h.must(err)
	}
}

// TestSDSSecretsGiveMTLS: two workloads without any proxy — a client and
// an echo server, plain crypto/tls — each attested by the SVID it joined
// with, get their own SVID and the trust bundle over SDS on the ADS
// stream, and do mutual TLS with them: the client checks the server's
// SPIFFE ID against the peers its cluster names and sends the cluster's
// SNI, the server requires a client SVID. Neither receives the other's
// key; a stream without a client certificate gets no secrets and no mTLS;
// a node claiming another identity than the one attested is refused; a
// rotation pushes the new SVID.
func TestSDSSecretsGiveMTLS(t *testing.T) {
	m := newMeshTrust(t, "mesh.test")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := tlsHarness(t, m, echoSeed(lis.Addr()))
	echoID, clientID := spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/echo"), spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/client")

	// The echo workload's stream: its SVID and the bundle.
	echoStream := h.sotwVia(dialAs(h, m, m.mint(t, "shop", "echo")), nodeOf(t, "echo-0", map[string]any{"namespace": "shop", "service_account": "echo"}, nil))
	got, _ := secrets(echoStream, echoID.String(), sds.BundleSecretName, clientID.String())
	if len(got) != 2 || got[echoID.String()] == nil || got[sds.BundleSecretName] == nil {
		t.Fatalf("echo got secrets %v, want its SVID and ROOTCA only", slices.Sorted(maps.Keys(got)))
	}
	echoSVID, err := sds.ParseSVIDSecret(got[echoID.String()])
	if err != nil {
		t.Fatal(err)
	}
	echoBundles, err := sds.ParseBundleSecret(got[sds.BundleSecretName])
	if err != nil {
		t.Fatal(err)
	}
	if echoSVID.ID != echoID {
		t.Fatalf("echo's SVID is %s", echoSVID.ID)
	}

	// The client's stream (no namespace or service account in its node:
	// both come from the attested identity): its secrets, and its cluster.
	client := h.sotwVia(dialAs(h, m, m.mint(t, "shop", "client")), nodeOf(t, "client-0", nil, nil))
	client.send(&discovery.DiscoveryRequest{TypeUrl: translate.ClusterType})
	cds := client.recv()
	var upstream *tlsv3.UpstreamTlsContext
	for _, a := range cds.Resources {
		var c cluster.Cluster
		h.must(a.UnmarshalTo(&c))
		if c.GetName() == translate.ClusterName(7000, "echo.shop.svc.cluster.local") {
			upstream = &tlsv3.UpstreamTlsContext{}
			h.must(c.GetTransportSocket().GetTypedConfig().UnmarshalTo(upstream))
		}
	}
	if upstream == nil {
		t.Fatal("the client's echo cluster carries no mTLS")
	}
	certName := upstream.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0].GetName()
	caName := upstream.GetCommonTlsContext().GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName()
	var peers []spiffeid.ID
	for _, san := range upstream.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
		peers = append(peers, spiffeid.RequireFromString(san.GetMatcher().GetExact()))
	}
	if certName != clientID.String() || caName != sds.BundleSecretName || !slices.Equal(peers, []spiffeid.ID{echoID}) {
		t.Fatalf("client cluster TLS: certificate %q, validation %q, peers %v", certName, caName, peers)
	}
	got, resp := secrets(client, certName, caName, echoID.String())
	client.ack(resp, certName, caName, echoID.String())
	if len(got) != 2 || got[echoID.String()] != nil {
		t.Fatalf("client got secrets %v, want its own two (never echo's key)", slices.Sorted(maps.Keys(got)))
	}
	clientSVID, err := sds.ParseSVIDSecret(got[certName])
	if err != nil {
		t.Fatal(err)
	}
	clientBundles, err := sds.ParseBundleSecret(got[caName])
	if err != nil {
		t.Fatal(err)
	}

	// Mutual TLS between the two, with nothing but what SDS delivered.
	served := make(chan spiffeid.ID, 1)
	go func() {
		c, err := tls.NewListener(lis, mtls.ServerTLS(echoSVID, echoBundles)).Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if tc.Handshake() != nil {
			return
		}
		id, _ := x509svid.IDFromCert(tc.ConnectionState().PeerCertificates[0])
		served <- id
		io.Copy(c, io.LimitReader(c, 5))
	}()
	t.Cleanup(func() { lis.Close() })
	cfg := mtls.ClientTLS(clientSVID, clientBundles, peers...)
	cfg.ServerName = upstream.GetSni()
	conn, err := tls.Dial("tcp", lis.Addr().String(), cfg)
	if err != nil {
		t.Fatalf("mTLS with the SDS secrets: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo: %q %v", buf, err)
	}
	if id := <-served; id != clientID {
		t.Fatalf("the server saw %s", id)
	}
	if sni := conn.ConnectionState().ServerName; sni != translate.EastWestSNI(7000, "echo.shop.svc.cluster.local") {
		t.Fatalf("SNI %q", sni)
	}

	// Rotation: the new SVID is pushed on the open stream.
	first := got[certName]
	h.must(m.svids.RotateAll())
	rotated := client.recv()
	if rotated.TypeUrl != translate.SecretType || len(rotated.Resources) == 0 {
		t.Fatalf("after rotation: %v", rotated)
	}
	var next *tlsv3.Secret
	for _, a := range rotated.Resources {
		s := &tlsv3.Secret{}
		h.must(a.UnmarshalTo(s))
		if s.GetName() == certName {
			next = s
		}
	}
	if next.GetName() == "" || string(next.GetTlsCertificate().GetCertificateChain().GetInlineBytes()) == string(first.GetTlsCertificate().GetCertificateChain().GetInlineBytes()) {
		t.Fatal("rotation did not push a new SVID")
	}

	// TLS without a client certificate: no identity, no secrets, no mTLS.
	anon := h.sotwVia(dialAs(h, m, nil), nodeOf(t, "anon", map[string]any{"namespace": "shop", "service_account": "echo"}, nil))
	if got, _ := secrets(anon, echoID.String(), sds.BundleSecretName); len(got) != 0 {
		t.Fatalf("an unattested stream got %v", slices.Sorted(maps.Keys(got)))
	}
	anon.send(&discovery.DiscoveryRequest{TypeUrl: translate.ClusterType})
	for _, a := range anon.recv().Resources {
		var c cluster.Cluster
		h.must(a.UnmarshalTo(&c))
		if c.GetTransportSocket() != nil {
			t.Fatalf("an unattested proxy's cluster %s names secrets it will never get", c.GetName())
		}
	}

	// Claiming another identity than the one proved.
	liar := h.sotwVia(dialAs(h, m, m.mint(t, "shop", "client")), nodeOf(t, "liar", map[string]any{"namespace": "shop", "service_account": "echo"}, nil))
	liar.send(&discovery.DiscoveryRequest{TypeUrl: translate.SecretType, ResourceNames: []string{echoID.String()}})
	if err := liar.streamErr(); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "service_account") {
		t.Fatalf("liar: %v, want PermissionDenied naming the field", err)
	}

	// An SVID of another trust domain proves nothing here.
	other := newMeshTrust(t, "other.test")
	cfgOther := tlsconfig.MTLSClientConfig(other.mint(t, "shop", "echo"), m.bundles, tlsconfig.AuthorizeID(meridiandID))
	impostor := h.sotwVia(h.conn(grpc.WithTransportCredentials(credentials.NewTLS(cfgOther))), nodeOf(t, "impostor", nil, nil))
	impostor.send(&discovery.DiscoveryRequest{TypeUrl: translate.SecretType, ResourceNames: []string{echoID.String()}})
	if err := impostor.streamErr(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("impostor: %v, want Unauthenticated", err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if a, i := h.metric("meridian_xds_rejected_streams_total", "reason", "identity"), h.metric("meridian_xds_rejected_streams_total", "reason", "attestation"); a != 1 || i != 1 {
			return fmt.Errorf("rejected streams: identity %v, attestation %v", a, i)
		}
		return nil
	})
	// And the debug view never shows a private key.
	d := debugProxy(h, "client-0", true)
	shown := d.Streams[0].Types["SDS"].Resources
	var svidJSON struct {
		TLSCertificate struct {
			CertificateChain, PrivateKey map[string]string
		} `json:"tlsCertificate"`
	}
	if len(shown) != 2 || json.Unmarshal(shown[certName], &svidJSON) != nil {
		t.Fatalf("debug view of the secrets: %s", shown)
	}
	if k := svidJSON.TLSCertificate.PrivateKey; len(k) != 1 || k["inlineString"] != server.Redacted || svidJSON.TLSCertificate.CertificateChain["inlineBytes"] == "" {
		t.Fatalf("debug view of the SVID: %s", shown[certName])
	}
}

// TestSDSKubernetesAttestation: in Kubernetes a proxy proves its identity
// with its projected service-account token in the stream's metadata,
// reviewed by a real kube-apiserver (TokenReview): it gets that service
// account's SVID; a forged token closes the stream; a token of another
// service account than the node claims is refused.
func TestSDSKubernetesAttestation(t *testing.T) {
	api := kubetest.Start(t)
	cs := api.Clientset()
	ctx := t.Context()
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := func(sa string) string {
		t.Helper()
		if _, err := cs.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := cs.CoreV1().ServiceAccounts("shop").CreateToken(ctx, sa, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{attest.DefaultAudience}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	m := newMeshTrust(t, "mesh.test")
	kube := attest.NewKube(attest.KubeConfig{Reviewer: attest.NewTokenReviewer(cs), TrustDomain: m.td})
	h := newHarness(t, harnessOpts{configure: func(c *server.Config) {
		c.Secrets = m.provider
		c.Attestor = server.Attestors(server.PeerSVID(m.bundles), server.KubeTokens(kube))
	}})
	bearer := func(tok string) *grpc.ClientConn {
		return h.conn(grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStreamInterceptor(
			func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				return streamer(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), desc, cc, method, opts...)
			}))
	}
	echoID := spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/echo")

	echoTok := token("echo")
	echo := h.sotwVia(bearer(echoTok), nodeOf(t, "echo-0", map[string]any{"namespace": "shop", "service_account": "echo"}, nil))
	got, _ := secrets(echo, echoID.String(), sds.BundleSecretName)
	s, err := sds.ParseSVIDSecret(got[echoID.String()])
	if err != nil || s.ID != echoID || got[sds.BundleSecretName] == nil {
		t.Fatalf("secrets %v: %v", slices.Sorted(maps.Keys(got)), err)
	}

	forged := h.sotwVia(bearer(echoTok[:len(echoTok)-4]+"AAAA"), nodeOf(t, "forged", nil, nil))
	forged.send(&discovery.DiscoveryRequest{TypeUrl: translate.SecretType, ResourceNames: []string{echoID.String()}})
	if err := forged.streamErr(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("forged token: %v, want Unauthenticated", err)
	}
	other := h.sotwVia(bearer(token("client")), nodeOf(t, "other", map[string]any{"namespace": "shop", "service_account": "echo"}, nil))
	other.send(&discovery.DiscoveryRequest{TypeUrl: translate.SecretType, ResourceNames: []string{echoID.String()}})
	if err := other.streamErr(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("another account's token: %v, want PermissionDenied", err)
	}
}

// selfSigned returns a PEM certificate and key for a name.
func selfSigned(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := ca.MarshalPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), kb
}

// TestGatewayCredentialsOverSDS: an ingress gateway's HTTPS listener
// names a credential; the gateway, attested as an identity of the
// Gateway's namespace, receives it over SDS from the credential files and
// terminates TLS with it. A proxy of another namespace never receives it,
// and a credential that is not a certificate is not published (it would be
// NACKed) but logged.
func TestGatewayCredentialsOverSDS(t *testing.T) {
	m := newMeshTrust(t, "mesh.test")
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t, "shop.example.com")
	for name, files := range map[string]map[string][]byte{
		"shop-cert": {"tls.crt": certPEM, "tls.key": keyPEM},
		"broken":    {"tls.crt": []byte("not a certificate"), "tls.key": keyPEM},
	} {
		h := filepath.Join(dir, "gateways", name)
		if err := os.MkdirAll(h, 0o700); err != nil {
			t.Fatal(err)
		}
		for f, b := range files {
			if err := os.WriteFile(filepath.Join(h, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	objs, err := v1alpha1.Decode([]byte(`apiVersion: meridian.io/v1alpha1
kind: Gateway
metadata: {name: public, namespace: gateways}
spec:
  type: ingress
  selector: {app: edge}
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hosts: [shop.example.com]
    tls: {mode: simple, credentialName: shop-cert}
  - name: broken
    port: 443
    protocol: HTTPS
    hosts: [broken.example.com]
    tls: {mode: simple, credentialName: broken}
`))
	if err != nil {
		t.Fatal(err)
	}
	own := m.mint(t, "meridian-system", "meridiand")
	cfg := tlsconfig.TLSServerConfig(own)
	cfg.ClientAuth = tls.RequestClientCert
	h := newHarness(t, harnessOpts{
		grpcOpts: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(cfg))},
		configure: func(c *server.Config) {
			c.Secrets, c.Attestor, c.Credentials, c.Policies = m.provider, server.PeerSVID(m.bundles), server.FileCredentials(dir), objs
		},
	})
	gwNode := map[string]any{"mode": "ingress", "labels": map[string]any{"app": "edge"}}
	gw := h.sotwVia(dialAs(h, m, m.mint(t, "gateways", "edge")), nodeOf(t, "edge-0", gwNode, nil))
	got, _ := secrets(gw, "gateways/shop-cert", "gateways/broken")
	sec := got["gateways/shop-cert"]
	if len(got) != 1 || sec == nil {
		t.Fatalf("gateway got %v, want the valid credential only", slices.Sorted(maps.Keys(got)))
	}
	pair, err := tls.X509KeyPair(sec.GetTlsCertificate().GetCertificateChain().GetInlineBytes(), sec.GetTlsCertificate().GetPrivateKey().GetInlineBytes())
	if err != nil {
		t.Fatal(err)
	}
	// Terminate TLS with it; a client that trusts the given certificate
	// connects.
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		if c, err := lis.Accept(); err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	conn, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "shop.example.com"})
	if err != nil {
		t.Fatalf("TLS with the credential from SDS: %v", err)
	}
	conn.Close()
	if l := h.logs.String(); !contains(l, "credential gateways/broken") {
		t.Errorf("the broken credential is not logged:\n%s", l)
	}

	other := h.sotwVia(dialAs(h, m, m.mint(t, "shop", "edge")), nodeOf(t, "edge-1", gwNode, nil))
	if got, _ := secrets(other, "gateways/shop-cert"); len(got) != 0 {
		t.Fatalf("a gateway of another namespace got %v", slices.Sorted(maps.Keys(got)))
	}
}

// TestSettingsAndCredentialNames: a misspelt outbound traffic policy is
// refused naming the field; credential names that are not DNS names never
// reach the file system.
func TestSettingsAndCredentialNames(t *testing.T) {
	s := server.Settings{OutboundTrafficPolicy: "registry-only"}
	if errs := s.Validate(field.NewPath("xds")); len(errs) != 1 || !strings.Contains(errs[0].Error(), `xds.outboundTrafficPolicy: Unsupported value: "registry-only"`) {
		t.Fatalf("errors %v", errs)
	}
	var cfg server.Config
	server.Settings{OutboundTrafficPolicy: translate.RegistryOnly, CredentialsDir: t.TempDir()}.Apply(&cfg)
	if !cfg.RegistryOnly || cfg.Credentials == nil {
		t.Fatalf("applied: %+v", cfg)
	}
	for _, name := range []string{"../../etc", "a/b", ""} {
		if _, _, _, err := cfg.Credentials.Credential("gateways", name); err == nil || !strings.Contains(err.Error(), "credential gateways/"+name) {
			t.Errorf("credential %q: %v", name, err)
		}
	}
	if _, _, _, err := cfg.Credentials.Credential("gateways", "missing"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing credential: %v", err)
	}
}
