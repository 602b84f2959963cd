// Package notify is the change signal the trust packages give their
// subscribers: each subscriber has a channel with room for one value, a
// change puts a value there if there is room, and never blocks. One value
// stands for any number of changes since the subscriber last looked, so a
// slow subscriber re-reads the newest state instead of a backlog.
package notify

import "sync"

// Notifier fans a change signal out to subscribers. The zero value is ready
// to use; it is safe for concurrent use.
type Notifier struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

// Subscribe returns the subscriber's channel and the function that ends the
// subscription.
func (n *Notifier) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	if n.subs == nil {
		n.subs = map[chan struct{}]struct{}{}
	}
	n.subs[ch] = struct{}{}
	n.mu.Unlock()
	return ch, func() {
		n.mu.Lock()
		delete(n.subs, ch)
		n.mu.Unlock()
	}
}

// Notify signals every subscriber without blocking.
func (n *Notifier) Notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
