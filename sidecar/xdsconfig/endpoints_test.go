package xdsconfig

import (
	"math/rand/v2"
	"strings"
	"testing"

	k8svalidation "k8s.io/apimachinery/pkg/util/validation"
)

// checkDNSName replaces Kubernetes' IsDNS1123Subdomain so that the proxy
// does not link apimachinery; it must accept and refuse the same names.
func TestCheckDNSNameAgreesWithKubernetes(t *testing.T) {
	names := []string{
		"", "a", "A", "-", "a-", "-a", "a.b", "a..b", ".a", "a.", "east.gw.example.com",
		"xn--bcher-kva.example", "1.2.3", "a_b", "a b", "ä.example", strings.Repeat("a", 253),
		strings.Repeat("a", 254), strings.Repeat("a.", 126) + "a", strings.Repeat("a.", 127),
	}
	rng := rand.New(rand.NewPCG(7, 11))
	const alphabet = "ab9-._A"
	for range 20000 {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		names = append(names, string(b))
	}
	for _, n := range names {
		ours, theirs := checkDNSName(n) == nil, len(k8svalidation.IsDNS1123Subdomain(n)) == 0
		if ours != theirs {
			t.Errorf("%q: checkDNSName accepts=%v, IsDNS1123Subdomain accepts=%v", n, ours, theirs)
		}
	}
}
