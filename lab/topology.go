package lab

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meridian-mesh/meridian/registry"
)

// Namespace is where the demo application lives.
const Namespace = "shop"

// GatewayNamespace is where the lab's gateways run, as meridian-system
// holds them in Kubernetes.
const GatewayNamespace = "meridian-system"

// DemoPort is the gRPC port of every demo instance.
const DemoPort = 9090

// Cluster is one cluster of the lab: its registry identity and its zones.
type Cluster struct {
	registry.Cluster
	Zones []string `json:"zones"`
}

// Known are the clusters of DESIGN.md's lab, in start order.
var Known = []Cluster{
	{registry.Cluster{Name: "onprem-dc1", Region: "onprem-east", Labels: map[string]string{"provider": "onprem", "jurisdiction": "us"}}, []string{"dc1-a", "dc1-b"}},
	{registry.Cluster{Name: "eks-use1", Region: "us-east-1", Labels: map[string]string{"provider": "eks", "jurisdiction": "us"}}, []string{"use1-az1", "use1-az2"}},
	{registry.Cluster{Name: "eks-euw1", Region: "eu-west-1", Labels: map[string]string{"provider": "eks", "jurisdiction": "eu"}}, []string{"euw1-az1", "euw1-az2"}},
}

// ParseClusters reads --clusters: names of Known clusters, or new ones as
// NAME=REGION (two zones, REGION-a and REGION-b), separated by commas.
func ParseClusters(specs []string) ([]Cluster, error) {
	var out []Cluster
	for _, s := range specs {
		s = strings.TrimSpace(s)
		name, region, custom := strings.Cut(s, "=")
		var c Cluster
		if custom {
			if errs := validation.IsDNS1123Label(region); len(errs) > 0 {
				return nil, fmt.Errorf("--clusters %q: region %q: %s", s, region, errs[0])
			}
			c = Cluster{registry.Cluster{Name: name, Region: region, Labels: map[string]string{"provider": "lab"}}, []string{region + "-a", region + "-b"}}
		} else {
			i := slices.IndexFunc(Known, func(k Cluster) bool { return k.Name == name })
			if i < 0 {
				return nil, fmt.Errorf("--clusters %q: not a lab cluster (%s); give a new one as NAME=REGION", s, strings.Join(knownNames(), ", "))
			}
			c = Known[i]
		}
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 || len(name) > 20 {
			return nil, fmt.Errorf("--clusters %q: name %q must be a DNS label of at most 20 characters", s, name)
		}
		if slices.ContainsFunc(out, func(o Cluster) bool { return o.Name == name }) {
			return nil, fmt.Errorf("--clusters: %q is given twice", name)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--clusters: give at least one cluster")
	}
	if len(out) > maxClusters {
		return nil, fmt.Errorf("--clusters: at most %d clusters", maxClusters)
	}
	return out, nil
}

const maxClusters = 9

func knownNames() []string {
	out := make([]string, len(Known))
	for i, k := range Known {
		out[i] = k.Name
	}
	return out
}

// Instance is one instance of a demo service in a cluster.
type Instance struct {
	Service string `json:"service"`
	Version string `json:"version,omitempty"`
	Zone    string `json:"zone"`
	// Address is IP:port, filled in when the lab is planned: the
	// instance's, or its sidecar's inbound port.
	Address string `json:"address"`
	// App is where the application listens behind its sidecar
	// (127.0.0.1:PORT), with sidecars only.
	App string `json:"app,omitempty"`
	// Upstreams are the services it calls on every request.
	Upstreams []string `json:"upstreams,omitempty"`
	// Stray marks an instance a residency rule must keep unused: a copy
	// of an EU-only service running outside the EU.
	Stray bool `json:"stray,omitempty"`
}

// ServiceAccount is the service account an instance runs as (its
// sidecar's SVID) and is registered or published with: its service's
// name, so that a client verifies the SVIDs of exactly the service it
// called, and AuthorizationPolicies can name it.
func (in Instance) ServiceAccount() string { return in.Service }

// The demo services.
const (
	Frontend        = "frontend"
	Catalog         = "catalog"
	Inventory       = "inventory"
	CustomerRecords = "customer-records"
)

var upstreams = map[string][]string{Frontend: {Catalog}, Catalog: {Inventory}}

// instances returns the demo instances of a cluster: frontend → catalog →
// inventory everywhere (catalog v1 on-prem, v1 and v2 in us-east-1, v2 in
// the EU), and customer-records in the EU — plus a stray copy outside it
// when an EU cluster is in the lab, which the residency rule must never
// let anyone use.
func instances(c Cluster, euInLab bool) []Instance {
	z0, z1 := c.Zones[0], c.Zones[len(c.Zones)-1]
	in := func(svc, version, zone string) Instance {
		return Instance{Service: svc, Version: version, Zone: zone, Upstreams: upstreams[svc]}
	}
	var out []Instance
	switch c.Name {
	case "onprem-dc1":
		out = []Instance{in(Frontend, "", z0), in(Catalog, "v1", z0), in(Catalog, "v1", z1), in(Inventory, "", z0), in(Inventory, "", z1)}
	case "eks-use1":
		out = []Instance{in(Frontend, "", z0), in(Catalog, "v1", z0), in(Catalog, "v2", z1), in(Inventory, "", z0), in(Inventory, "", z1)}
	case "eks-euw1":
		out = []Instance{in(Frontend, "", z0), in(Catalog, "v2", z0), in(Inventory, "", z0), in(Inventory, "", z1)}
	default:
		out = []Instance{in(Frontend, "", z0), in(Catalog, "v1", z0), in(Inventory, "", z1)}
	}
	switch {
	case isEU(c):
		out = append(out, in(CustomerRecords, "", z0), in(CustomerRecords, "", z1))
	case euInLab && c.Name == "eks-use1":
		stray := in(CustomerRecords, "", z0)
		stray.Stray = true
		out = append(out, stray)
	}
	return out
}

func isEU(c Cluster) bool { return c.Labels["jurisdiction"] == "eu" }

// policies returns the demo's policies for the lab's clusters, as YAML: a
// FailoverPolicy for the shop's services (each region fails over to the
// others, nearest first by the lab's order), when an EU cluster is in the
// lab a ResidencyRule keeping customer-records in it, and when permissive
// a PeerAuthentication letting plaintext into the sidecars
// (Options.Permissive); without, the mesh's default, STRICT, holds.
func policies(cs []Cluster, permissive bool) string {
	var b strings.Builder
	b.WriteString(`apiVersion: meridian.io/v1alpha1
kind: FailoverPolicy
metadata:
  name: shop-failover
  namespace: shop
spec:
  selector:
    services: [frontend, catalog, inventory]
`)
	var regions []string
	for _, c := range cs {
		if !slices.Contains(regions, c.Region) {
			regions = append(regions, c.Region)
		}
	}
	if len(regions) > 1 {
		b.WriteString("  failover:\n")
		for _, r := range regions {
			var to []string
			for _, o := range regions {
				if o != r {
					to = append(to, o)
				}
			}
			fmt.Fprintf(&b, "  - from: %s\n    to: [%s]\n", r, strings.Join(to, ", "))
		}
	}
	b.WriteString(`  outlierDetection:
    consecutive5xxErrors: 3
    interval: 1s
    baseEjectionTime: 10s
    maxEjectionPercent: 100
`)
	var eu []string
	for _, c := range cs {
		if isEU(c) && !slices.Contains(eu, c.Region) {
			eu = append(eu, c.Region)
		}
	}
	if len(eu) > 0 {
		fmt.Fprintf(&b, `---
apiVersion: meridian.io/v1alpha1
kind: ResidencyRule
metadata:
  name: customer-records-in-eu
  namespace: shop
spec:
  selector:
    services: [customer-records]
  allowedRegions: [%s]
  clusterSelector:
    matchLabels:
      jurisdiction: eu
  mode: enforce
`, strings.Join(eu, ", "))
	}
	if permissive {
		b.WriteString(`---
apiVersion: meridian.io/v1alpha1
kind: PeerAuthentication
metadata:
  name: lab-plaintext-clients
  namespace: shop
spec:
  mode: PERMISSIVE
`)
	}
	return b.String()
}
