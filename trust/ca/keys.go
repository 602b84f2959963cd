package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"math/big"
)

// KeyType names the kind of key the CA generates for itself and for minted
// SVIDs.
type KeyType string

const (
	// ECDSAP256 is the default: small certificates, fast handshakes,
	// supported by every TLS stack the mesh talks to.
	ECDSAP256 KeyType = "ec-p256"
	ECDSAP384 KeyType = "ec-p384"
	RSA2048   KeyType = "rsa-2048"
	RSA4096   KeyType = "rsa-4096"
)

func (t KeyType) validate() error {
	switch t {
	case "", ECDSAP256, ECDSAP384, RSA2048, RSA4096:
		return nil
	}
	return fmt.Errorf("ca: unknown key type %q (want %s, %s, %s or %s)", t, ECDSAP256, ECDSAP384, RSA2048, RSA4096)
}

// GenerateKey makes a new private key of type t ("" is ECDSAP256).
func GenerateKey(t KeyType) (crypto.Signer, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	switch t {
	case "", ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	default: // RSA4096
		return rsa.GenerateKey(rand.Reader, 4096)
	}
}

// CheckPublicKey accepts the keys every TLS stack of the mesh verifies:
// ECDSA on P-256 or P-384, RSA from 2048 to 4096 bits. Ed25519 and other
// curves are refused because Envoy and older clients do not all take them.
func CheckPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return fmt.Errorf("ECDSA curve %s is not accepted (P-256 or P-384)", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 4096 {
			return fmt.Errorf("RSA key of %d bits is not accepted (2048 to 4096)", n)
		}
		return nil
	}
	return fmt.Errorf("%T keys are not accepted (ECDSA P-256/P-384 or RSA)", pub)
}

// serialNumber returns a random positive 128-bit serial, as RFC 5280 and
// the CA/Browser baseline ask (at least 64 bits of entropy).
func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("ca: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
