package v1alpha1_test

import (
	"testing"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
)

func TestResolveKind(t *testing.T) {
	for in, want := range map[string]string{
		"FailoverPolicy": "FailoverPolicy", "failoverpolicy": "FailoverPolicy", "failoverpolicies": "FailoverPolicy",
		"fop": "FailoverPolicy", "RR": "ResidencyRule", "residencyrules": "ResidencyRule", "gw": "Gateway",
		"ServiceEntries": "ServiceEntry", "dp": "DestinationPolicy", "trafficroute": "TrafficRoute",
	} {
		k, ok := v1alpha1.ResolveKind(in)
		if !ok || k.Name != want {
			t.Errorf("ResolveKind(%q) = %q, %v; want %q", in, k.Name, ok, want)
		}
	}
	for _, in := range []string{"", "pods", "failover", "Drill", "fops"} {
		if k, ok := v1alpha1.ResolveKind(in); ok {
			t.Errorf("ResolveKind(%q) = %q; want no kind", in, k.Name)
		}
	}
}
