package federation

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Credentials secure the Federation gRPC service, both ways. The default
// derives mutual TLS from the gossip keyring; the trust package will offer
// one built from the cluster's X.509-SVID and the mesh's trust bundle.
type Credentials interface {
	// ServerTLS is the config the federation gRPC server listens with. It
	// must request and verify client certificates.
	ServerTLS() *tls.Config
	// ClientTLS is the config this member dials other members with.
	ClientTLS() *tls.Config
}

// Authenticator decides whether a member may take part, from the identity
// it proved in a TLS handshake with this one. It is called with the
// cluster the member claims in gossip — on every new member, before its
// announcements count or its cluster enters the registry, and by the
// server on every call, with the cluster the caller claims — and must
// return an error when the certificate does not belong to that cluster
// (for example: its SPIFFE ID is not the cluster's control-plane ID under
// the mesh's trust domain). It may be called concurrently.
type Authenticator interface {
	Authenticate(cluster string, state tls.ConnectionState) error
}

// keyringCredentials derive mutual TLS from the gossip keyring: an Ed25519
// key per gossip key (HKDF-SHA256, so the gossip key itself never signs
// anything), a self-signed certificate for it, and peers accepted only when
// they present the key derived from one of the ring's keys. Whoever holds a
// gossip key can serve and pull; nobody else can, and replication traffic
// is encrypted like gossip is. Key rotation follows the keyring: the
// primary key signs, every key is accepted.
type keyringCredentials struct {
	ring *memberlist.Keyring

	mu    sync.Mutex
	certs map[string]*tls.Certificate // gossip key → derived certificate
}

func newKeyringCredentials(ring *memberlist.Keyring) *keyringCredentials {
	return &keyringCredentials{ring: ring, certs: map[string]*tls.Certificate{}}
}

func (k *keyringCredentials) cert(key []byte) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.certs[string(key)]; ok {
		return c, nil
	}
	seed, err := hkdf.Key(sha256.New, key, nil, "meridian federation grpc v1", ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("federation: derive TLS key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "meridian-federation"},
		DNSNames:     []string{"meridian-federation"},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return nil, fmt.Errorf("federation: derive TLS certificate: %w", err)
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
	k.certs[string(key)] = c
	return c, nil
}

func (k *keyringCredentials) primary() (*tls.Certificate, error) {
	key := k.ring.GetPrimaryKey()
	if key == nil {
		return nil, errors.New("federation: the keyring has no primary key")
	}
	return k.cert(key)
}

// verify accepts a peer whose certificate carries a key derived from one of
// the ring's keys. Chains and names mean nothing here: the key is the
// credential.
func (k *keyringCredentials) verify(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	if len(rawCerts) == 0 {
		return errors.New("federation: peer presented no certificate")
	}
	peer, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return fmt.Errorf("federation: peer certificate: %w", err)
	}
	pub, ok := peer.PublicKey.(ed25519.PublicKey)
	if !ok {
		return errors.New("federation: peer key is not derived from a gossip key")
	}
	for _, key := range k.ring.GetKeys() {
		c, err := k.cert(key)
		if err != nil {
			return err
		}
		if bytes.Equal(pub, c.PrivateKey.(ed25519.PrivateKey).Public().(ed25519.PublicKey)) {
			return nil
		}
	}
	return errors.New("federation: peer key is not derived from any key of the gossip keyring")
}

func (k *keyringCredentials) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		ClientAuth:            tls.RequireAnyClientCert,
		GetCertificate:        func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return k.primary() },
		VerifyPeerCertificate: k.verify,
	}
}

func (k *keyringCredentials) ClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return k.primary() },
		// The server is verified by its derived key in VerifyPeerCertificate,
		// not by a chain to a CA.
		InsecureSkipVerify:    true, //nolint:gosec // pinned-key verification below
		VerifyPeerCertificate: k.verify,
	}
}
