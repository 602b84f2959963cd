package bundle_test

import (
	"crypto/x509"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
)

var td = trusttest.TD

func newRoot(t testing.TB, kt ca.KeyType) *ca.Root {
	t.Helper()
	r, err := ca.NewRoot(ca.RootOptions{TrustDomain: td, KeyType: kt})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func signed(t testing.TB, b *spiffebundle.Bundle, by *ca.Root) []byte {
	t.Helper()
	data, err := bundle.Sign(b, by.Certificate(), by.Signer())
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func initial(r *ca.Root) *spiffebundle.Bundle {
	b := trusttest.Bundle(r)
	b.SetSequenceNumber(1)
	return b
}

func certs(cs ...*ca.Root) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range cs {
		out = append(out, c.Certificate())
	}
	return out
}

// A root rotation as members see it: prepare (old + new, signed by the old
// root), then retire (new only, signed by the new root).
func TestRotationUpdates(t *testing.T) {
	for _, kt := range []ca.KeyType{ca.ECDSAP256, ca.ECDSAP384, ca.RSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			r1, r2 := newRoot(t, kt), newRoot(t, kt)
			b1 := initial(r1)
			prepare := signed(t, bundle.Next(b1, certs(r2), nil), r1)
			b2, changed, err := bundle.Merge(b1, prepare)
			if err != nil || !changed || len(b2.X509Authorities()) != 2 {
				t.Fatalf("prepare: changed=%v roots=%d err=%v", changed, len(b2.X509Authorities()), err)
			}
			retire := signed(t, bundle.Next(b2, nil, certs(r1)), r2)
			b3, changed, err := bundle.Merge(b2, retire)
			if err != nil || !changed || !b3.HasX509Authority(r2.Certificate()) || b3.HasX509Authority(r1.Certificate()) {
				t.Fatalf("retire: changed=%v err=%v", changed, err)
			}
			if seq, _ := b3.SequenceNumber(); seq != 3 {
				t.Fatalf("sequence %d", seq)
			}
			// Replays of older updates change nothing.
			for _, old := range [][]byte{prepare} {
				if got, changed, err := bundle.Merge(b3, old); err == nil {
					t.Fatalf("old update signed by a retired root accepted (changed=%v)", changed)
				} else if got != b3 {
					t.Fatal("refused update changed the bundle")
				}
			}
			if _, changed, err := bundle.Merge(b3, retire); err != nil || changed {
				t.Fatalf("same update twice: changed=%v err=%v", changed, err)
			}
		})
	}
}

func TestMergeRefusals(t *testing.T) {
	r1, r2, evil := newRoot(t, ""), newRoot(t, ""), newRoot(t, "")
	b1 := initial(r1)
	good := signed(t, bundle.Next(b1, certs(r2), nil), r1)
	tampered := []byte(strings.Replace(string(good), ".", ".e", 1))
	other, _ := ca.NewRoot(ca.RootOptions{TrustDomain: spiffeid.RequireTrustDomainFromString("other.test")})
	otherB := trusttest.Bundle(other)
	otherB.SetSequenceNumber(5)
	conflict := bundle.Next(b1, certs(evil), nil) // same sequence as good, other roots
	b2, _, _ := bundle.Merge(b1, good)

	for name, tc := range map[string]struct {
		current *spiffebundle.Bundle
		data    []byte
		want    string
	}{
		"signed by an unknown root":  {b1, signed(t, bundle.Next(b1, certs(evil), nil), evil), "not a root of the current bundle"},
		"tampered":                   {b1, tampered, "bundle: "},
		"garbage":                    {b1, []byte("hello"), "bundle: decode"},
		"empty":                      {b1, nil, "bundle: decode"},
		"oversized":                  {b1, make([]byte, bundle.MaxUpdateSize+1), "exceeds"},
		"other trust domain":         {b1, signed(t, otherB, other), "update for other.test"},
		"same sequence, other roots": {b2, signed(t, conflict, r1), "already holds other roots"},
	} {
		t.Run(name, func(t *testing.T) {
			got, changed, err := bundle.Merge(tc.current, tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) || changed || got != tc.current {
				t.Fatalf("changed=%v err=%v, want %q", changed, err, tc.want)
			}
		})
	}
	noSeq := trusttest.Bundle(r1)
	if _, err := bundle.Sign(noSeq, r1.Certificate(), r1.Signer()); err == nil {
		t.Error("signed a bundle without a sequence number")
	}
}

func TestSource(t *testing.T) {
	r1, r2 := newRoot(t, ""), newRoot(t, "")
	s := bundle.NewSource(initial(r1))
	ch, cancel := s.Subscribe()
	defer cancel()

	if _, err := s.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("other.test")); err == nil {
		t.Fatal("bundle for an unknown trust domain")
	}
	s.Set(initial(r1)) // equal: no notification
	select {
	case <-ch:
		t.Fatal("notified without a change")
	default:
	}
	b := bundle.Next(initial(r1), certs(r2), nil)
	s.Set(b)
	s.Set(bundle.Next(b, nil, certs(r1))) // two changes, one notification waiting
	<-ch
	select {
	case <-ch:
		t.Fatal("changes not coalesced")
	default:
	}
	xb, err := s.GetX509BundleForTrustDomain(td)
	if err != nil || len(xb.X509Authorities()) != 1 || !xb.HasX509Authority(r2.Certificate()) {
		t.Fatalf("after retire: %v", err)
	}
	foreign := trusttest.Bundle(func() *ca.Root {
		r, _ := ca.NewRoot(ca.RootOptions{TrustDomain: spiffeid.RequireTrustDomainFromString("partner.test")})
		return r
	}())
	s.Set(foreign)
	<-ch
	if got := s.Bundles(); len(got) != 2 || got[0].TrustDomain().Name() != "mesh.test" || got[1].TrustDomain().Name() != "partner.test" {
		t.Fatalf("bundles: %v", got)
	}
	s.Remove(foreign.TrustDomain())
	<-ch
	if _, ok := s.Get(foreign.TrustDomain()); ok {
		t.Fatal("removed bundle still there")
	}
}

// FuzzMerge: no input crashes Merge or changes the bundle unless it is a
// valid update signed by a current root.
func FuzzMerge(f *testing.F) {
	r1, r2 := newRoot(f, ""), newRoot(f, "")
	b1 := initial(r1)
	f.Add(signed(f, bundle.Next(b1, certs(r2), nil), r1))
	f.Add(signed(f, bundle.Next(b1, certs(r2), nil), r2))
	f.Add([]byte("eyJhbGciOiJFUzI1NiJ9.e30.AA"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, changed, err := bundle.Merge(b1, data)
		if err != nil && (changed || got != b1) {
			t.Fatal("error but changed")
		}
		if changed {
			if seq, _ := got.SequenceNumber(); seq <= 1 {
				t.Fatalf("changed to sequence %d", seq)
			}
		}
	})
}
