package bundle

import (
	"cmp"
	"fmt"
	"slices"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meridian-mesh/meridian/trust/internal/notify"
)

// Source holds the bundles a process trusts, one per trust domain: the
// mesh's own and any foreign trust domain federated explicitly. It is an
// x509bundle.Source and a spiffebundle.Source for go-spiffe's tlsconfig,
// and tells subscribers when anything changes.
//
// Bundles handed in or out are clones; a Source is safe for concurrent use.
type Source struct {
	mu      sync.RWMutex
	bundles map[spiffeid.TrustDomain]*spiffebundle.Bundle
	changed notify.Notifier
}

// NewSource returns a Source holding bundles.
func NewSource(bundles ...*spiffebundle.Bundle) *Source {
	s := &Source{bundles: map[spiffeid.TrustDomain]*spiffebundle.Bundle{}}
	for _, b := range bundles {
		s.bundles[b.TrustDomain()] = b.Clone()
	}
	return s
}

// Set replaces the bundle of b's trust domain. Subscribers are told only
// when it changed.
func (s *Source) Set(b *spiffebundle.Bundle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.bundles[b.TrustDomain()]; ok && old.Equal(b) {
		return
	}
	s.bundles[b.TrustDomain()] = b.Clone()
	s.changed.Notify()
}

// Remove stops trusting a trust domain.
func (s *Source) Remove(td spiffeid.TrustDomain) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.bundles[td]; !ok {
		return
	}
	delete(s.bundles, td)
	s.changed.Notify()
}

// Get returns a clone of a trust domain's bundle.
func (s *Source) Get(td spiffeid.TrustDomain) (*spiffebundle.Bundle, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.bundles[td]
	if !ok {
		return nil, false
	}
	return b.Clone(), true
}

// Bundles returns clones of every bundle, ordered by trust domain.
func (s *Source) Bundles() []*spiffebundle.Bundle {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*spiffebundle.Bundle, 0, len(s.bundles))
	for _, b := range s.bundles {
		out = append(out, b.Clone())
	}
	slices.SortFunc(out, func(a, b *spiffebundle.Bundle) int {
		return cmp.Compare(a.TrustDomain().Name(), b.TrustDomain().Name())
	})
	return out
}

// GetBundleForTrustDomain implements spiffebundle.Source.
func (s *Source) GetBundleForTrustDomain(td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	if b, ok := s.Get(td); ok {
		return b, nil
	}
	return nil, fmt.Errorf("bundle: no bundle for trust domain %q", td)
}

// GetX509BundleForTrustDomain implements x509bundle.Source; handshakes call
// it, so it only reads under the lock.
func (s *Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if b, ok := s.bundles[td]; ok {
		return b.X509Bundle(), nil
	}
	return nil, fmt.Errorf("bundle: no bundle for trust domain %q", td)
}

// Subscribe returns a channel that receives a value after changes (see
// package notify: one value for any number of changes, never blocking the
// writer) and the function that ends the subscription.
func (s *Source) Subscribe() (<-chan struct{}, func()) { return s.changed.Subscribe() }
