package registry

import (
	"context"
	"sync"
)

// Delta is the set of keys that changed between two views. Consumers read
// the new values from the view they receive with it.
type Delta struct {
	// Full is set on a subscription's first delivery: treat everything as
	// changed.
	Full bool
	// Services whose definition or endpoints changed, in any cluster.
	Services map[ServiceKey]struct{}
	// Endpoints that were put or deleted.
	Endpoints map[EndpointRef]struct{}
	// Clusters whose description or status changed, or that were removed;
	// the effective health of all their endpoints may have changed.
	Clusters map[string]struct{}
}

// Empty reports whether nothing changed.
func (d *Delta) Empty() bool {
	return !d.Full && len(d.Services) == 0 && len(d.Endpoints) == 0 && len(d.Clusters) == 0
}

func (d *Delta) addChange(cluster string, c Change) {
	if d.Services == nil {
		d.Services = map[ServiceKey]struct{}{}
	}
	if c.Service != nil {
		d.Services[c.Service.Key()] = struct{}{}
		return
	}
	if d.Endpoints == nil {
		d.Endpoints = map[EndpointRef]struct{}{}
	}
	d.Services[c.Endpoint.Service] = struct{}{}
	d.Endpoints[EndpointRef{Cluster: cluster, EndpointKey: c.Endpoint.Key()}] = struct{}{}
}

func (d *Delta) merge(o *Delta) {
	d.Full = d.Full || o.Full
	d.Services = mergeSet(d.Services, o.Services)
	d.Endpoints = mergeSet(d.Endpoints, o.Endpoints)
	d.Clusters = mergeSet(d.Clusters, o.Clusters)
}

func mergeSet[K comparable](dst, src map[K]struct{}) map[K]struct{} {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = make(map[K]struct{}, len(src))
	}
	for k := range src {
		dst[k] = struct{}{}
	}
	return dst
}

// Subscription delivers the newest view with the keys that changed since
// the consumer last took them. Writers only add keys to a set and wake the
// consumer through a one-slot channel, so a slow consumer never stalls them;
// it sees several changes at once instead.
type Subscription struct {
	r       *Registry
	ready   chan struct{}
	mu      sync.Mutex
	pending Delta
}

// Subscribe starts a subscription. Its first delivery is a Full delta with
// the current view. Close it when done.
func (r *Registry) Subscribe() *Subscription {
	s := &Subscription{r: r, ready: make(chan struct{}, 1), pending: Delta{Full: true}}
	s.ready <- struct{}{}
	r.mu.Lock()
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	return s
}

// Ready is signalled when changes are pending; call Take after it fires.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Take returns the pending changes and a view at least as new as all of
// them, and clears the pending set. The delta is empty when nothing is
// pending.
func (s *Subscription) Take() (*View, Delta) {
	s.mu.Lock()
	d := s.pending
	s.pending = Delta{}
	s.mu.Unlock()
	// Loaded after the pending set was taken, so it includes every change in
	// d (and maybe later ones, which will be delivered again: harmless).
	return s.r.View(), d
}

// Next waits until changes are pending, then takes them.
func (s *Subscription) Next(ctx context.Context) (*View, Delta, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, Delta{}, ctx.Err()
		case <-s.ready:
			if v, d := s.Take(); !d.Empty() {
				return v, d, nil
			}
		}
	}
}

// Close ends the subscription. It is idempotent.
func (s *Subscription) Close() {
	s.r.mu.Lock()
	delete(s.r.subs, s)
	s.r.mu.Unlock()
}

// add is called by writers holding r.mu; it never blocks.
func (s *Subscription) add(d *Delta) {
	if d.Empty() {
		return
	}
	s.mu.Lock()
	s.pending.merge(d)
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}
