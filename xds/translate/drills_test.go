package translate_test

import (
	"testing"

	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/xds/translate"
)

func TestWithDrainsKeepsThePolicies(t *testing.T) {
	p, err := translate.CompilePolicies(nil)
	if err != nil {
		t.Fatal(err)
	}
	drain := locality.Target{Kind: locality.TargetRegion, Name: "r1"}
	d := p.WithDrains(drain)
	if got := d.Engine().Config().Drains; len(got) != 1 || got[0] != drain {
		t.Fatalf("drained engine has drains %v", got)
	}
	if got := p.Engine().Config().Drains; len(got) != 0 {
		t.Fatalf("WithDrains changed the original: %v", got)
	}
	var none *translate.Policies
	if got := none.WithDrains(drain).Engine().Config().Drains; len(got) != 1 {
		t.Fatalf("nil policies with drains: %v", got)
	}
}
