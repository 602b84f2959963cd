package jwt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/meridian-mesh/meridian/trust"
)

// Key-set caching.
const (
	// DefaultCacheDuration is how long a fetched key set is used.
	DefaultCacheDuration = 5 * time.Minute
	// minRefresh spaces the refreshes an unknown kid triggers, so that a
	// flood of tokens with made-up kids cannot turn into a flood of
	// fetches.
	minRefresh = 30 * time.Second
	// maxJWKSSize bounds a fetched key set.
	maxJWKSSize = 1 << 20
)

// keySet is an issuer's keys: inline, or fetched from a URL and cached.
type keySet struct {
	url  string
	ttl  time.Duration
	http *http.Client
	now  func() time.Time
	// fetching is held during a fetch: concurrent callers wait for it and
	// then find the set fresh instead of fetching again.
	fetching sync.Mutex

	mu        sync.Mutex
	keys      jose.JSONWebKeySet
	fetchedAt time.Time // zero: never fetched (or inline)
	triedAt   time.Time
}

func newKeySet(jr Rule, hc *http.Client, now func() time.Time) (*keySet, error) {
	ks := &keySet{url: jr.JWKSURI, ttl: jr.cacheDuration(), http: hc, now: now}
	if jr.JWKS != "" {
		if err := json.Unmarshal([]byte(jr.JWKS), &ks.keys); err != nil {
			return nil, fmt.Errorf("inline JWKS: %w", err)
		}
		if len(ks.keys.Keys) == 0 {
			return nil, errors.New("inline JWKS has no keys")
		}
	}
	return ks, nil
}

// cacheDuration is how long a fetched key set is used.
func (jr Rule) cacheDuration() time.Duration {
	if jr.CacheDuration > 0 {
		return jr.CacheDuration
	}
	return DefaultCacheDuration
}

// find returns the key a token names, fetching (or refreshing) a remote set
// when the cache is stale or the kid unknown.
func (ks *keySet) find(ctx context.Context, kid, alg string) (jose.JSONWebKey, error) {
	if ks.url != "" {
		ks.mu.Lock()
		stale := ks.fetchedAt.IsZero() || ks.now().Sub(ks.fetchedAt) > ks.ttl
		ks.mu.Unlock()
		if stale {
			if err := ks.refresh(ctx, true); err != nil {
				return jose.JSONWebKey{}, err
			}
		}
	}
	if k, ok := ks.lookup(kid, alg); ok {
		return k, nil
	}
	if ks.url != "" {
		if err := ks.refresh(ctx, false); err == nil {
			if k, ok := ks.lookup(kid, alg); ok {
				return k, nil
			}
		}
	}
	return jose.JSONWebKey{}, trust.Refuse(ReasonUnknownKID, "no key %q in the issuer's key set", kid)
}

func (ks *keySet) lookup(kid, alg string) (jose.JSONWebKey, bool) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	cands := ks.keys.Keys
	if kid != "" {
		cands = ks.keys.Key(kid)
	} else if len(cands) != 1 {
		return jose.JSONWebKey{}, false // without a kid only a one-key set is unambiguous
	}
	for _, k := range cands {
		if k.Use != "enc" && (k.Algorithm == "" || k.Algorithm == alg) {
			return k, true
		}
	}
	return jose.JSONWebKey{}, false
}

// refresh fetches the set; unless force, at most once per minRefresh.
// Concurrent callers share one fetch. A failed fetch keeps a set fetched
// before: stale keys are better than refusing every token.
func (ks *keySet) refresh(ctx context.Context, force bool) error {
	ks.fetching.Lock()
	defer ks.fetching.Unlock()
	ks.mu.Lock()
	since, fetched := ks.now().Sub(ks.triedAt), !ks.fetchedAt.IsZero()
	fresh := fetched && ks.now().Sub(ks.fetchedAt) <= ks.ttl
	ks.mu.Unlock()
	if force && fresh || !force && since < minRefresh {
		return nil // someone else just fetched, or we may not yet
	}
	ks.mu.Lock()
	ks.triedAt = ks.now()
	ks.mu.Unlock()
	set, err := ks.get(ctx)
	if err != nil {
		if fetched {
			return nil
		}
		return trust.Refuse(ReasonJWKS, "key set %s: %v", ks.url, err)
	}
	ks.mu.Lock()
	ks.keys, ks.fetchedAt = set, ks.now()
	ks.mu.Unlock()
	return nil
}

func (ks *keySet) get(ctx context.Context) (jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.url, nil)
	if err != nil {
		return set, err
	}
	resp, err := ks.http.Do(req)
	if err != nil {
		return set, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return set, fmt.Errorf("%s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize))
	if err != nil {
		return set, err
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return set, fmt.Errorf("not a JWKS: %w", err)
	}
	return set, nil
}
