package svid

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/internal/notify"
)

// Fetcher sends a CSR to a CA with the caller's credentials and returns the
// SVID chain and the mesh bundle; casvc.Fetcher is one. Called from
// Rotator.Run only, one call at a time; it may block on the network.
type Fetcher interface {
	FetchSVID(ctx context.Context, csr []byte) ([]*x509.Certificate, *spiffebundle.Bundle, error)
}

// Rotator holds one SVID whose key never leaves the process: it makes a new
// key and CSR for every renewal, asks the Fetcher, and renews at half life.
// It is an x509svid.Source; Bundles is the matching bundle source.
type Rotator struct {
	fetch   Fetcher
	keyType ca.KeyType
	log     *slog.Logger
	bundles *bundle.Source
	changed notify.Notifier
	ready   chan struct{}

	mu   sync.RWMutex
	svid *x509svid.SVID
}

// RotatorConfig configures NewRotator.
type RotatorConfig struct {
	Fetcher Fetcher // required
	// KeyType of the keys; default ECDSAP256.
	KeyType ca.KeyType
	Logger  *slog.Logger
}

// NewRotator returns a Rotator; Run fetches the first SVID.
func NewRotator(cfg RotatorConfig) *Rotator {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Rotator{fetch: cfg.Fetcher, keyType: cfg.KeyType, log: log.With("component", "trust.svid"), bundles: bundle.NewSource(), ready: make(chan struct{})}
}

// Ready is closed once the first SVID is held.
func (r *Rotator) Ready() <-chan struct{} { return r.ready }

// GetX509SVID implements x509svid.Source.
func (r *Rotator) GetX509SVID() (*x509svid.SVID, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.svid == nil {
		return nil, errors.New("svid: no SVID yet")
	}
	return r.svid, nil
}

// Bundles is the bundle source that came with the SVID.
func (r *Rotator) Bundles() *bundle.Source { return r.bundles }

// Subscribe returns a channel that receives a value after each renewal (see
// package notify) and the function that ends the subscription.
func (r *Rotator) Subscribe() (<-chan struct{}, func()) { return r.changed.Subscribe() }

// Run fetches an SVID, then renews it at half life until ctx ends. Failures
// are logged and retried with backoff (1s doubling to 1m); the current SVID
// stays in use meanwhile.
func (r *Rotator) Run(ctx context.Context) error {
	failures := 0
	for {
		wait := time.Duration(0)
		if err := r.renew(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			wait = min(time.Second<<min(failures-1, 6), time.Minute)
			r.log.Error("SVID renewal failed", "attempt", failures, "retry_in", wait, "error", err)
		} else {
			failures = 0
			s, _ := r.GetX509SVID()
			wait = time.Until(HalfLife(time.Now(), s.Certificates[0].NotAfter))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (r *Rotator) renew(ctx context.Context) error {
	key, err := ca.GenerateKey(r.keyType)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return fmt.Errorf("svid: CSR: %w", err)
	}
	chain, b, err := r.fetch.FetchSVID(ctx, csr)
	if err != nil {
		return err
	}
	id, err := x509svid.IDFromCert(chain[0])
	if err != nil {
		return fmt.Errorf("svid: answer: %w", err)
	}
	s := &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key}
	// The answer must verify against the bundle it came with, or it is of
	// no use to any peer.
	if _, _, err := x509svid.Verify(chain, b.X509Bundle()); err != nil {
		return fmt.Errorf("svid: answer does not verify: %w", err)
	}
	r.bundles.Set(b)
	r.mu.Lock()
	first := r.svid == nil
	r.svid = s
	r.mu.Unlock()
	if first {
		close(r.ready)
	}
	r.changed.Notify()
	return nil
}
