package policy

import (
	"context"
	"sync"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
)

// Snapshot is an immutable view of the store. It is safe for concurrent
// use; the resources it returns are shared and must not be modified.
type Snapshot struct {
	version uint64
	tree    *iradix.Tree[*Resource] // live resources and tombstones
	live    int
}

var emptySnapshot = &Snapshot{tree: iradix.New[*Resource]()}

// Version increases by one with every change to the store.
func (s *Snapshot) Version() uint64 { return s.version }

// Len returns the number of live resources.
func (s *Snapshot) Len() int { return s.live }

// Tombstones returns the number of deletes not yet collected.
func (s *Snapshot) Tombstones() int { return s.tree.Len() - s.live }

// Get returns a live resource.
func (s *Snapshot) Get(k Key) (*Resource, bool) {
	r, ok := s.tree.Get(k.treeKey())
	if !ok || r.Deleted {
		return nil, false
	}
	return r, true
}

// List returns the live resources of one kind (every kind when empty),
// ordered by kind, namespace and name.
func (s *Snapshot) List(kind string) []*Resource {
	var out []*Resource
	var prefix []byte
	if kind != "" {
		prefix = []byte(kind + "\x00")
	}
	s.tree.Root().WalkPrefix(prefix, func(_ []byte, r *Resource) bool {
		if !r.Deleted {
			out = append(out, r)
		}
		return false
	})
	return out
}

// Lookup returns a resource or its tombstone.
func (s *Snapshot) Lookup(k Key) (*Resource, bool) { return s.tree.Get(k.treeKey()) }

func (s *Snapshot) lookup(k Key) (*Resource, bool) { return s.tree.Get(k.treeKey()) }

// each calls fn for every resource and tombstone.
func (s *Snapshot) each(fn func(*Resource)) {
	s.tree.Root().Walk(func(_ []byte, r *Resource) bool { fn(r); return false })
}

// Delta is the set of keys that changed since the subscriber last looked.
// A key whose resource was deleted is in the set and absent from the
// snapshot.
type Delta struct {
	// Full is set on a subscription's first delivery.
	Full bool
	Keys map[Key]struct{}
}

// Empty reports whether nothing changed.
func (d *Delta) Empty() bool { return !d.Full && len(d.Keys) == 0 }

// Subscription delivers the newest snapshot with the keys that changed,
// coalescing changes the consumer has not taken yet (as
// registry.Subscription does): writers only add keys to a set and wake the
// consumer through a one-slot channel, so a slow consumer never stalls
// replication.
type Subscription struct {
	s       *Store
	ready   chan struct{}
	mu      sync.Mutex
	pending Delta
}

// Subscribe starts a subscription; its first delivery is Full. Close it
// when done.
func (s *Store) Subscribe() *Subscription {
	sub := &Subscription{s: s, ready: make(chan struct{}, 1), pending: Delta{Full: true}}
	sub.ready <- struct{}{}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	return sub
}

// Ready is signalled when changes are pending.
func (sub *Subscription) Ready() <-chan struct{} { return sub.ready }

// Take returns the pending changes with a snapshot at least as new as all
// of them, and clears the pending set.
func (sub *Subscription) Take() (*Snapshot, Delta) {
	sub.mu.Lock()
	d := sub.pending
	sub.pending = Delta{}
	sub.mu.Unlock()
	return sub.s.Snapshot(), d
}

// Next waits until changes are pending, then takes them.
func (sub *Subscription) Next(ctx context.Context) (*Snapshot, Delta, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, Delta{}, ctx.Err()
		case <-sub.ready:
			if snap, d := sub.Take(); !d.Empty() {
				return snap, d, nil
			}
		}
	}
}

// Close ends the subscription. It is idempotent.
func (sub *Subscription) Close() {
	sub.s.mu.Lock()
	delete(sub.s.subs, sub)
	sub.s.mu.Unlock()
}

// add is called with the store's lock held; it never blocks.
func (sub *Subscription) add(keys []Key) {
	if len(keys) == 0 {
		return
	}
	sub.mu.Lock()
	if sub.pending.Keys == nil {
		sub.pending.Keys = make(map[Key]struct{}, len(keys))
	}
	for _, k := range keys {
		sub.pending.Keys[k] = struct{}{}
	}
	sub.mu.Unlock()
	select {
	case sub.ready <- struct{}{}:
	default:
	}
}
