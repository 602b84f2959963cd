package casvc_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meridian-mesh/meridian/internal/kubetest"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/attest"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/casvc"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
	"github.com/meridian-mesh/meridian/trust/member"
	"github.com/meridian-mesh/meridian/trust/svid"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

var td = trusttest.TD

// rootHolder is cluster "hub": it holds the root, signs SVIDs and
// intermediates, and serves the CA service over TLS with its member SVID.
type rootHolder struct {
	*trusttest.CA
	url     string
	bundles *bundle.Source
	tokens  *attest.JoinTokens
	svids   *svid.Manager
}

func newRootHolder(t *testing.T, kube *attest.Kube, withRoot bool) *rootHolder {
	c := trusttest.NewCA(t, td, "hub")
	b := trusttest.Bundle(c.Root)
	b.SetSequenceNumber(1)
	h := &rootHolder{CA: c, bundles: bundle.NewSource(b)}
	h.tokens = attest.NewJoinTokens(attest.JoinTokensConfig{Client: trusttest.Etcd(t), Prefix: "/meridian/trust", Registerer: c.Registry})
	h.svids = svid.NewManager(svid.ManagerConfig{Minter: c.Authority})
	cfg := casvc.Config{Authority: c.Authority, Bundles: h.bundles, JoinTokens: h.tokens, Kube: kube, Logger: trusttest.Logger(), Registerer: c.Registry}
	if withRoot {
		cfg.Root = c.Root
	}
	srv, err := casvc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hubID, _ := member.ID(td, "hub")
	l, err := tls.Listen("tcp", "127.0.0.1:0", casvc.ServerTLS(h.svids.Source(hubID)))
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	h.url = "https://" + l.Addr().String()
	return h
}

func (h *rootHolder) client(src *svid.Rotator) *casvc.Client {
	var s x509svidSource
	if src != nil {
		s = src
	}
	return casvc.NewClient(h.url, td, casvc.ClientTLS(h.bundles, td, s))
}

type x509svidSource = interface {
	GetX509SVID() (*x509svid.SVID, error)
}

func (h *rootHolder) joinToken(t *testing.T, id string) string {
	t.Helper()
	tok, _, err := h.tokens.Create(context.Background(), spiffeid.RequireFromString(id), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func wantRefusal(t *testing.T, err error, reason string) {
	t.Helper()
	r, ok := errors.AsType[*trust.RefusedError](err)
	if !ok || r.Reason != reason {
		t.Fatalf("got %v, want refusal %q", err, reason)
	}
}

func runRotator(t *testing.T, r *svid.Rotator) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	select {
	case <-r.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("no SVID after 10s")
	}
}

// A VM outside Kubernetes: its join token buys the first SVID, renewals
// authenticate with the current SVID, at half life.
func TestJoinTokenSVIDAndRenewal(t *testing.T) {
	h := newRootHolder(t, nil, false)
	id := "spiffe://mesh.test/ns/vm/sa/billing"
	var rot *svid.Rotator
	fetch := &casvc.Fetcher{Token: casvc.Once(h.joinToken(t, id)), TTL: 2 * time.Second}
	rot = svid.NewRotator(svid.RotatorConfig{Fetcher: fetch, Logger: trusttest.Logger()})
	fetch.Client = h.client(rot)
	changed, cancel := rot.Subscribe()
	defer cancel()
	runRotator(t, rot)
	recv(t, changed)
	first, _ := rot.GetX509SVID()
	if first.ID.String() != id || len(first.Certificates) != 2 {
		t.Fatalf("SVID %s with %d certificates", first.ID, len(first.Certificates))
	}
	if _, _, err := x509svid.Verify(first.Certificates, rot.Bundles()); err != nil {
		t.Fatal(err)
	}
	recv(t, changed) // renewed at half life, without a token
	second, _ := rot.GetX509SVID()
	if second.Certificates[0].SerialNumber.Cmp(first.Certificates[0].SerialNumber) == 0 || second.ID != first.ID {
		t.Fatal("not renewed")
	}
	if second.PrivateKey == first.PrivateKey {
		t.Fatal("renewal reused the key")
	}
}

func TestSVIDRefusals(t *testing.T) {
	ctx := context.Background()
	h := newRootHolder(t, nil, true)
	cli := h.client(nil)
	key, _ := ca.GenerateKey("")
	csr := trusttest.CSR(t, key, nil)
	vm := "spiffe://mesh.test/ns/vm/sa/billing"

	tok := h.joinToken(t, vm)
	if _, _, err := cli.SignSVID(ctx, casvc.SVIDRequest{CSR: csr, Token: tok}); err != nil {
		t.Fatal(err)
	}
	_, _, err := cli.SignSVID(ctx, casvc.SVIDRequest{CSR: csr, Token: tok})
	wantRefusal(t, err, attest.ReasonReplayed)
	_, _, err = cli.SignSVID(ctx, casvc.SVIDRequest{CSR: csr, Token: "mjt1." + strings.Repeat("x", 43)})
	wantRefusal(t, err, attest.ReasonForged)
	_, _, err = cli.SignSVID(ctx, casvc.SVIDRequest{CSR: csr})
	wantRefusal(t, err, "no_attestor")
	_, _, err = cli.SignSVID(ctx, casvc.SVIDRequest{CSR: csr, Token: "eyJhbGciOiJSUzI1NiJ9.e30.sig"})
	wantRefusal(t, err, "no_attestor") // this cluster has no Kubernetes attestor

	// The CSR is checked after attestation.
	_, _, err = cli.SignSVID(ctx, casvc.SVIDRequest{CSR: []byte("junk"), Token: h.joinToken(t, vm)})
	wantRefusal(t, err, ca.ReasonMalformed)
	caCSR := trusttest.CSR(t, key, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Value: []byte{0x30, 0x03, 0x01, 0x01, 0xff}}}})
	_, _, err = cli.SignSVID(ctx, casvc.SVIDRequest{CSR: caCSR, Token: h.joinToken(t, vm)})
	wantRefusal(t, err, ca.ReasonCA)
	_, _, err = cli.SignSVID(ctx, casvc.SVIDRequest{CSR: trusttest.CSR(t, key, &x509.CertificateRequest{DNSNames: []string{"x"}}), Token: h.joinToken(t, vm)})
	wantRefusal(t, err, ca.ReasonExtraSAN)
	_, _, err = cli.SignSVID(ctx, casvc.SVIDRequest{CSR: trusttest.CSR(t, key, nil, "spiffe://mesh.test/ns/vm/sa/admin"), Token: h.joinToken(t, vm)})
	wantRefusal(t, err, ca.ReasonIdentity)
	// A token bound to a cluster does not buy a workload SVID.
	_, _, err = cli.SignSVID(ctx, casvc.SVIDRequest{CSR: csr, Token: h.joinToken(t, "spiffe://mesh.test/meridian/cluster/x")})
	wantRefusal(t, err, ca.ReasonIdentity)

	// Bad HTTP input.
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: casvc.ClientTLS(h.bundles, td, nil)}}
	for name, tc := range map[string]struct {
		body []byte
		code int
	}{
		"not JSON":      {[]byte("{"), http.StatusBadRequest},
		"unknown field": {[]byte(`{"csr":"","token":"x","admin":true}`), http.StatusBadRequest},
		"negative TTL":  {[]byte(`{"ttlSeconds":-1}`), http.StatusBadRequest},
		"oversized":     {append(append([]byte(`{"token":"`), bytes.Repeat([]byte("a"), casvc.MaxRequestSize)...), `"}`...), http.StatusRequestEntityTooLarge},
	} {
		resp, err := httpc.Post(h.url+casvc.PathSVID, "application/json", bytes.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		var e casvc.ErrorResponse
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tc.code || e.Error == "" {
			t.Errorf("%s: %d %+v, want %d", name, resp.StatusCode, e, tc.code)
		}
	}
	if n := trusttest.Count(t, h.Registry, "meridian_trust_casvc_requests_total", "path", casvc.PathSVID, "code", "403"); n != 9 {
		t.Errorf("%v refusals counted, want 9", n)
	}
	if n := trusttest.Count(t, h.Registry, "meridian_trust_csr_refused_total"); n != 4 {
		t.Errorf("%v CSR refusals counted, want 4", n)
	}
	if n := trusttest.Count(t, h.Registry, "meridian_trust_attestation_refused_total", "method", "join_token"); n != 2 {
		t.Errorf("%v join-token refusals counted, want 2", n)
	}
}

// A new cluster joins: it pins the root, redeems a join token bound to its
// cluster ID for an intermediate, and later renews that intermediate with
// its member certificate.
func TestIntermediate(t *testing.T) {
	ctx := context.Background()
	h := newRootHolder(t, nil, true)
	pin := bundle.KeyID(h.Root.Certificate())

	if _, err := casvc.FetchPinnedBundle(ctx, h.url, td, strings.Repeat("0", 64)); err == nil {
		t.Fatal("accepted a bundle without the pinned root")
	}
	b, err := casvc.FetchPinnedBundle(ctx, h.url, td, pin)
	if err != nil {
		t.Fatal(err)
	}
	bundles := bundle.NewSource(b)
	key, _ := ca.GenerateKey("")
	cli := casvc.NewClient(h.url, td, casvc.ClientTLS(bundles, td, nil))
	chain, _, err := cli.RequestIntermediate(ctx, casvc.IntermediateRequest{CSR: trusttest.CSR(t, key, nil), Token: h.joinToken(t, "spiffe://mesh.test/meridian/cluster/edge")})
	if err != nil {
		t.Fatal(err)
	}
	edge, err := ca.NewAuthority(ca.AuthorityConfig{TrustDomain: td, Cluster: "edge", Chain: chain, Key: key})
	if err != nil {
		t.Fatalf("the intermediate does not make an authority: %v", err)
	}

	// Renewal with the member certificate, no token.
	mgr := svid.NewManager(svid.ManagerConfig{Minter: edge})
	edgeID, _ := member.ID(td, "edge")
	mcli := casvc.NewClient(h.url, td, casvc.MemberTLS(mgr.Source(edgeID), bundles, td))
	key2, _ := ca.GenerateKey("")
	chain2, _, err := mcli.RequestIntermediate(ctx, casvc.IntermediateRequest{CSR: trusttest.CSR(t, key2, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if chain2[0].URIs[0].String() != edgeID.String() {
		t.Fatalf("renewed intermediate for %v", chain2[0].URIs)
	}

	// A workload's token does not buy an intermediate, nor does nothing.
	_, _, err = cli.RequestIntermediate(ctx, casvc.IntermediateRequest{CSR: trusttest.CSR(t, key, nil), Token: h.joinToken(t, "spiffe://mesh.test/ns/a/sa/b")})
	wantRefusal(t, err, ca.ReasonIdentity)
	_, _, err = cli.RequestIntermediate(ctx, casvc.IntermediateRequest{CSR: trusttest.CSR(t, key, nil)})
	wantRefusal(t, err, "no_attestor")
	// A workload SVID is not a member certificate.
	wl := spiffeid.RequireFromString("spiffe://mesh.test/ns/a/sa/b")
	wcli := casvc.NewClient(h.url, td, casvc.MemberTLS(mgr.Source(wl), bundles, td))
	_, _, err = wcli.RequestIntermediate(ctx, casvc.IntermediateRequest{CSR: trusttest.CSR(t, key, nil)})
	wantRefusal(t, err, "member")

	// Only the root holder issues intermediates.
	plain := newRootHolder(t, nil, false)
	_, _, err = plain.client(nil).RequestIntermediate(ctx, casvc.IntermediateRequest{CSR: trusttest.CSR(t, key, nil), Token: "x"})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("non-root holder: %v", err)
	}
}

// Workloads in Kubernetes, attested by their projected service-account
// tokens through a real kube-apiserver; one presenting another's token for
// its own identity is refused.
func TestServiceAccountSVID(t *testing.T) {
	ctx := context.Background()
	api := kubetest.Shared(t)
	cs := api.Clientset()
	ns := "casvc"
	cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	token := func(sa string) string {
		cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{attest.DefaultAudience}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	reg := prometheus.NewRegistry()
	kube := attest.NewKube(attest.KubeConfig{Reviewer: attest.NewTokenReviewer(cs), TrustDomain: td, Registerer: reg})
	h := newRootHolder(t, kube, false)
	cli := h.client(nil)
	key, _ := ca.GenerateKey("")

	webTok, dbTok := token("web"), token("db")
	chain, _, err := cli.SignSVID(ctx, casvc.SVIDRequest{CSR: trusttest.CSR(t, key, nil, "spiffe://mesh.test/ns/casvc/sa/web"), Token: webTok})
	if err != nil {
		t.Fatal(err)
	}
	if got := chain[0].URIs[0].String(); got != "spiffe://mesh.test/ns/casvc/sa/web" {
		t.Fatalf("SVID for %s", got)
	}
	// web presents db's token, asking for its own identity.
	_, _, err = cli.SignSVID(ctx, casvc.SVIDRequest{CSR: trusttest.CSR(t, key, nil, "spiffe://mesh.test/ns/casvc/sa/web"), Token: dbTok})
	wantRefusal(t, err, ca.ReasonIdentity)
	if !strings.Contains(err.Error(), "attested as spiffe://mesh.test/ns/casvc/sa/db") {
		t.Fatalf("unclear: %v", err)
	}

	// A sidecar reading its token file, through the Rotator.
	path := t.TempDir() + "/token"
	if err := writeFile(path, webTok); err != nil {
		t.Fatal(err)
	}
	rot := svid.NewRotator(svid.RotatorConfig{Fetcher: casvc.Fetcher{Client: cli, Token: casvc.TokenFile(path)}, Logger: trusttest.Logger()})
	runRotator(t, rot)
	testutil.Eventually(t, time.Second, func() error {
		s, err := rot.GetX509SVID()
		if err != nil || s.ID.String() != "spiffe://mesh.test/ns/casvc/sa/web" {
			return errors.New("no SVID for web")
		}
		return nil
	})
}
