package locality_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/registry"
)

// What meridianctl explain prints, in short: each level, why it is there,
// its localities with weight and endpoints, and the traffic share an
// Envoy-like proxy would send there.
func ExampleEngine_Assign() {
	r := registry.New(registry.Options{})
	for i, region := range []string{"us-east-1", "eu-west-1"} {
		cl := registry.Cluster{Name: fmt.Sprintf("c%d", i), Region: region}
		_ = r.SetCluster(cl)
		for j, zone := range []string{"a", "b"} {
			_, _ = r.Apply(cl.Name, registry.PutEndpoint(&registry.Endpoint{
				Service: registry.ServiceKey{Namespace: "shop", Name: "web"}, ID: zone, Port: 80,
				Addresses: []string{fmt.Sprintf("10.0.%d.%d", i, j+1)},
				Locality:  registry.Locality{Region: region, Zone: region + zone},
			}))
		}
	}
	policy, _ := v1alpha1.Load([]byte(`
apiVersion: meridian.io/v1alpha1
kind: FailoverPolicy
metadata: {name: web, namespace: shop}
spec:
  failover:
  - from: us-east-1
    to: [eu-west-1]
`), v1alpha1.LoadOptions{})
	engine, _ := locality.New(locality.Config{Policies: policy})
	client := locality.Client{Locality: registry.Locality{Region: "us-east-1", Zone: "us-east-1a"}}
	a := engine.Assign(r.View(), registry.ServiceKey{Namespace: "shop", Name: "web"}, client)
	for p, l := range a.Levels {
		var locs []string
		for _, le := range l.Localities {
			locs = append(locs, fmt.Sprintf("%s (weight %d, %d/%d serving)", le.Locality, le.Weight, le.Serving(), len(le.Endpoints)))
		}
		fmt.Printf("P%d %s: %s\n", p, l.Reason.Rule, strings.Join(locs, ", "))
	}
	for _, s := range a.Distribution(locality.LoadOptions{}) {
		fmt.Printf("%s gets %.0f%%\n", s.Locality, s.Percent)
	}
	// Output:
	// P0 the client's own zone: us-east-1/us-east-1a (weight 1, 1/1 serving)
	// P1 the client's own region, other zones: us-east-1/us-east-1b (weight 1, 1/1 serving)
	// P2 failover to eu-west-1 (choice 1 for clients in us-east-1): eu-west-1/eu-west-1a (weight 1, 1/1 serving), eu-west-1/eu-west-1b (weight 1, 1/1 serving)
	// us-east-1/us-east-1a gets 100%
}

// explain --output json and drill --output json are plain encodings.
func TestOutputsEncodeAsJSON(t *testing.T) {
	v := lab(t, web, payments).View()
	e := engine(t, locality.Config{Policies: []v1alpha1.Object{residency("eu", euOnly)}})
	a := e.Assign(v, payments, client(use1, "use1-az1"))
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"health":"healthy"`, `"rule":"other regions"`, `"policy":"ResidencyRule shop/eu"`, `"consecutive5xxErrors":3`, `"blocked":[{"endpoint":{"cluster":"eks-use1"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("assignment JSON lacks %s:\n%s", want, b)
		}
	}
	rep := e.WhatIf(v, locality.Target{Kind: locality.TargetRegion, Name: "eu-west-1"}, nil)
	b, err = json.Marshal(rep)
	if err != nil || !strings.Contains(string(b), `"stranded":[{"namespace":"shop","name":"payments"}]`) {
		t.Errorf("drill JSON %s (%v)", b, err)
	}
}
