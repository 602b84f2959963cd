package upstream

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// maxResolverEntries bounds the cache; beyond it the cache starts over.
const maxResolverEntries = 4096

// Resolver resolves endpoint names (STRICT_DNS and LOGICAL_DNS clusters,
// and EDS endpoints published as names, such as east-west gateways behind
// cloud load balancers) and caches answers for the cluster's refresh
// interval, so names are re-resolved as they change but not on every
// connection. A failed refresh keeps serving the last answer: a DNS
// outage must not take down connections to addresses that still work.
type Resolver struct {
	// Lookup resolves a name; default net.DefaultResolver.LookupNetIP.
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	// Now is the clock; default time.Now.
	Now func() time.Time

	mu    sync.Mutex
	cache map[string]resolved
	group singleflight.Group
}

type resolved struct {
	addrs []netip.Addr
	at    time.Time
}

// NewResolver returns a resolver using the system's.
func NewResolver() *Resolver {
	return &Resolver{Lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}}
}

// Resolve returns the addresses of host, from the cache when the answer
// is younger than refresh.
func (r *Resolver) Resolve(ctx context.Context, host string, refresh time.Duration) ([]netip.Addr, error) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	r.mu.Lock()
	e, ok := r.cache[host]
	r.mu.Unlock()
	if ok && now().Sub(e.at) < refresh {
		return e.addrs, nil
	}
	v, err, _ := r.group.Do(host, func() (any, error) {
		addrs, err := r.Lookup(ctx, host)
		if err == nil && len(addrs) == 0 {
			err = fmt.Errorf("no addresses")
		}
		if err != nil {
			return nil, err
		}
		for i, a := range addrs {
			addrs[i] = a.Unmap()
		}
		r.mu.Lock()
		if r.cache == nil || len(r.cache) >= maxResolverEntries {
			r.cache = map[string]resolved{}
		}
		r.cache[host] = resolved{addrs: addrs, at: now()}
		r.mu.Unlock()
		return addrs, nil
	})
	if err != nil {
		if ok {
			return e.addrs, nil
		}
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	return v.([]netip.Addr), nil
}
