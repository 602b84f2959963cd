// Package trusttest builds the test fixtures the trust packages share: a
// root, a cluster authority, bundles, CSRs, and a real embedded etcd. Tests
// only.
package trusttest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"io"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meridian-mesh/meridian/store"
	"github.com/meridian-mesh/meridian/trust/ca"
)

// TD is the trust domain of most tests.
var TD = spiffeid.RequireTrustDomainFromString("mesh.test")

// CA is a root and one cluster's authority under it.
type CA struct {
	Root      *ca.Root
	Authority *ca.Authority
	Key       crypto.Signer // the intermediate's key
	Registry  *prometheus.Registry
}

// NewCA makes a root for td and an authority for cluster, with a fresh
// metrics registry.
func NewCA(t testing.TB, td spiffeid.TrustDomain, cluster string) *CA {
	t.Helper()
	root, err := ca.NewRoot(ca.RootOptions{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	c := &CA{Root: root, Registry: prometheus.NewRegistry()}
	c.Authority, c.Key = NewAuthority(t, root, cluster, c.Registry)
	return c
}

// NewAuthority issues an intermediate for cluster under root and wraps it in
// an Authority.
func NewAuthority(t testing.TB, root *ca.Root, cluster string, reg prometheus.Registerer) (*ca.Authority, crypto.Signer) {
	t.Helper()
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := root.IssueIntermediate(ca.IntermediateRequest{Cluster: cluster, PublicKey: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := ca.NewAuthority(ca.AuthorityConfig{
		TrustDomain: root.TrustDomain(), Cluster: cluster, Chain: []*x509.Certificate{ic}, Key: key, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a, key
}

// Bundle is the SPIFFE bundle of roots.
func Bundle(roots ...*ca.Root) *spiffebundle.Bundle {
	b := spiffebundle.New(roots[0].TrustDomain())
	for _, r := range roots {
		b.AddX509Authority(r.Certificate())
	}
	return b
}

// CSR builds a DER CSR signed by key with the given URI SANs (and tmpl's
// other fields when tmpl is not nil).
func CSR(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest, uris ...string) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// Etcd starts a real embedded etcd in a temporary directory and returns its
// client; it stops with the test.
func Etcd(t testing.TB) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := store.Open(ctx, store.Config{DataDir: t.TempDir()}, Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.Client
}

// Logger discards; tests assert on errors and metrics, not log lines.
func Logger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Count returns the value of the counter or gauge name whose labels include
// all of labels (pairs of name, value), 0 when it was never set.
func Count(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.Metric {
			have := map[string]string{}
			for _, l := range m.Label {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() // whichever it is
		}
	}
	return sum
}
