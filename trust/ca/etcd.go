package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNotFound is returned by Store loads when nothing is stored yet.
var ErrNotFound = errors.New("ca: not found in etcd")

// Store keeps CA material in etcd under one prefix (meridiand uses
// store.Key("trust"), i.e. /meridian/trust):
//
//	PREFIX/root           the root certificate and its sealed key (root holder only)
//	PREFIX/root-next      the next root during a root rotation (root holder only)
//	PREFIX/intermediate   this cluster's intermediate chain and its sealed key
//
// Private keys are sealed with the Sealer (AES-256-GCM, the etcd key as
// additional data); certificates are stored in the clear.
type Store struct {
	kv     clientv3.KV
	prefix string
	sealer *Sealer
}

// NewStore returns a Store on an etcd KV (a *clientv3.Client).
func NewStore(kv clientv3.KV, prefix string, sealer *Sealer) *Store {
	return &Store{kv: kv, prefix: prefix, sealer: sealer}
}

type storedCA struct {
	TrustDomain string `json:"trustDomain"`
	Cluster     string `json:"cluster,omitempty"`
	Certs       string `json:"certs"`     // PEM, the CA certificate first
	SealedKey   []byte `json:"sealedKey"` // Sealer output of the PKCS#8 PEM key
}

func (s *Store) key(name string) string { return s.prefix + "/" + name }

// CreateRoot stores a root unless one is already stored: a second `trust
// init` must not silently replace the mesh's root.
func (s *Store) CreateRoot(ctx context.Context, r *Root) error {
	val, err := s.marshal(s.key("root"), storedCA{TrustDomain: r.td.Name()}, []*x509.Certificate{r.cert}, r.key)
	if err != nil {
		return err
	}
	k := s.key("root")
	resp, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).Then(clientv3.OpPut(k, string(val))).Commit()
	if err != nil {
		return fmt.Errorf("ca: store root: %w", err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("ca: store root: %s already holds a root; rotate it instead of replacing it", k)
	}
	return nil
}

// ReplaceRoot stores r as the root, whatever was there (root rotation).
func (s *Store) ReplaceRoot(ctx context.Context, r *Root) error { return s.putRoot(ctx, "root", r) }

// SaveNextRoot stores the root a rotation is moving to.
func (s *Store) SaveNextRoot(ctx context.Context, r *Root) error {
	return s.putRoot(ctx, "root-next", r)
}

func (s *Store) putRoot(ctx context.Context, name string, r *Root) error {
	val, err := s.marshal(s.key(name), storedCA{TrustDomain: r.td.Name()}, []*x509.Certificate{r.cert}, r.key)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, s.key(name), string(val)); err != nil {
		return fmt.Errorf("ca: store %s: %w", name, err)
	}
	return nil
}

// LoadRoot reads the stored root.
func (s *Store) LoadRoot(ctx context.Context) (*Root, error) { return s.loadRoot(ctx, "root") }

// LoadNextRoot reads the root a rotation is moving to.
func (s *Store) LoadNextRoot(ctx context.Context) (*Root, error) { return s.loadRoot(ctx, "root-next") }

func (s *Store) loadRoot(ctx context.Context, name string) (*Root, error) {
	doc, certs, key, err := s.load(ctx, s.key(name))
	if err != nil {
		return nil, err
	}
	td, err := spiffeid.TrustDomainFromString(doc.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("ca: stored root: %w", err)
	}
	return &Root{td: td, cert: certs[0], key: key}, nil
}

// SaveIntermediate stores this cluster's intermediate chain and key.
func (s *Store) SaveIntermediate(ctx context.Context, td spiffeid.TrustDomain, cluster string, chain []*x509.Certificate, key crypto.Signer) error {
	val, err := s.marshal(s.key("intermediate"), storedCA{TrustDomain: td.Name(), Cluster: cluster}, chain, key)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, s.key("intermediate"), string(val)); err != nil {
		return fmt.Errorf("ca: store intermediate: %w", err)
	}
	return nil
}

// LoadIntermediate reads this cluster's intermediate chain and key.
func (s *Store) LoadIntermediate(ctx context.Context) (cluster string, chain []*x509.Certificate, key crypto.Signer, err error) {
	doc, certs, key, err := s.load(ctx, s.key("intermediate"))
	if err != nil {
		return "", nil, nil, err
	}
	return doc.Cluster, certs, key, nil
}

func (s *Store) marshal(k string, doc storedCA, certs []*x509.Certificate, key crypto.Signer) ([]byte, error) {
	keyPEM, err := MarshalPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if doc.SealedKey, err = s.sealer.Seal(keyPEM, []byte(k)); err != nil {
		return nil, err
	}
	doc.Certs = string(EncodeCertificates(certs...))
	return json.Marshal(doc)
}

func (s *Store) load(ctx context.Context, k string) (storedCA, []*x509.Certificate, crypto.Signer, error) {
	var doc storedCA
	resp, err := s.kv.Get(ctx, k)
	if err != nil {
		return doc, nil, nil, fmt.Errorf("ca: load %s: %w", k, err)
	}
	if len(resp.Kvs) == 0 {
		return doc, nil, nil, fmt.Errorf("%w: %s", ErrNotFound, k)
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &doc); err != nil {
		return doc, nil, nil, fmt.Errorf("ca: load %s: %w", k, err)
	}
	certs, err := ParseCertificates([]byte(doc.Certs))
	if err != nil {
		return doc, nil, nil, fmt.Errorf("ca: load %s: %w", k, err)
	}
	keyPEM, err := s.sealer.Open(doc.SealedKey, []byte(k))
	if err != nil {
		return doc, nil, nil, err
	}
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return doc, nil, nil, fmt.Errorf("ca: load %s: %w", k, err)
	}
	if !publicKeysEqual(key.Public(), certs[0].PublicKey) {
		return doc, nil, nil, fmt.Errorf("ca: load %s: the key does not belong to the certificate", k)
	}
	return doc, certs, key, nil
}
