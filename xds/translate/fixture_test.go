package translate_test

import (
	"os"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/translate"
)

func labelled(e *registry.Endpoint, kv ...string) *registry.Endpoint {
	e.Labels = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		e.Labels[kv[i]] = kv[i+1]
	}
	return e
}

// policies loads and compiles testdata files (default policies.yaml).
func policies(t testing.TB, files ...string) *translate.Policies {
	t.Helper()
	if len(files) == 0 {
		files = []string{"policies.yaml"}
	}
	var objs []v1alpha1.Object
	for _, f := range files {
		b, err := os.ReadFile("testdata/" + f)
		if err != nil {
			t.Fatal(err)
		}
		o, err := v1alpha1.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
	}
	p, err := translate.CompilePolicies(objs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func svc(ns, name string, ports ...registry.ServicePort) *registry.Service {
	return &registry.Service{Namespace: ns, Name: name, Ports: ports}
}

func ep(ns, name, id, portName string, port uint32, loc string, h registry.Health, addrs ...string) *registry.Endpoint {
	l, err := registry.ParseLocality(loc)
	if err != nil {
		panic(err)
	}
	return &registry.Endpoint{
		Service: registry.ServiceKey{Namespace: ns, Name: name}, ID: id, PortName: portName,
		Addresses: addrs, Port: port, Locality: l, Health: h,
	}
}

// threeClusters is the lab of DESIGN.md: an on-prem cluster on its own
// network behind two east-west gateways (one published by IP, one by DNS
// name), and two EKS clusters sharing the "aws" network, the EU one cut off
// from the control planes (its endpoints turn stale). Frontend and ledger
// endpoints run as service accounts of those names.
func threeClusters(t testing.TB) *registry.Registry {
	t.Helper()
	r := registry.New(registry.Options{})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.SetCluster(registry.Cluster{Name: "onprem-dc1", Region: "onprem-east", Network: "onprem", Labels: map[string]string{"provider": "onprem"}, Gateways: []string{"192.0.2.10:15443", "gw.dc1.example.com:15443"}}))
	must(r.SetCluster(registry.Cluster{Name: "eks-use1", Region: "us-east-1", Network: "aws", Labels: map[string]string{"provider": "eks"}, Gateways: []string{"198.51.100.1:15443"}}))
	must(r.SetCluster(registry.Cluster{Name: "eks-euw1", Region: "eu-west-1", Network: "aws", Labels: map[string]string{"provider": "eks", "jurisdiction": "eu"}, Gateways: []string{"198.51.100.20:15443"}}))

	http80 := registry.ServicePort{Port: 80, Protocol: registry.ProtocolHTTP}
	checkout := []registry.ServicePort{{Name: "grpc", Port: 9090, Protocol: registry.ProtocolGRPC}, {Name: "http-metrics", Port: 9102, Protocol: registry.ProtocolHTTP}}
	sa := func(e *registry.Endpoint, account string) *registry.Endpoint {
		e.ServiceAccount = account
		return e
	}
	_, err := r.Apply("eks-use1",
		registry.PutService(svc("shop", "frontend", http80)),
		registry.PutService(svc("shop", "checkout", checkout...)),
		registry.PutService(svc("shop", "lonely", registry.ServicePort{Port: 8080, Protocol: registry.ProtocolHTTP})),
		registry.PutEndpoint(sa(labelled(ep("shop", "frontend", "frontend-a1", "", 8080, "us-east-1/us-east-1a", registry.Healthy, "10.1.0.1", "fd00::1"), "version", "v1"), "frontend")),
		registry.PutEndpoint(labelled(ep("shop", "frontend", "frontend-a2", "", 8080, "us-east-1/us-east-1a", registry.Draining, "10.1.0.2"), "version", "v2")),
		registry.PutEndpoint(ep("shop", "frontend", "frontend-b1", "", 8080, "us-east-1/us-east-1b", registry.Healthy, "10.1.1.1")),
		registry.PutEndpoint(ep("shop", "checkout", "checkout-a1", "grpc", 9090, "us-east-1/us-east-1a", registry.Healthy, "10.1.0.5")),
		registry.PutEndpoint(ep("shop", "checkout", "checkout-a1", "http-metrics", 9102, "us-east-1/us-east-1a", registry.Healthy, "10.1.0.5")),
		registry.PutEndpoint(ep("shop", "ghost", "ghost-1", "", 80, "us-east-1/us-east-1a", registry.Healthy, "10.1.0.9")),
		// A ledger replica outside the EU: the residency rule of
		// testdata/policies.yaml keeps it from every client.
		registry.PutEndpoint(sa(ep("data", "ledger", "ledger-us", "", 5432, "us-east-1/us-east-1a", registry.Healthy, "10.1.0.20"), "ledger")),
	)
	must(err)
	_, err = r.Apply("eks-euw1",
		registry.PutService(svc("data", "ledger", registry.ServicePort{Port: 5432, Protocol: registry.ProtocolTCP})),
		registry.PutService(svc("shop", "frontend", http80)),
		registry.PutEndpoint(sa(ep("data", "ledger", "ledger-0", "", 5432, "eu-west-1/eu-west-1a", registry.Healthy, "10.2.0.1"), "ledger")),
		registry.PutEndpoint(ep("data", "ledger", "ledger-1", "", 5432, "eu-west-1/eu-west-1b", registry.Unhealthy, "10.2.1.1")),
		registry.PutEndpoint(sa(ep("shop", "frontend", "frontend-eu", "", 8080, "eu-west-1/eu-west-1a", registry.Healthy, "10.2.0.7"), "frontend")),
		registry.PutEndpoint(ep("shop", "checkout", "checkout-eu", "grpc", 9090, "eu-west-1/eu-west-1b", registry.Unhealthy, "10.2.1.5")),
	)
	must(err)
	_, err = r.Apply("onprem-dc1",
		registry.PutService(svc("data", "cache", registry.ServicePort{Port: 6379, Protocol: registry.ProtocolTLS})),
		registry.PutService(svc("data", "reports", registry.ServicePort{Port: 5432, Protocol: registry.ProtocolTCP})),
		registry.PutEndpoint(ep("data", "cache", "cache-0", "", 6379, "onprem-east/dc1-z1", registry.Healthy, "172.16.0.1")),
		registry.PutEndpoint(ep("data", "reports", "reports-0", "", 5432, "onprem-east/dc1-z1", registry.Healthy, "172.16.0.3")),
		registry.PutEndpoint(sa(ep("shop", "frontend", "frontend-dc1", "", 8080, "onprem-east/dc1-z1", registry.Healthy, "172.16.0.2"), "frontend-legacy")),
		registry.PutEndpoint(ep("shop", "frontend", "frontend-dc2", "", 8080, "onprem-east/dc1-z1", registry.Stale, "172.16.0.4")),
	)
	must(err)
	must(r.SetStatus("eks-euw1", registry.ClusterStatus{State: registry.Unreachable, Since: time.Unix(1700000000, 0), LastSeen: time.Unix(1700000000, 0)}))
	return r
}
