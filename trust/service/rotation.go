package service

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/casvc"
)

// Root rotation, across the mesh, without a failed handshake:
//
//  1. PrepareRootRotation (root holder): a new root joins the bundle. The
//     update goes to every cluster (package exchange carries BundleUpdate
//     through the replicated store; each member calls ApplyBundleUpdate). Wait until every cluster holds it,
//     and at least half an SVID TTL, so that holders renewing by CSR
//     (svid.Rotator) have fetched it too.
//  2. ActivateRoot (root holder): the new root signs from now on; the
//     holder's intermediate is re-signed by it and its SVIDs reissued. Then
//     every other cluster's intermediate key is re-signed under the new
//     root and the cluster reissues its SVIDs: through the store (package
//     exchange: the holder's SignIntermediate on the chain the cluster
//     publishes, the cluster's InstallIntermediate), or by the cluster
//     calling RenewIntermediate on the holder's CA service (authenticated
//     by the member certificate). Wait until every cluster has, and one
//     SVID TTL, so no SVID under the old root is left.
//  3. RetireRootRotation (root holder): the old root leaves the bundle,
//     in an update signed by the new root, carried as in 1.
//
// TestRootRotationAcrossClusters runs the three steps between two clusters
// under continuous mTLS traffic; package exchange and meridiand's tests
// run them through the store and meridianctl trust rotate. Each step
// first reloads the root from etcd, so any replica of the root holder
// may take it.

// BundleUpdate is the newest signed bundle update this cluster holds, for
// the mesh (package exchange); nil before it has merged one.
func (s *Service) BundleUpdate() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.update
}

// ApplyBundleUpdate merges an update received from another cluster (see
// bundle.Merge), stores and applies it, and reports whether it changed
// anything. Federation calls it for every update it receives; an error
// means the update was refused (and nothing changed).
func (s *Service) ApplyBundleUpdate(ctx context.Context, data []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyLocked(ctx, data)
}

func (s *Service) applyLocked(ctx context.Context, data []byte) (bool, error) {
	cur, _ := s.Bundles.Get(s.cfg.TrustDomain)
	next, changed, err := bundle.Merge(cur, data)
	if err != nil || !changed {
		return false, err
	}
	if err := s.saveBundle(ctx, next, data); err != nil {
		return false, err
	}
	s.Bundles.Set(next)
	seq, _ := next.SequenceNumber()
	s.log.Info("trust bundle updated", "sequence", seq, "roots", len(next.X509Authorities()))
	return true, nil
}

// PrepareRootRotation is step 1, on the root holder: it makes the next
// root, stores it, and adds it to the bundle. It returns the update for
// federation (also available as BundleUpdate).
func (s *Service) PrepareRootRotation(ctx context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshRoot(ctx); err != nil {
		return nil, err
	}
	if s.root == nil {
		return nil, errors.New("trust: only the root holder rotates the root")
	}
	next, err := ca.NewRoot(ca.RootOptions{TrustDomain: s.cfg.TrustDomain})
	if err != nil {
		return nil, err
	}
	if err := s.store.SaveNextRoot(ctx, next); err != nil {
		return nil, err
	}
	cur, _ := s.Bundles.Get(s.cfg.TrustDomain)
	update, err := bundle.Sign(bundle.Next(cur, []*x509.Certificate{next.Certificate()}, nil), s.root.Certificate(), s.root.Signer())
	if err != nil {
		return nil, err
	}
	if _, err := s.applyLocked(ctx, update); err != nil {
		return nil, err
	}
	return update, nil
}

// ActivateRoot is step 2 on the root holder: the next root becomes the
// root (it signs intermediates from now on), and the holder's own
// intermediate is re-signed by it.
func (s *Service) ActivateRoot(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshRoot(ctx); err != nil {
		return err
	}
	if s.root == nil {
		return errors.New("trust: only the root holder rotates the root")
	}
	next, err := s.store.LoadNextRoot(ctx)
	if err != nil {
		return fmt.Errorf("trust: no rotation prepared: %w", err)
	}
	cur, _ := s.Bundles.Get(s.cfg.TrustDomain)
	if !cur.HasX509Authority(next.Certificate()) {
		return errors.New("trust: the next root is not in the bundle yet")
	}
	ic, err := next.IssueIntermediate(ca.IntermediateRequest{Cluster: s.cfg.Cluster, PublicKey: s.key.Public()})
	if err != nil {
		return err
	}
	if err := s.store.ReplaceRoot(ctx, next); err != nil {
		return err
	}
	s.root = next
	s.caSvc.SetRoot(next)
	return s.useIntermediate(ctx, []*x509.Certificate{ic})
}

// RenewIntermediate is step 2 on every other cluster: the root holder's CA
// service (caURL) re-signs this cluster's intermediate key under its
// current root, authenticated by the member certificate; SVIDs are then
// reissued.
func (s *Service) RenewIntermediate(ctx context.Context, caURL string) error {
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, s.key)
	if err != nil {
		return fmt.Errorf("trust: CSR: %w", err)
	}
	cli := casvc.NewClient(caURL, s.cfg.TrustDomain, casvc.MemberTLS(s.SVIDs.Source(s.memberID), s.Bundles, s.cfg.TrustDomain))
	chain, _, err := cli.RequestIntermediate(ctx, casvc.IntermediateRequest{CSR: csr})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.useIntermediate(ctx, chain)
}

func (s *Service) useIntermediate(ctx context.Context, chain []*x509.Certificate) error {
	if err := s.Authority.SetChain(chain, s.key); err != nil {
		return err
	}
	if err := s.store.SaveIntermediate(ctx, s.cfg.TrustDomain, s.cfg.Cluster, chain, s.key); err != nil {
		return err
	}
	s.log.Info("intermediate renewed; reissuing SVIDs", "issuer", chain[0].Issuer, "expires", chain[0].NotAfter)
	return s.SVIDs.RotateAll()
}

// RetireRootRotation is step 3, on the root holder: every root but the
// current one leaves the bundle, in an update signed by the current root.
// It returns the update for federation.
func (s *Service) RetireRootRotation(ctx context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refreshRoot(ctx); err != nil {
		return nil, err
	}
	if s.root == nil {
		return nil, errors.New("trust: only the root holder rotates the root")
	}
	cur, _ := s.Bundles.Get(s.cfg.TrustDomain)
	var old []*x509.Certificate
	for _, r := range cur.X509Authorities() {
		if !r.Equal(s.root.Certificate()) {
			old = append(old, r)
		}
	}
	if len(old) == 0 {
		return nil, errors.New("trust: no old root to retire")
	}
	if own := s.Authority.Chain(); !chainsTo(own, s.root) {
		return nil, errors.New("trust: this cluster's intermediate is not under the new root yet: ActivateRoot first")
	}
	update, err := bundle.Sign(bundle.Next(cur, nil, old), s.root.Certificate(), s.root.Signer())
	if err != nil {
		return nil, err
	}
	if _, err := s.applyLocked(ctx, update); err != nil {
		return nil, err
	}
	return update, nil
}

func chainsTo(chain []*x509.Certificate, root *ca.Root) bool {
	return chain[len(chain)-1].CheckSignatureFrom(root.Certificate()) == nil
}
