package upstream_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/sidecar/upstream"
)

// TestResolverReResolves: a name is resolved, cached for the refresh
// interval, resolved again after it (a gateway's load balancer moved),
// and a failed lookup keeps the last answer.
func TestResolverReResolves(t *testing.T) {
	var mu sync.Mutex
	answer := []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	var fail bool
	lookups := 0
	now := time.Unix(1000, 0)
	r := &upstream.Resolver{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }, Lookup: func(context.Context, string) ([]netip.Addr, error) {
		mu.Lock()
		defer mu.Unlock()
		lookups++
		if fail {
			return nil, errors.New("SERVFAIL")
		}
		return append([]netip.Addr(nil), answer...), nil
	}}
	ctx := context.Background()
	const refresh = 50 * time.Millisecond
	got, err := r.Resolve(ctx, "gw.example", refresh)
	if err != nil || got[0] != answer[0] {
		t.Fatalf("first: %v %v", got, err)
	}
	if _, err := r.Resolve(ctx, "gw.example", refresh); err != nil || lookups != 1 {
		t.Fatalf("cached answer: %d lookups, %v", lookups, err)
	}
	mu.Lock()
	answer = []netip.Addr{netip.MustParseAddr("192.0.2.2")}
	now = now.Add(2 * refresh)
	mu.Unlock()
	if got, _ := r.Resolve(ctx, "gw.example", refresh); got[0] != netip.MustParseAddr("192.0.2.2") {
		t.Fatalf("after the refresh interval: %v, want the new address", got)
	}
	mu.Lock()
	fail = true
	now = now.Add(2 * refresh)
	mu.Unlock()
	if got, err := r.Resolve(ctx, "gw.example", refresh); err != nil || got[0] != netip.MustParseAddr("192.0.2.2") {
		t.Fatalf("failed refresh: %v %v, want the last answer", got, err)
	}
	if _, err := r.Resolve(ctx, "never.example", refresh); err == nil {
		t.Fatal("an unknown name with a failing resolver must fail")
	}
}
