package svid

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/trust/internal/metrics"
	"github.com/meridian-mesh/meridian/trust/internal/notify"
)

// Minter signs an SVID for an attested identity with a key it generates;
// *ca.Authority is one. It is called with the Manager's lock held, from
// Get and from the rotation loop, never concurrently.
type Minter interface {
	Mint(id spiffeid.ID, ttl time.Duration) (*x509svid.SVID, error)
}

// Manager holds the SVIDs this control plane hands out itself (over SDS and
// the Workload API), one per identity, and renews each at half its life.
// Get issues on first use; Run renews; subscribers hear of every renewal.
// Identities stay until the Manager is dropped: they are bounded by the
// service accounts of the cluster.
type Manager struct {
	minter Minter
	ttl    time.Duration
	now    func() time.Time
	log    *slog.Logger

	mu      sync.Mutex
	entries map[spiffeid.ID]*entry
	wake    chan struct{} // 1-buffered: a new entry or a forced rotation
	changed notify.Notifier

	renewed, failed prometheus.Counter
}

type entry struct {
	svid     *x509svid.SVID
	renewAt  time.Time
	failures int // consecutive failed renewals, for backoff
}

// ManagerConfig configures NewManager.
type ManagerConfig struct {
	Minter Minter // required
	// TTL of the SVIDs; 0 lets the Minter choose (1h for ca.Authority).
	TTL        time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// NewManager returns a Manager; call Run to have it renew.
func NewManager(cfg ManagerConfig) *Manager {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Manager{
		minter: cfg.Minter, ttl: cfg.TTL, now: now, log: log.With("component", "trust.svid"),
		entries: map[spiffeid.ID]*entry{}, wake: make(chan struct{}, 1),
		renewed: metrics.Counter(cfg.Registerer, prometheus.CounterOpts{
			Name: "meridian_trust_svid_rotations_total", Help: "SVIDs renewed by the control plane's SVID manager.",
		}),
		failed: metrics.Counter(cfg.Registerer, prometheus.CounterOpts{
			Name: "meridian_trust_svid_rotation_failures_total", Help: "Failed SVID renewals (retried with backoff until the SVID expires).",
		}),
	}
}

// Get returns the current SVID for id, issuing one on first use. The SVID
// is shared: callers must not modify it.
func (m *Manager) Get(id spiffeid.ID) (*x509svid.SVID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.entries[id]; ok {
		if m.now().Before(e.svid.Certificates[0].NotAfter) {
			return e.svid, nil
		}
		return nil, fmt.Errorf("svid: the SVID of %s expired at %s and could not be renewed", id, e.svid.Certificates[0].NotAfter.Format(time.RFC3339))
	}
	e, err := m.issueLocked(id)
	if err != nil {
		return nil, err
	}
	m.entries[id] = e
	select {
	case m.wake <- struct{}{}:
	default:
	}
	return e.svid, nil
}

// Source returns an x509svid.Source for one identity, for go-spiffe's
// tlsconfig: every handshake gets the current SVID.
func (m *Manager) Source(id spiffeid.ID) x509svid.Source {
	return sourceFunc(func() (*x509svid.SVID, error) { return m.Get(id) })
}

type sourceFunc func() (*x509svid.SVID, error)

func (f sourceFunc) GetX509SVID() (*x509svid.SVID, error) { return f() }

// Subscribe returns a channel that receives a value after renewals (see
// package notify) and the function that ends the subscription.
func (m *Manager) Subscribe() (<-chan struct{}, func()) { return m.changed.Subscribe() }

// RotateAll reissues every SVID now, after a root rotation has changed the
// intermediate chain. It returns once all are reissued (or the first error;
// the others keep their current SVID and the loop retries them).
func (m *Manager) RotateAll() error {
	m.mu.Lock()
	defer m.changed.Notify()
	defer m.mu.Unlock()
	for id := range m.entries {
		e, err := m.issueLocked(id)
		if err != nil {
			return err
		}
		m.entries[id] = e
		m.renewed.Inc()
	}
	return nil
}

// Run renews SVIDs at half life until ctx ends. A failed renewal keeps the
// current SVID and is retried with backoff (1s doubling to 1m).
func (m *Manager) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := m.renewDue()
		timer.Reset(max(next.Sub(m.now()), 0))
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		case <-timer.C:
		}
	}
}

// renewDue renews every SVID past its renewal time and returns when the
// next one is due.
func (m *Manager) renewDue() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	next := now.Add(time.Hour)
	changed := false
	for id, e := range m.entries {
		if !now.Before(e.renewAt) {
			fresh, err := m.issueLocked(id)
			if err != nil {
				e.failures++
				e.renewAt = now.Add(min(time.Second<<min(e.failures-1, 6), time.Minute))
				m.failed.Inc()
				m.log.Error("SVID renewal failed; keeping the current one", "id", id, "expires", e.svid.Certificates[0].NotAfter, "attempt", e.failures, "error", err)
			} else {
				m.entries[id], e = fresh, fresh
				m.renewed.Inc()
				changed = true
			}
		}
		if e.renewAt.Before(next) {
			next = e.renewAt
		}
	}
	if changed {
		m.changed.Notify()
	}
	return next
}

func (m *Manager) issueLocked(id spiffeid.ID) (*entry, error) {
	s, err := m.minter.Mint(id, m.ttl)
	if err != nil {
		return nil, fmt.Errorf("svid: issue %s: %w", id, err)
	}
	if len(s.Certificates) == 0 {
		return nil, errors.New("svid: minter returned no certificate")
	}
	issued := m.now()
	return &entry{svid: s, renewAt: HalfLife(issued, s.Certificates[0].NotAfter)}, nil
}

// HalfLife is when an SVID issued at issued and expiring at notAfter is
// renewed: half-way, as SPIRE and Istio do, so a renewal that fails has the
// other half of the life to succeed.
func HalfLife(issued, notAfter time.Time) time.Time {
	return issued.Add(notAfter.Sub(issued) / 2)
}
