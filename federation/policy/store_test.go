package policy_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/store"
)

var ctx = context.Background()

func key(name string) policy.Key {
	return policy.Key{Kind: "FailoverPolicy", Namespace: "shop", Name: name}
}

// fakeClock is a settable wall clock, so tests decide which write is later.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func memStore(t *testing.T, node string, now func() time.Time) *policy.Store {
	t.Helper()
	s, err := policy.Open(ctx, policy.Options{Node: node, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// sync makes dst catch up with src the way federation does it.
func syncFrom(t *testing.T, dst, src *policy.Store) policy.ApplyResult {
	t.Helper()
	res, err := dst.Apply(ctx, src.Changes(dst.Vector(), false))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func spec(t *testing.T, s *policy.Store, k policy.Key) string {
	t.Helper()
	r, ok := s.Snapshot().Get(k)
	if !ok {
		return "<absent>"
	}
	return string(r.Spec)
}

func TestClockOrdersAndObserves(t *testing.T) {
	fc := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	c := policy.NewClock(fc.now)
	a := c.Now()
	b := c.Now()
	if b <= a || b.Logical() != 1 || !b.Wall().Equal(fc.t) {
		t.Fatalf("same millisecond: %v then %v", a, b)
	}
	// A stamp from a peer whose clock runs ahead: later local stamps follow it.
	remote := policy.MakeTimestamp(fc.t.Add(time.Minute), 7)
	c.Observe(remote)
	if n := c.Now(); n <= remote {
		t.Fatalf("after observing %v, Now gave %v", remote, n)
	}
	// The wall clock going back does not make stamps go back.
	fc.add(-time.Hour)
	if n := c.Now(); n <= remote {
		t.Fatalf("clock went back: %v", n)
	}
}

func TestPutGetDeleteValidate(t *testing.T) {
	s := memStore(t, "c1/r0", nil)
	r, err := s.Put(ctx, key("web"), []byte(`{"to":["eu-west-1"]}`))
	if err != nil || r.Origin != "c1/r0" || r.Stamp == 0 {
		t.Fatalf("put: %+v, %v", r, err)
	}
	if got := spec(t, s, key("web")); got != `{"to":["eu-west-1"]}` {
		t.Fatalf("get: %s", got)
	}
	if n := len(s.Snapshot().List("FailoverPolicy")); n != 1 {
		t.Fatalf("list: %d", n)
	}
	if _, err := s.Delete(ctx, key("web")); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Snapshot().Get(key("web")); ok || s.Snapshot().Tombstones() != 1 {
		t.Fatal("delete left the resource visible or no tombstone")
	}
	if _, err := s.Delete(ctx, key("web")); !errors.Is(err, policy.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	for _, tc := range []struct {
		k    policy.Key
		spec []byte
		want string
	}{
		{policy.Key{Kind: "failover", Name: "x"}, nil, "key.kind"},
		{policy.Key{Kind: "Failover", Namespace: "Bad_NS", Name: "x"}, nil, "key.namespace"},
		{policy.Key{Kind: "Failover"}, nil, "key.name: Required"},
		{key("big"), make([]byte, 300<<10), "spec: Too long"},
	} {
		_, err := s.Put(ctx, tc.k, tc.spec)
		if !errors.Is(err, policy.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("put %v: %v, want %q", tc.k, err, tc.want)
		}
	}
}

// Two members write the same key while cut off from each other; after they
// exchange changes both hold the same winner — the later stamp — whichever
// direction the exchange runs first.
func TestConcurrentWritesConvergeToOneWinner(t *testing.T) {
	fc := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	a := memStore(t, "east/r0", fc.now)
	b := memStore(t, "west/r0", fc.now)
	c := memStore(t, "north/r0", fc.now)
	if _, err := a.Put(ctx, key("web"), []byte("from-east")); err != nil {
		t.Fatal(err)
	}
	fc.add(time.Millisecond)
	if _, err := b.Put(ctx, key("web"), []byte("from-west")); err != nil {
		t.Fatal(err)
	}
	// Equal stamps: the origin breaks the tie.
	a2 := memStore(t, "east/r1", fc.now)
	b2 := memStore(t, "west/r1", fc.now)
	for _, s := range []*policy.Store{a2, b2} {
		if _, err := s.Put(ctx, key("tie"), []byte(s.Vector().Origins()[0])); err != nil {
			t.Fatal(err)
		}
	}
	syncFrom(t, c, b)
	syncFrom(t, c, a)
	syncFrom(t, a, b)
	syncFrom(t, b, a)
	syncFrom(t, a2, b2)
	syncFrom(t, b2, a2)
	for i, s := range []*policy.Store{a, b, c} {
		if got := spec(t, s, key("web")); got != "from-west" {
			t.Errorf("store %d holds %q, want the later write", i, got)
		}
	}
	if spec(t, a2, key("tie")) != "west/r1" || spec(t, b2, key("tie")) != "west/r1" {
		t.Errorf("tie: %q and %q, want the greater origin", spec(t, a2, key("tie")), spec(t, b2, key("tie")))
	}
	// In sync now: nothing more to send either way.
	if ch := a.Changes(b.Vector(), false); len(ch.Records) != 0 {
		t.Fatalf("after sync a still sends %d records", len(ch.Records))
	}
}

// A delete replicates as a tombstone and beats an older write arriving
// later; once every member has it, it is collected, and the old write
// coming back from a member that missed everything is refused.
func TestTombstonesReplicateCollectAndDoNotResurrect(t *testing.T) {
	fc := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	a := memStore(t, "a/r0", fc.now)
	b := memStore(t, "b/r0", fc.now)
	stale := memStore(t, "s/r0", fc.now)
	if _, err := a.Put(ctx, key("web"), []byte("v1")); err != nil {
		t.Fatal(err)
	}
	syncFrom(t, b, a)
	syncFrom(t, stale, a) // stale holds v1, then goes away
	fc.add(time.Second)
	if _, err := a.Delete(ctx, key("web")); err != nil {
		t.Fatal(err)
	}
	syncFrom(t, b, a)
	if spec(t, b, key("web")) != "<absent>" {
		t.Fatal("delete did not replicate")
	}
	// Both members have everything up to now: collect.
	fc.add(time.Second)
	syncFrom(t, a, b)
	syncFrom(t, b, a)
	origins := []string{"a/r0", "b/r0"}
	horizon := min(a.Coverage(origins), b.Coverage(origins))
	for _, s := range []*policy.Store{a, b} {
		if n, err := s.Collect(ctx, horizon); err != nil || n != 1 {
			t.Fatalf("collect: %d, %v", n, err)
		}
		if s.Snapshot().Tombstones() != 0 {
			t.Fatal("tombstone kept")
		}
	}
	// Vectors alone keep a's own old write from coming back (a's entry for
	// itself covers it); offered without a vector — as to a member that
	// lost its vector — the old v1 is refused, not resurrected.
	if n := len(stale.Changes(a.Vector(), false).Records); n != 0 {
		t.Fatalf("stale member sends %d records a already covers", n)
	}
	res, err := a.Apply(ctx, stale.Changes(nil, false))
	if err != nil {
		t.Fatal(err)
	}
	if res.Rejected != 1 || spec(t, a, key("web")) != "<absent>" {
		t.Fatalf("resurrection: %+v, a holds %q", res, spec(t, a, key("web")))
	}
	// The stale member itself asks for a full copy (its vector is older than
	// a's horizon) and drops the deleted record.
	if stale.Coverage(origins) >= a.Horizon() {
		t.Fatal("stale member looks up to date")
	}
	full, err := stale.Apply(ctx, a.Changes(stale.Vector(), true))
	if err != nil || full.Dropped != 1 || spec(t, stale, key("web")) != "<absent>" {
		t.Fatalf("full resync: %+v, %v, holds %q", full, err, spec(t, stale, key("web")))
	}
}

func TestApplyRejectsInvalidRecordsOneByOne(t *testing.T) {
	s := memStore(t, "a/r0", nil)
	good := policy.Resource{Key: key("ok"), Spec: []byte("x"), Stamp: 42 << 16, Origin: "b/r0"}
	res, err := s.Apply(ctx, policy.Sync{Records: []policy.Resource{
		good,
		{Key: policy.Key{Kind: "lower", Name: "x"}, Stamp: 1, Origin: "b/r0"},
		{Key: key("nostamp"), Origin: "b/r0"},
		{Key: key("noorigin"), Stamp: 5},
		{Key: key("tomb"), Stamp: 5, Origin: "b/r0", Deleted: true, Spec: []byte("x")},
	}})
	if err != nil || res.Applied != 1 || res.Rejected != 4 {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	if spec(t, s, key("ok")) != "x" {
		t.Fatal("valid record not applied")
	}
}

func TestSubscriptionCoalesces(t *testing.T) {
	s := memStore(t, "a/r0", nil)
	sub := s.Subscribe()
	defer sub.Close()
	if _, d, err := sub.Next(ctx); err != nil || !d.Full {
		t.Fatalf("first delivery: %+v, %v", d, err)
	}
	for i := range 50 {
		if _, err := s.Put(ctx, key(fmt.Sprintf("p%d", i%5)), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	snap, d, err := sub.Next(ctx)
	if err != nil || len(d.Keys) != 5 || snap.Len() != 5 {
		t.Fatalf("coalesced: %d keys, %d resources, %v", len(d.Keys), snap.Len(), err)
	}
	if r, _ := snap.Get(key("p4")); r.Spec[0] != 49 {
		t.Fatal("snapshot older than the delta")
	}
}

func openEtcd(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(ctx, store.Config{DataDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Two replicas of one cluster share an etcd: each sees the other's writes,
// concurrent writes to one key both land (the later one wins), and a
// restarted replica loads everything back.
func TestReplicasShareEtcd(t *testing.T) {
	st := openEtcd(t)
	open := func(node string) *policy.Store {
		s, err := policy.Open(ctx, policy.Options{Node: node, Client: st.Client})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	r0, r1 := open("c/r0"), open("c/r1")
	if _, err := r0.Put(ctx, key("web"), []byte("one")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := spec(t, r1, key("web")); got != "one" {
			return fmt.Errorf("r1 holds %q", got)
		}
		return nil
	})
	var wg sync.WaitGroup
	for i, s := range []*policy.Store{r0, r1} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				if _, err := s.Put(ctx, key("hot"), fmt.Appendf(nil, "%d-%d", i, j)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	testutil.Eventually(t, 10*time.Second, func() error {
		a, _ := r0.Snapshot().Get(key("hot"))
		b, _ := r1.Snapshot().Get(key("hot"))
		if a == nil || b == nil || string(a.Spec) != string(b.Spec) {
			return fmt.Errorf("replicas disagree: %v vs %v", a, b)
		}
		return nil
	})
	if _, err := r1.Delete(ctx, key("web")); err != nil {
		t.Fatal(err)
	}
	r0.Close()
	again := open("c/r0")
	if spec(t, again, key("web")) != "<absent>" || again.Snapshot().Tombstones() != 1 || spec(t, again, key("hot")) == "<absent>" {
		t.Fatalf("after restart: web %q, %d tombstones", spec(t, again, key("web")), again.Snapshot().Tombstones())
	}
	// Collection on one replica removes the tombstone from etcd, and the
	// other follows.
	if n, err := again.Collect(ctx, again.Vector()["c/r0"]); err != nil || n != 1 {
		t.Fatalf("collect: %d, %v", n, err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := r1.Snapshot().Tombstones(); n != 0 {
			return fmt.Errorf("r1 still has %d tombstones", n)
		}
		return nil
	})
	// Later writes stamp after everything loaded.
	loaded, _ := again.Snapshot().Get(key("hot"))
	if r, err := again.Put(ctx, key("hot"), []byte("after")); err != nil || r.Stamp <= loaded.Stamp {
		t.Fatalf("stamp after restart %v, loaded %v, %v", r.Stamp, loaded.Stamp, err)
	}
}
