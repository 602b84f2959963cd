// Package meshtest builds the three-region lab topology of DESIGN.md in a
// registry, for tests of the packages that decide over it (locality, the
// policy API): on-prem, US and EU (the last with jurisdiction=eu), two
// zones each, two endpoints per zone for every service.
package meshtest

import (
	"fmt"
	"testing"

	"github.com/meridian-mesh/meridian/registry"
)

// The lab's clusters.
var (
	OnPrem = registry.Cluster{Name: "onprem-dc1", Region: "onprem-east", Network: "net-onprem", Labels: map[string]string{"provider": "onprem", "jurisdiction": "us"}}
	USE1   = registry.Cluster{Name: "eks-use1", Region: "us-east-1", Network: "net-us", Labels: map[string]string{"provider": "eks", "jurisdiction": "us"}}
	EUW1   = registry.Cluster{Name: "eks-euw1", Region: "eu-west-1", Network: "net-eu", Labels: map[string]string{"provider": "eks", "jurisdiction": "eu"}}
)

// Clusters lists the lab's clusters.
func Clusters() []registry.Cluster { return []registry.Cluster{OnPrem, USE1, EUW1} }

// Zones are each cluster's zones.
var Zones = map[string][]string{
	"onprem-dc1": {"dc1-a", "dc1-b"},
	"eks-use1":   {"use1-az1", "use1-az2"},
	"eks-euw1":   {"euw1-az1", "euw1-az2"},
}

// Lab returns a registry holding the lab's clusters and, for each service,
// a definition (gRPC port 8080, label app=NAME) and two endpoints in every
// zone of every cluster.
func Lab(t testing.TB, services ...registry.ServiceKey) *registry.Registry {
	t.Helper()
	r := registry.New(registry.Options{})
	ip := 1
	for _, cl := range Clusters() {
		if err := r.SetCluster(cl); err != nil {
			t.Fatal(err)
		}
		var changes []registry.Change
		for _, svc := range services {
			changes = append(changes, registry.PutService(&registry.Service{Namespace: svc.Namespace, Name: svc.Name,
				Ports: []registry.ServicePort{{Port: 8080, Protocol: registry.ProtocolGRPC}}, Labels: map[string]string{"app": svc.Name}}))
			for _, z := range Zones[cl.Name] {
				for i := range 2 {
					changes = append(changes, registry.PutEndpoint(&registry.Endpoint{
						Service: svc, ID: fmt.Sprintf("%s-%s-%d", svc.Name, z, i), Addresses: []string{fmt.Sprintf("10.%d.%d.%d", ip/65536, ip/256%256, ip%256)},
						Port: 8080, Locality: registry.Locality{Region: cl.Region, Zone: z}, Network: cl.Network,
					}))
					ip++
				}
			}
		}
		if _, err := r.Apply(cl.Name, changes...); err != nil {
			t.Fatal(err)
		}
	}
	return r
}
