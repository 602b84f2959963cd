package main

import (
	"testing"

	"github.com/meridian-mesh/meridian/xds/translate"
)

// BenchmarkTranslateAll is the per-proxy cost the naive baseline pays on
// every change: translating every type for one sidecar.
func BenchmarkTranslateAll(b *testing.B) {
	r, err := fill(1000, 10)
	if err != nil {
		b.Fatal(err)
	}
	in := translate.Input{View: r.View()}
	p, err := translate.ParseNode(nodeOf(0), translate.NodeDefaults{Cluster: benchCluster})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		for _, typ := range translate.Types {
			translate.Build(in, p.Scope(typ))
		}
	}
}
