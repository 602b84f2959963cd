package service

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/casvc"
)

// loadOrBootstrap returns this cluster's intermediate chain and key and
// sets up the bundle source (and the root, on the root holder): from etcd
// when it holds them, else from the configured bootstrap, whose result is
// then stored.
func (s *Service) loadOrBootstrap(ctx context.Context) ([]*x509.Certificate, crypto.Signer, error) {
	root, err := s.store.LoadRoot(ctx)
	switch {
	case err == nil:
		s.root = root
	case !errors.Is(err, ca.ErrNotFound):
		return nil, nil, fmt.Errorf("trust: %w", err)
	}
	cluster, chain, key, err := s.store.LoadIntermediate(ctx)
	switch {
	case err == nil:
		if cluster != s.cfg.Cluster {
			return nil, nil, fmt.Errorf("trust: etcd holds cluster %q's intermediate, this is cluster %q", cluster, s.cfg.Cluster)
		}
		if err := s.loadBundle(ctx); err != nil {
			return nil, nil, err
		}
		return chain, key, nil
	case !errors.Is(err, ca.ErrNotFound):
		return nil, nil, fmt.Errorf("trust: %w", err)
	}

	var b *spiffebundle.Bundle
	var update []byte
	ways := 0
	for _, set := range []bool{s.cfg.RootDir != "", s.cfg.CADir != "", s.cfg.Join != nil} {
		if set {
			ways++
		}
	}
	switch {
	case ways > 1:
		return nil, nil, errors.New("trust: first start: give one of a root directory, a CA directory or a join token")
	case s.cfg.RootDir != "" || (ways == 0 && s.root != nil):
		chain, key, b, update, err = s.bootstrapRoot(ctx)
	case s.cfg.CADir != "":
		chain, key, b, err = s.bootstrapCADir()
	case s.cfg.Join != nil:
		chain, key, b, err = s.bootstrapJoin(ctx)
	default:
		return nil, nil, errors.New("trust: etcd holds no CA for this cluster: on a first start give a root directory (meridianctl trust init), a CA directory (meridianctl trust issue-intermediate) or a join token")
	}
	if err != nil {
		return nil, nil, err
	}
	if err := s.store.SaveIntermediate(ctx, s.cfg.TrustDomain, s.cfg.Cluster, chain, key); err != nil {
		return nil, nil, err
	}
	s.Bundles = bundle.NewSource(b)
	if err := s.saveBundle(ctx, b, update); err != nil {
		return nil, nil, err
	}
	s.log.Info("trust bootstrapped", "intermediate", chain[0].URIs, "expires", chain[0].NotAfter, "roots", len(b.X509Authorities()))
	return chain, key, nil
}

// bootstrapRoot: this cluster holds the root. It is imported (once) into
// etcd and issues this cluster's intermediate; the first bundle is signed
// by it.
func (s *Service) bootstrapRoot(ctx context.Context) ([]*x509.Certificate, crypto.Signer, *spiffebundle.Bundle, []byte, error) {
	if s.root == nil {
		certPEM, err := readPEM(s.cfg.RootDir, RootCertFile)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		keyPEM, err := readPEM(s.cfg.RootDir, RootKeyFile)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		if s.root, err = ca.ParseRoot(s.cfg.TrustDomain, certPEM, keyPEM); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("trust: %s: %w", s.cfg.RootDir, err)
		}
		if err := s.store.CreateRoot(ctx, s.root); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ic, err := s.root.IssueIntermediate(ca.IntermediateRequest{Cluster: s.cfg.Cluster, PublicKey: key.Public()})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	b := spiffebundle.FromX509Authorities(s.cfg.TrustDomain, []*x509.Certificate{s.root.Certificate()})
	b.SetSequenceNumber(1)
	update, err := bundle.Sign(b, s.root.Certificate(), s.root.Signer())
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return []*x509.Certificate{ic}, key, b, update, nil
}

// bootstrapCADir imports an intermediate written by `meridianctl trust
// issue-intermediate` (or Istio-style plug-in CA files).
func (s *Service) bootstrapCADir() ([]*x509.Certificate, crypto.Signer, *spiffebundle.Bundle, error) {
	files := map[string][]byte{}
	for _, f := range []string{CACertFile, CAKeyFile, CertChainFile, RootCertFile} {
		b, err := readPEM(s.cfg.CADir, f)
		if err != nil {
			return nil, nil, nil, err
		}
		files[f] = b
	}
	roots, err := ca.ParseCertificates(files[RootCertFile])
	if err != nil {
		return nil, nil, nil, fmt.Errorf("trust: %s: %w", RootCertFile, err)
	}
	chain, err := ca.ParseCertificates(files[CertChainFile])
	if err != nil {
		return nil, nil, nil, fmt.Errorf("trust: %s: %w", CertChainFile, err)
	}
	// cert-chain.pem runs from the intermediate up, possibly to the root;
	// the chain an SVID carries stops short of the roots.
	var signing []*x509.Certificate
	for _, c := range chain {
		if !isRoot(c, roots) {
			signing = append(signing, c)
		}
	}
	key, err := ca.ParsePrivateKey(files[CAKeyFile])
	if err != nil {
		return nil, nil, nil, fmt.Errorf("trust: %s: %w", CAKeyFile, err)
	}
	if len(signing) == 0 {
		return nil, nil, nil, fmt.Errorf("trust: %s holds no intermediate", CertChainFile)
	}
	b := spiffebundle.FromX509Authorities(s.cfg.TrustDomain, roots)
	b.SetSequenceNumber(1)
	return signing, key, b, nil
}

func isRoot(c *x509.Certificate, roots []*x509.Certificate) bool {
	for _, r := range roots {
		if c.Equal(r) {
			return true
		}
	}
	return false
}

// bootstrapJoin asks the root holder for an intermediate with a join token,
// after checking its bundle against the pinned root key.
func (s *Service) bootstrapJoin(ctx context.Context) ([]*x509.Certificate, crypto.Signer, *spiffebundle.Bundle, error) {
	j := s.cfg.Join
	pinned, err := casvc.FetchPinnedBundle(ctx, j.URL, s.cfg.TrustDomain, j.RootKeyID)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		return nil, nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("trust: CSR: %w", err)
	}
	cli := casvc.NewClient(j.URL, s.cfg.TrustDomain, casvc.ClientTLS(bundle.NewSource(pinned), s.cfg.TrustDomain, nil))
	chain, b, err := cli.RequestIntermediate(ctx, casvc.IntermediateRequest{CSR: csr, Token: j.Token})
	if err != nil {
		return nil, nil, nil, err
	}
	return chain, key, b, nil
}

type storedBundle struct {
	Bundle json.RawMessage `json:"bundle"`
	// Update is the newest signed update (bundle.Sign) held, gossiped by
	// federation; empty until one exists.
	Update string `json:"update,omitempty"`
}

func (s *Service) saveBundle(ctx context.Context, b *spiffebundle.Bundle, update []byte) error {
	doc, err := b.Marshal()
	if err != nil {
		return fmt.Errorf("trust: bundle: %w", err)
	}
	val, _ := json.Marshal(storedBundle{Bundle: doc, Update: string(update)})
	if _, err := s.cfg.Etcd.Put(ctx, s.cfg.Prefix+"/bundle", string(val)); err != nil {
		return fmt.Errorf("trust: store bundle: %w", err)
	}
	s.update = update
	return nil
}

func (s *Service) loadBundle(ctx context.Context) error {
	resp, err := s.cfg.Etcd.Get(ctx, s.cfg.Prefix+"/bundle")
	if err != nil {
		return fmt.Errorf("trust: load bundle: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return errors.New("trust: etcd holds an intermediate but no bundle")
	}
	var doc storedBundle
	if err := json.Unmarshal(resp.Kvs[0].Value, &doc); err != nil {
		return fmt.Errorf("trust: stored bundle: %w", err)
	}
	b, err := spiffebundle.Parse(s.cfg.TrustDomain, doc.Bundle)
	if err != nil {
		return fmt.Errorf("trust: stored bundle: %w", err)
	}
	s.Bundles = bundle.NewSource(b)
	if doc.Update != "" {
		s.update = []byte(doc.Update)
	}
	return nil
}

func readPEM(dir, name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	return b, nil
}
