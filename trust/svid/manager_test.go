package svid_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
	"github.com/meridian-mesh/meridian/trust/svid"
)

var (
	td  = trusttest.TD
	web = spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/web")
	db  = spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/db")
)

// flakyMinter fails while fail is set.
type flakyMinter struct {
	svid.Minter
	fail atomic.Bool
}

func (f *flakyMinter) Mint(id spiffeid.ID, ttl time.Duration) (*x509svid.SVID, error) {
	if f.fail.Load() {
		return nil, errors.New("CA unavailable")
	}
	return f.Minter.Mint(id, ttl)
}

func run(t *testing.T, m *svid.Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func TestManagerIssuesAndRotatesAtHalfLife(t *testing.T) {
	c := trusttest.NewCA(t, td, "a")
	const ttl = 2 * time.Second
	m := svid.NewManager(svid.ManagerConfig{Minter: c.Authority, TTL: ttl, Registerer: c.Registry, Logger: trusttest.Logger()})
	changed, cancel := m.Subscribe()
	defer cancel()
	run(t, m)

	issued := time.Now()
	first, err := m.Get(web)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := m.Get(web); again != first {
		t.Fatal("second Get issued again")
	}
	if other, _ := m.Get(db); other.ID != db {
		t.Fatal("wrong identity")
	}
	leaf := first.Certificates[0]
	if len(first.Certificates) != 2 {
		t.Fatal("chain not delivered in full")
	}

	<-changed
	renewedAt := time.Now()
	next, _ := m.Get(web)
	if next.Certificates[0].SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatal("notified but not renewed")
	}
	// Half-way between issue and expiry (X.509 times have whole seconds, so
	// the life is a little under ttl), and well before expiry.
	half := svid.HalfLife(issued, leaf.NotAfter)
	if renewedAt.Before(half.Add(-50*time.Millisecond)) || !renewedAt.Before(leaf.NotAfter.Add(-200*time.Millisecond)) {
		t.Fatalf("renewed %v after issue; half life is %v, expiry %v", renewedAt.Sub(issued), half.Sub(issued), leaf.NotAfter.Sub(issued))
	}
	if !next.Certificates[0].NotAfter.After(leaf.NotAfter) {
		t.Fatal("renewal does not extend the life")
	}
	if n := trusttest.Count(t, c.Registry, "meridian_trust_svid_rotations_total"); n < 1 {
		t.Fatalf("%v rotations counted", n)
	}
}

// A CA that cannot sign leaves the current SVID in place, is retried, and
// once the SVID expires Get says so instead of handing out a dead
// certificate.
func TestManagerRenewalFailureAndExpiry(t *testing.T) {
	c := trusttest.NewCA(t, td, "a")
	f := &flakyMinter{Minter: c.Authority}
	m := svid.NewManager(svid.ManagerConfig{Minter: f, TTL: 2 * time.Second, Registerer: c.Registry, Logger: trusttest.Logger()})
	run(t, m)
	first, err := m.Get(web)
	if err != nil {
		t.Fatal(err)
	}
	f.fail.Store(true)
	testutil.Eventually(t, 3*time.Second, func() error {
		if n := trusttest.Count(t, c.Registry, "meridian_trust_svid_rotation_failures_total"); n == 0 {
			return errors.New("no failed renewal yet")
		}
		return nil
	})
	if cur, err := m.Get(web); err != nil || cur != first {
		t.Fatalf("current SVID not kept: %v", err)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		_, err := m.Get(web)
		if err == nil {
			return errors.New("expired SVID still served")
		}
		if !strings.Contains(err.Error(), "expired") {
			t.Fatalf("unclear error: %v", err)
		}
		return nil
	})
	f.fail.Store(false)
	testutil.Eventually(t, 5*time.Second, func() error {
		_, err := m.Get(web)
		return err
	})
}

func TestManagerRefusesOtherTrustDomain(t *testing.T) {
	c := trusttest.NewCA(t, td, "a")
	m := svid.NewManager(svid.ManagerConfig{Minter: c.Authority})
	if _, err := m.Get(spiffeid.RequireFromString("spiffe://other.test/ns/a/sa/b")); err == nil || !strings.Contains(err.Error(), "trust_domain") {
		t.Fatalf("got %v", err)
	}
}
