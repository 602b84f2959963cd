package service

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
)

// What package exchange needs to carry a root rotation between clusters
// without a connection of their own: each cluster publishes its
// intermediate (public), the root holder re-signs every one that is not
// under its current root yet, and each cluster installs what was signed
// for its key.

// Root returns the root certificate this cluster signs intermediates
// with: nil unless it holds the root. It reads etcd, so that a replica of
// the root holder that did not run the last rotation step knows the root
// that did.
func (s *Service) Root(ctx context.Context) (*x509.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshRoot(ctx); err != nil {
		return nil, err
	}
	if s.root == nil {
		return nil, nil
	}
	return s.root.Certificate(), nil
}

// refreshRoot loads the root from etcd: another replica of this cluster
// may have activated a new one. Callers hold mu.
func (s *Service) refreshRoot(ctx context.Context) error {
	r, err := s.store.LoadRoot(ctx)
	switch {
	case errors.Is(err, ca.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("trust: %w", err)
	}
	if s.root == nil || !s.root.Certificate().Equal(r.Certificate()) {
		s.root = r
		s.caSvc.SetRoot(r)
	}
	return nil
}

// Rotation phases (RotationPhase).
const (
	PhaseSteady    = "steady"    // one root
	PhasePrepared  = "prepared"  // a next root in the bundle; the current one signs
	PhaseActivated = "activated" // the new root signs; the old one is still trusted
)

// RotationPhase is where the root holder stands in a root rotation: ""
// elsewhere.
func (s *Service) RotationPhase(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshRoot(ctx); err != nil {
		return "", err
	}
	if s.root == nil {
		return "", nil
	}
	if b, ok := s.Bundles.Get(s.cfg.TrustDomain); !ok || len(b.X509Authorities()) <= 1 {
		return PhaseSteady, nil
	}
	next, err := s.store.LoadNextRoot(ctx)
	switch {
	case errors.Is(err, ca.ErrNotFound):
		return PhaseActivated, nil
	case err != nil:
		return "", fmt.Errorf("trust: %w", err)
	case next.Certificate().Equal(s.root.Certificate()):
		return PhaseActivated, nil
	}
	return PhasePrepared, nil
}

// SVIDTTL is the lifetime of the SVIDs this control plane mints: how long
// an SVID issued under an old root may live on after a rotation step.
func (s *Service) SVIDTTL() time.Duration {
	if s.cfg.SVIDTTL > 0 {
		return s.cfg.SVIDTTL
	}
	return ca.DefaultSVIDTTL
}

// SignIntermediate re-signs a cluster's intermediate under the current
// root, on the root holder, during a rotation: current is the chain the
// cluster publishes (intermediate first). It must name the cluster and
// chain to a root of this cluster's bundle — the root certified that key
// for that cluster before — so the new certificate vouches for nothing
// new; and it is worthless without the cluster's private key. It returns
// nil when the intermediate is under the current root already.
func (s *Service) SignIntermediate(ctx context.Context, cluster string, current []*x509.Certificate) ([]*x509.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshRoot(ctx); err != nil {
		return nil, err
	}
	if s.root == nil {
		return nil, errors.New("trust: only the root holder signs intermediates")
	}
	if err := s.checkIntermediate(cluster, current); err != nil {
		return nil, err
	}
	if chainsTo(current, s.root) {
		return nil, nil
	}
	ic, err := s.root.IssueIntermediate(ca.IntermediateRequest{Cluster: cluster, PublicKey: current[0].PublicKey})
	if err != nil {
		return nil, err
	}
	s.log.Info("intermediate re-signed under the current root", "cluster", cluster, "expires", ic.NotAfter)
	return []*x509.Certificate{ic}, nil
}

// InstallIntermediate makes chain this cluster's intermediate when it is
// for this cluster's key, names this cluster, chains to a root of the
// bundle, differs from the one in use and is signed by the root that
// signs now: current, the key ID of the root the root holder publishes
// as its current one — on the root holder itself, its own root (etcd),
// whatever current says. An intermediate under any other root is stale
// and left alone, not refused: the store has not caught up with a step
// yet (the root holder's replica that activated a root reads its old
// intermediate back until its publish lands), and installing it would
// undo the rotation here. SVIDs are reissued on a change. It reports
// whether it changed anything; an error means the chain was refused.
func (s *Service) InstallIntermediate(ctx context.Context, chain []*x509.Certificate, current string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshRoot(ctx); err != nil {
		return false, err
	}
	if err := s.checkIntermediate(s.cfg.Cluster, chain); err != nil {
		return false, err
	}
	if pub, ok := chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(s.key.Public()) {
		return false, errors.New("trust: the intermediate is not for this cluster's key")
	}
	if s.root != nil {
		current = bundle.KeyID(s.root.Certificate())
	}
	if issuer := s.issuerLocked(chain); issuer == nil || bundle.KeyID(issuer) != current {
		return false, nil
	}
	if own := s.Authority.Chain(); len(own) == len(chain) && own[0].Equal(chain[0]) {
		return false, nil
	}
	return true, s.useIntermediate(ctx, chain)
}

// issuerLocked is the root of the mesh bundle that signed chain's last
// certificate, nil for none. Callers hold mu.
func (s *Service) issuerLocked(chain []*x509.Certificate) *x509.Certificate {
	b, ok := s.Bundles.Get(s.cfg.TrustDomain)
	if !ok {
		return nil
	}
	for _, r := range b.X509Authorities() {
		if chain[len(chain)-1].CheckSignatureFrom(r) == nil {
			return r
		}
	}
	return nil
}

// checkIntermediate verifies that chain is cluster's intermediate and
// chains to a root of the mesh bundle.
func (s *Service) checkIntermediate(cluster string, chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("trust: no intermediate")
	}
	want, err := trust.ClusterID(s.cfg.TrustDomain, cluster)
	if err != nil {
		return err
	}
	ic := chain[0]
	if !ic.IsCA || len(ic.URIs) != 1 || ic.URIs[0].String() != want.String() {
		return fmt.Errorf("trust: the certificate is not cluster %s's intermediate", cluster)
	}
	b, ok := s.Bundles.Get(s.cfg.TrustDomain)
	if !ok {
		return errors.New("trust: no bundle for the mesh's trust domain")
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range b.X509Authorities() {
		roots.AddCert(r)
	}
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := ic.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("trust: cluster %s's intermediate does not chain to the bundle: %w", cluster, err)
	}
	return nil
}
