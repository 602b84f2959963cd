package ca_test

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/internal/trusttest"
)

// BenchmarkSignCSR is the whole signing path of one SVID with P-256: size
// check, CSR parse, key and signature check, SAN and extension checks,
// signing, and the re-parse of the result. bench/trust.sh prints it as
// SVIDs per second, serial and on all cores.
func BenchmarkSignCSR(b *testing.B) {
	c := trusttest.NewCA(b, td, "a")
	csr := trusttest.CSR(b, mustKey(b), nil)
	req := ca.SignRequest{CSR: csr, ID: spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/web")}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Authority.SignCSR(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Authority.SignCSR(req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
