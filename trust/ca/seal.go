package ca

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
)

// Environment variables that hold the key encrypting CA keys at rest. The
// first set wins: MERIDIAN_TRUST_KEY is the key itself (base64 of 32
// bytes), MERIDIAN_TRUST_KEY_FILE a file holding it (base64 text or 32 raw
// bytes). Generate one with `head -c32 /dev/urandom | base64`.
const (
	EnvKey     = "MERIDIAN_TRUST_KEY"
	EnvKeyFile = "MERIDIAN_TRUST_KEY_FILE"
)

// Sealer encrypts CA private keys before they reach etcd, with AES-256-GCM.
// The etcd key a value is stored under is its additional data, so a sealed
// value copied to another key does not open. Sealed values start with a
// version byte and the first 4 bytes of the key's SHA-256, so opening with
// the wrong key says so instead of a bare authentication failure.
type Sealer struct {
	aead  cipher.AEAD
	keyID [4]byte
}

const sealVersion = 1

// NewSealer takes a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("ca: sealing key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("ca: sealing key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("ca: sealing key: %w", err)
	}
	s := &Sealer{aead: aead}
	sum := sha256.Sum256(key)
	copy(s.keyID[:], sum[:])
	return s, nil
}

// LoadSealer reads the sealing key from path when it is not empty, else
// from MERIDIAN_TRUST_KEY or MERIDIAN_TRUST_KEY_FILE.
func LoadSealer(path string) (*Sealer, error) {
	var raw []byte
	switch {
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("ca: sealing key: %w", err)
		}
		raw = b
	case os.Getenv(EnvKey) != "":
		raw = []byte(os.Getenv(EnvKey))
	case os.Getenv(EnvKeyFile) != "":
		b, err := os.ReadFile(os.Getenv(EnvKeyFile))
		if err != nil {
			return nil, fmt.Errorf("ca: sealing key from $%s: %w", EnvKeyFile, err)
		}
		raw = b
	default:
		return nil, fmt.Errorf("ca: no sealing key: set $%s or $%s, or pass a key file", EnvKey, EnvKeyFile)
	}
	if len(raw) == 32 {
		return NewSealer(raw)
	}
	key, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(raw)))
	if err != nil {
		return nil, fmt.Errorf("ca: sealing key is neither 32 raw bytes nor base64: %w", err)
	}
	return NewSealer(key)
}

// KeyID identifies the sealing key (hex of the first 4 bytes of its
// SHA-256), for logs and error messages; it reveals nothing usable.
func (s *Sealer) KeyID() string { return hex.EncodeToString(s.keyID[:]) }

// Seal encrypts plaintext bound to aad (the etcd key).
func (s *Sealer) Seal(plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, 1+4+s.aead.NonceSize(), 1+4+s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	out[0] = sealVersion
	copy(out[1:5], s.keyID[:])
	if _, err := rand.Read(out[5:]); err != nil {
		return nil, fmt.Errorf("ca: seal: %w", err)
	}
	return s.aead.Seal(out, out[5:], plaintext, aad), nil
}

// Open decrypts what Seal produced for the same aad.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	head := 1 + 4 + s.aead.NonceSize()
	if len(sealed) < head+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, errors.New("ca: open: not a sealed value")
	}
	if !bytes.Equal(sealed[1:5], s.keyID[:]) {
		return nil, fmt.Errorf("ca: open: sealed with key %x, this sealing key is %s", sealed[1:5], s.KeyID())
	}
	pt, err := s.aead.Open(nil, sealed[5:head], sealed[head:], aad)
	if err != nil {
		return nil, fmt.Errorf("ca: open %s: %w", aad, err)
	}
	return pt, nil
}
