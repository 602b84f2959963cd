package ca_test

import (
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/trust/ca"
)

func mustKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustASN1(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func basicConstraints(t testing.TB, isCA bool) pkix.Extension {
	type bc struct {
		IsCA bool `asn1:"optional"`
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: mustASN1(t, bc{IsCA: isCA})}
}

func bigOne() *big.Int { return big.NewInt(1) }

var verify = x509svid.Verify
