package bundle

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxUpdateSize bounds an encoded update before it is parsed: a bundle
// with a dozen roots is under 16 KiB.
const MaxUpdateSize = 64 << 10

// Update is a trust bundle as the mesh passes it between clusters: the
// SPIFFE bundle of the mesh's trust domain (roots, sequence number, refresh
// hint) signed by one of the roots of the bundle it replaces. A member
// accepts an update only when that signer is a root it already trusts, so
// no member can slip a root of its own into everyone's bundle.
type Update struct {
	Bundle *spiffebundle.Bundle
	// SignerID is KeyID of the signing root's public key.
	SignerID string

	jws *jose.JSONWebSignature
}

type payload struct {
	TrustDomain string          `json:"trustDomain"`
	Bundle      json.RawMessage `json:"bundle"`
}

// KeyID names a root by its public key: hex SHA-256 of its
// SubjectPublicKeyInfo.
func KeyID(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// Sign encodes b as an update signed by signer (a root certificate) with
// key. b must carry a sequence number. The result is a compact JWS: the
// bytes federation stores and gossips.
func Sign(b *spiffebundle.Bundle, signer *x509.Certificate, key crypto.Signer) ([]byte, error) {
	if _, ok := b.SequenceNumber(); !ok {
		return nil, errors.New("bundle: sign: the bundle needs a sequence number")
	}
	doc, err := b.Marshal()
	if err != nil {
		return nil, fmt.Errorf("bundle: sign: %w", err)
	}
	body, err := json.Marshal(payload{TrustDomain: b.TrustDomain().Name(), Bundle: doc})
	if err != nil {
		return nil, fmt.Errorf("bundle: sign: %w", err)
	}
	alg, err := algorithm(key.Public())
	if err != nil {
		return nil, err
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key},
		(&jose.SignerOptions{}).WithType("meridian-bundle+jws").WithHeader(jose.HeaderKey("kid"), KeyID(signer)))
	if err != nil {
		return nil, fmt.Errorf("bundle: sign: %w", err)
	}
	jws, err := s.Sign(body)
	if err != nil {
		return nil, fmt.Errorf("bundle: sign: %w", err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		return nil, fmt.Errorf("bundle: sign: %w", err)
	}
	return []byte(out), nil
}

var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256}

func algorithm(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		}
	case *rsa.PublicKey:
		return jose.RS256, nil
	}
	return "", fmt.Errorf("bundle: cannot sign with a %T key", pub)
}

// Decode parses an update without deciding whether to trust it (Merge
// does). Malformed input is an error, never a panic.
func Decode(data []byte) (*Update, error) {
	if len(data) > MaxUpdateSize {
		return nil, fmt.Errorf("bundle: decode: update of %d bytes exceeds %d", len(data), MaxUpdateSize)
	}
	jws, err := jose.ParseSignedCompact(string(data), algorithms)
	if err != nil {
		return nil, fmt.Errorf("bundle: decode: %w", err)
	}
	if len(jws.Signatures) != 1 || jws.Signatures[0].Header.KeyID == "" {
		return nil, errors.New("bundle: decode: want one signature naming its key")
	}
	var p payload
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &p); err != nil {
		return nil, fmt.Errorf("bundle: decode: %w", err)
	}
	td, err := spiffeid.TrustDomainFromString(p.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("bundle: decode: %w", err)
	}
	b, err := spiffebundle.Parse(td, p.Bundle)
	if err != nil {
		return nil, fmt.Errorf("bundle: decode: %w", err)
	}
	if _, ok := b.SequenceNumber(); !ok {
		return nil, errors.New("bundle: decode: no sequence number")
	}
	if len(b.X509Authorities()) == 0 {
		return nil, errors.New("bundle: decode: no X.509 roots")
	}
	return &Update{Bundle: b, SignerID: jws.Signatures[0].Header.KeyID, jws: jws}, nil
}

// Merge decides what a member's bundle becomes when an update arrives.
// It returns the bundle to hold and whether it changed:
//
//   - an update for another trust domain, or signed by a key that is not a
//     root of current, is an error (and changes nothing);
//   - a higher sequence number replaces current;
//   - the same or a lower one is ignored (stale or already held), unless the
//     same number carries different roots, which is an error: only the root
//     holder issues updates, so two different bundles with one number mean
//     something is wrong.
//
// Every member applying the same updates in any order ends with the same
// bundle: the one with the highest sequence number.
func Merge(current *spiffebundle.Bundle, data []byte) (*spiffebundle.Bundle, bool, error) {
	u, err := Decode(data)
	if err != nil {
		return current, false, err
	}
	if u.Bundle.TrustDomain() != current.TrustDomain() {
		return current, false, fmt.Errorf("bundle: merge: update for %s, this bundle is %s", u.Bundle.TrustDomain(), current.TrustDomain())
	}
	var signer *x509.Certificate
	for _, root := range current.X509Authorities() {
		if KeyID(root) == u.SignerID {
			signer = root
			break
		}
	}
	if signer == nil {
		return current, false, fmt.Errorf("bundle: merge: signed by key %.16s…, which is not a root of the current bundle", u.SignerID)
	}
	if _, err := u.jws.Verify(signer.PublicKey); err != nil {
		return current, false, fmt.Errorf("bundle: merge: signature: %w", err)
	}
	cur, _ := current.SequenceNumber()
	next, _ := u.Bundle.SequenceNumber()
	switch {
	case next > cur:
		return u.Bundle, true, nil
	case next == cur && !sameRoots(u.Bundle, current):
		return current, false, fmt.Errorf("bundle: merge: sequence %d already holds other roots", cur)
	}
	return current, false, nil
}

func sameRoots(a, b *spiffebundle.Bundle) bool {
	return a.X509Bundle().Equal(b.X509Bundle())
}

// Next returns the bundle that follows current: its roots plus add, minus
// remove, with the sequence number raised by one. A root rotation is two
// Nexts, each signed by a root the receivers already trust:
//
//	prepare: Next(b, [new], nil), signed by the old root
//	retire:  Next(b, nil, [old]), signed by the new root
func Next(current *spiffebundle.Bundle, add, remove []*x509.Certificate) *spiffebundle.Bundle {
	b := current.Clone()
	for _, c := range add {
		b.AddX509Authority(c)
	}
	for _, c := range remove {
		b.RemoveX509Authority(c)
	}
	seq, _ := current.SequenceNumber()
	b.SetSequenceNumber(seq + 1)
	return b
}
