package locality_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/registry"
)

var (
	regions       = []string{"onprem-east", "us-east-1", "us-west-2", "eu-west-1", "eu-central-1"}
	jurisdictions = map[string]string{"onprem-east": "us", "us-east-1": "us", "us-west-2": "us", "eu-west-1": "eu", "eu-central-1": "eu"}
)

// randomMesh builds a random mesh: clusters in random regions, random
// endpoints per service, random endpoint health and cluster states.
func randomMesh(t *testing.T, rng *rand.Rand, services []registry.ServiceKey) *registry.Registry {
	t.Helper()
	r := registry.New(registry.Options{})
	nClusters := 1 + rng.IntN(5)
	for c := range nClusters {
		region := regions[rng.IntN(len(regions))]
		cl := registry.Cluster{Name: fmt.Sprintf("c%d", c), Region: region, Network: fmt.Sprintf("n%d", rng.IntN(2)),
			Labels: map[string]string{"jurisdiction": jurisdictions[region]}}
		if err := r.SetCluster(cl); err != nil {
			t.Fatal(err)
		}
		var changes []registry.Change
		for _, svc := range services {
			for i := range rng.IntN(6) {
				changes = append(changes, registry.PutEndpoint(&registry.Endpoint{
					Service: svc, ID: fmt.Sprintf("e%d", i), Addresses: []string{fmt.Sprintf("10.%d.%d.%d", c, len(changes)/250, len(changes)%250+1)}, Port: 80,
					Locality: registry.Locality{Region: region, Zone: fmt.Sprintf("z%d", rng.IntN(3))},
					Health:   registry.Health(rng.IntN(4)), Weight: uint32(rng.IntN(3)),
				}))
			}
		}
		if len(changes) > 0 {
			if _, err := r.Apply(cl.Name, changes...); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.SetStatus(cl.Name, registry.ClusterStatus{State: registry.ClusterState(rng.IntN(5))}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func randomPolicies(rng *rand.Rand) []v1alpha1.Object {
	var out []v1alpha1.Object
	switch rng.IntN(3) {
	case 0:
		from := regions[rng.IntN(len(regions))]
		var to []string
		for _, r := range rng.Perm(len(regions)) {
			if regions[r] != from && rng.IntN(2) == 0 {
				to = append(to, regions[r])
			}
		}
		if len(to) > 0 {
			out = append(out, failover("fo", v1alpha1.FailoverPolicySpec{Failover: []v1alpha1.RegionFailover{{From: from, To: to}}}))
		}
	case 1:
		out = append(out, failover("fo", v1alpha1.FailoverPolicySpec{FailoverPriority: []string{"jurisdiction", "region", "zone"},
			Distribute: []v1alpha1.Distribute{{From: "*", To: []v1alpha1.DistributeTarget{{Locality: "us-east-1/*", Weight: 60}, {Locality: "eu-west-1/z1", Weight: 40}}}}}))
	}
	for i := range rng.IntN(3) {
		spec := v1alpha1.ResidencyRuleSpec{Mode: []v1alpha1.ResidencyMode{"", v1alpha1.ResidencyEnforce, v1alpha1.ResidencyAudit}[rng.IntN(3)]}
		if rng.IntN(2) == 0 {
			spec.Selector.Services = []string{"pay"}
		}
		if rng.IntN(2) == 0 {
			for _, r := range regions {
				if rng.IntN(2) == 0 {
					spec.AllowedRegions = append(spec.AllowedRegions, r)
				}
			}
		}
		if len(spec.AllowedRegions) == 0 || rng.IntN(2) == 0 {
			spec.ClusterSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"jurisdiction": []string{"eu", "us"}[rng.IntN(2)]}}
		}
		out = append(out, residency(fmt.Sprintf("r%d", i), spec))
	}
	return out
}

// allowed is the residency oracle, written independently of the engine:
// an endpoint may serve a service when every enforced rule selecting the
// service allows its region and its cluster's labels.
func allowed(v *registry.View, rules []v1alpha1.Object, svc registry.ServiceKey, e *registry.Endpoint) bool {
	def, _ := v.Service(svc)
	var lbls map[string]string
	if def != nil {
		lbls = def.Labels
	}
	cl := v.Segment(e.Cluster).Cluster()
	for _, o := range rules {
		r, ok := o.(*v1alpha1.ResidencyRule)
		if !ok || !r.Spec.Enforced() || r.Namespace != svc.Namespace || !r.Spec.Selector.Matches(svc.Name, lbls) {
			continue
		}
		if len(r.Spec.AllowedRegions) > 0 && !slices.Contains(r.Spec.AllowedRegions, e.Locality.Region) {
			return false
		}
		if r.Spec.ClusterSelector != nil && r.Spec.ClusterSelector.MatchLabels["jurisdiction"] != cl.Labels["jurisdiction"] {
			return false
		}
	}
	return true
}

// Properties over random meshes, policies, health patterns, drills and
// clients: no endpoint outside an enforced residency rule's allowed set
// appears at any priority; every allowed endpoint appears exactly once;
// priorities have no gaps and no zero weights; priority loads sum to 100.
func TestPropertiesRandomMeshes(t *testing.T) {
	services := []registry.ServiceKey{{Namespace: "shop", Name: "pay"}, {Namespace: "shop", Name: "web"}}
	rng := rand.New(rand.NewPCG(42, 7))
	for iter := range 400 {
		r := randomMesh(t, rng, services)
		v := r.View()
		policies := randomPolicies(rng)
		var drains []locality.Target
		if rng.IntN(3) == 0 {
			drains = append(drains, locality.Target{Kind: locality.TargetRegion, Name: regions[rng.IntN(len(regions))]})
		}
		e := engine(t, locality.Config{Policies: policies, Drains: drains})
		clients := locality.ClientsOf(v)
		clients = append(clients, locality.Client{Locality: registry.Locality{Region: regions[rng.IntN(len(regions))], Zone: "z1"}, Labels: map[string]string{"jurisdiction": "eu"}})
		for _, svc := range services {
			all := v.Endpoints(svc)
			for _, c := range clients {
				a := e.Assign(v, svc, c)
				seen := map[registry.EndpointRef]bool{}
				for p, l := range a.Levels {
					if len(l.Localities) == 0 {
						t.Fatalf("iter %d: empty level %d", iter, p)
					}
					for _, le := range l.Localities {
						if le.Weight == 0 || len(le.Endpoints) == 0 {
							t.Fatalf("iter %d: locality %s weight %d endpoints %d", iter, le.Locality, le.Weight, len(le.Endpoints))
						}
						for _, ep := range le.Endpoints {
							if !allowed(v, policies, svc, ep.Endpoint) {
								t.Fatalf("iter %d: residency violated: %s/%s in %s offered to %+v at priority %d", iter, ep.Cluster, ep.ID, ep.Locality, c.Locality, p)
							}
							ref := registry.EndpointRef{Cluster: ep.Cluster, EndpointKey: ep.Key()}
							if seen[ref] {
								t.Fatalf("iter %d: %v twice", iter, ref)
							}
							seen[ref] = true
						}
					}
				}
				for _, ep := range all {
					ref := registry.EndpointRef{Cluster: ep.Cluster, EndpointKey: ep.Key()}
					if allowed(v, policies, svc, ep) != seen[ref] {
						t.Fatalf("iter %d: allowed endpoint %v missing (or blocked one present)", iter, ref)
					}
				}
				if len(seen)+len(a.Blocked) != len(all) {
					t.Fatalf("iter %d: %d served + %d blocked != %d endpoints", iter, len(seen), len(a.Blocked), len(all))
				}
				if len(a.Levels) > 0 {
					load := a.PriorityLoad(locality.LoadOptions{})
					var sum uint32
					for p := range a.Levels {
						sum += load.Total(p)
					}
					if sum != 100 {
						t.Fatalf("iter %d: load %+v", iter, load)
					}
					var share float64
					for _, s := range a.Distribution(locality.LoadOptions{}) {
						share += s.Percent
						if !allowed(v, policies, svc, firstEndpointIn(a, s.Locality)) {
							t.Fatalf("iter %d: traffic share to a blocked locality", iter)
						}
					}
					if a.Serving() > 0 && (share < 99.999 || share > 100.001) {
						t.Fatalf("iter %d: distribution sums to %f", iter, share)
					}
				}
			}
		}
	}
}

func firstEndpointIn(a locality.Assignment, l registry.Locality) *registry.Endpoint {
	for _, lv := range a.Levels {
		for _, le := range lv.Localities {
			if le.Locality == l {
				return le.Endpoints[0].Endpoint
			}
		}
	}
	return nil
}
