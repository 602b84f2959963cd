package translate_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/translate"
)

func node(t testing.TB, id string, meta map[string]any, features ...string) *core.Node {
	t.Helper()
	s, err := structpb.NewStruct(meta)
	if err != nil {
		t.Fatal(err)
	}
	return &core.Node{Id: id, Metadata: s, ClientFeatures: features}
}

func TestParseNode(t *testing.T) {
	defaults := translate.NodeDefaults{Cluster: "eks-use1"}
	for _, tc := range []struct {
		name    string
		node    *core.Node
		want    translate.Proxy
		wantErr string // substring; empty means success
	}{
		{
			name: "envoy with nothing set: sidecar in the default cluster and namespace",
			node: &core.Node{Id: "envoy-1"},
			want: translate.Proxy{ID: "envoy-1", Mode: translate.ModeSidecar, Cluster: "eks-use1", Namespace: "default"},
		},
		{
			name: "grpc-go: proxyless from its client feature",
			node: &core.Node{Id: "app-1", ClientFeatures: []string{translate.FeatureNoOverprovisioning}, Locality: &core.Locality{Region: "us-east-1", Zone: "us-east-1a"}},
			want: translate.Proxy{ID: "app-1", Mode: translate.ModeProxyless, Cluster: "eks-use1", Namespace: "default", NoOverprovisioning: true, Locality: registry.Locality{Region: "us-east-1", Zone: "us-east-1a"}},
		},
		{
			name: "everything in the metadata",
			node: node(t, "gw", map[string]any{"mode": "east-west", "cluster": "onprem-dc1", "namespace": "gateways", "service_account": "eastwest", "listener_port": 15444.0}),
			want: translate.Proxy{ID: "gw", Mode: translate.ModeEastWest, Cluster: "onprem-dc1", Namespace: "gateways", ServiceAccount: "eastwest", ListenerPort: 15444},
		},
		{
			name: "gateway port defaults, inbound ports as a string",
			node: node(t, "in", map[string]any{"mode": "ingress", "inbound_ports": "9090, 8080,8080"}),
			want: translate.Proxy{ID: "in", Mode: translate.ModeIngress, Cluster: "eks-use1", Namespace: "default", ListenerPort: 8080, InboundPorts: []uint32{8080, 9090}},
		},
		{
			name: "inbound ports as a list",
			node: node(t, "sc", map[string]any{"inbound_ports": []any{9090.0, "8080"}}),
			want: translate.Proxy{ID: "sc", Mode: translate.ModeSidecar, Cluster: "eks-use1", Namespace: "default", InboundPorts: []uint32{8080, 9090}},
		},
		{
			name: "labels, inbound protocols and the outbound traffic policy",
			node: node(t, "sc", map[string]any{"labels": map[string]any{"app": "web", "version": "v2"}, "inbound_ports": "8080/http, 9090/GRPC,5432", "outbound_traffic_policy": "REGISTRY_ONLY"}),
			want: translate.Proxy{ID: "sc", Mode: translate.ModeSidecar, Cluster: "eks-use1", Namespace: "default", Labels: map[string]string{"app": "web", "version": "v2"},
				InboundPorts: []uint32{5432, 8080, 9090}, InboundProtocols: map[uint32]registry.Protocol{8080: registry.ProtocolHTTP, 9090: registry.ProtocolGRPC}, RegistryOnly: true},
		},
		{name: "no node", node: nil, wantErr: "node: Required value"},
		{name: "labels not an object", node: node(t, "x", map[string]any{"labels": "app=web"}), wantErr: "node.metadata[labels]: Invalid value: \"app=web\": must be an object of string values"},
		{name: "label not a string", node: node(t, "x", map[string]any{"labels": map[string]any{"app": 1.0}}), wantErr: `label "app" must be a string`},
		{name: "bad label key", node: node(t, "x", map[string]any{"labels": map[string]any{"bad key": "v"}}), wantErr: "node.metadata[labels]"},
		{name: "unknown inbound protocol", node: node(t, "x", map[string]any{"inbound_ports": "8080/smtp"}), wantErr: `node.metadata[inbound_ports]: Invalid value: "8080/smtp": unknown protocol`},
		{name: "bad outbound policy", node: node(t, "x", map[string]any{"outbound_traffic_policy": "DENY"}), wantErr: `node.metadata[outbound_traffic_policy]: Unsupported value: "DENY"`},
		{name: "no id", node: &core.Node{}, wantErr: "node.id: Required value"},
		{name: "unknown mode", node: node(t, "x", map[string]any{"mode": "mesh-gateway"}), wantErr: `node.metadata[mode]: Unsupported value: "mesh-gateway"`},
		{name: "mode not a string", node: node(t, "x", map[string]any{"mode": 3.0}), wantErr: "node.metadata[mode]: Invalid value: \"3\": must be a string"},
		{name: "bad namespace", node: node(t, "x", map[string]any{"namespace": "Not_A_Label"}), wantErr: "node.metadata[namespace]"},
		{name: "bad cluster", node: node(t, "x", map[string]any{"cluster": ""}), wantErr: "node.metadata[cluster]"},
		{name: "port out of range", node: node(t, "x", map[string]any{"listener_port": 70000.0}), wantErr: "node.metadata[listener_port]: Invalid value: \"70000\": must be between 1 and 65535"},
		{name: "port fraction", node: node(t, "x", map[string]any{"listener_port": 80.5}), wantErr: "node.metadata[listener_port]"},
		{name: "inbound ports garbage", node: node(t, "x", map[string]any{"inbound_ports": "80,http"}), wantErr: "node.metadata[inbound_ports]"},
		{name: "inbound ports object", node: node(t, "x", map[string]any{"inbound_ports": map[string]any{"a": 1.0}}), wantErr: "node.metadata[inbound_ports]: Invalid value: \"an object\""},
		{name: "bad locality", node: &core.Node{Id: "x", Locality: &core.Locality{Zone: "z"}}, wantErr: "node.locality.region"},
		{name: "no cluster anywhere", node: &core.Node{Id: "x"}, wantErr: "node.metadata[cluster]: Required value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := defaults
			if tc.name == "no cluster anywhere" {
				d.Cluster = ""
			}
			got, err := translate.ParseNode(tc.node, d)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "translate: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !equalProxy(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func equalProxy(a, b translate.Proxy) bool {
	return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b)
}

// FuzzParseNode feeds arbitrary bytes, decoded as a Node, to ParseNode: it
// must never panic, and what it accepts must be usable.
func FuzzParseNode(f *testing.F) {
	for _, n := range []*core.Node{
		{Id: "a"},
		node(f, "b", map[string]any{"mode": "ingress", "listener_port": "8443", "inbound_ports": []any{1.0, "2"}}),
		node(f, "c", map[string]any{"mode": 1.0, "cluster": []any{}, "namespace": nil}),
		node(f, "e", map[string]any{"labels": map[string]any{"app": "x"}, "inbound_ports": "80/http,81", "outbound_traffic_policy": "REGISTRY_ONLY"}),
		{Id: "d", Locality: &core.Locality{Region: "r", Zone: "z", SubZone: "s"}, ClientFeatures: []string{translate.FeatureNoOverprovisioning}},
	} {
		b, err := proto.Marshal(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := &core.Node{}
		if proto.Unmarshal(b, n) != nil {
			return
		}
		p, err := translate.ParseNode(n, translate.NodeDefaults{Cluster: "c"})
		if err != nil {
			return
		}
		if p.ID == "" || p.Cluster == "" || p.Namespace == "" || p.Mode == "" {
			t.Fatalf("accepted an incomplete identity: %+v", p)
		}
		for _, typ := range append(translate.Types, translate.SecretType) {
			_ = p.Scope(typ).String()
		}
	})
}

// TestScopesGroupProxies checks that proxies share a scope exactly where
// their output is the same.
func TestScopesGroupProxies(t *testing.T) {
	a := translate.Proxy{ID: "a", Mode: translate.ModeSidecar, Cluster: "c1", Namespace: "ns1", Locality: useast1a}
	b := a
	b.ID, b.ServiceAccount = "b", "other"
	c := a
	c.Namespace = "ns2"
	d := a
	d.Locality.Zone = "us-east-1b"
	e := a
	e.Mode = translate.ModeProxyless
	for _, tc := range []struct {
		name string
		x, y translate.Proxy
		typ  string
		same bool
	}{
		{"replicas share everything", a, b, translate.ListenerType, true},
		{"replicas share endpoints", a, b, translate.EndpointType, true},
		{"namespaces differ in routes (short names)", a, c, translate.RouteType, false},
		{"namespaces share endpoints", a, c, translate.EndpointType, true},
		{"namespaces share clusters", a, c, translate.ClusterType, true},
		{"zones differ in endpoints", a, d, translate.EndpointType, false},
		{"zones share routes", a, d, translate.RouteType, true},
		{"sidecar and proxyless share endpoints", a, e, translate.EndpointType, true},
		{"sidecar and proxyless differ in listeners", a, e, translate.ListenerType, false},
	} {
		if got := tc.x.Scope(tc.typ) == tc.y.Scope(tc.typ); got != tc.same {
			t.Errorf("%s: same scope = %v, want %v", tc.name, got, tc.same)
		}
	}
}

func TestLoadAssignments(t *testing.T) {
	in := translate.Input{View: threeClusters(t).View()}
	frontend := registry.ServiceKey{Namespace: "shop", Name: "frontend"}
	type loc struct {
		zone     string
		priority uint32
		weight   uint32
		eps      []string // address/health/weight
	}
	for _, tc := range []struct {
		name  string
		proxy translate.Proxy
		key   registry.ServiceKey
		want  map[string][]loc
	}{
		{
			name:  "sidecar in us-east-1a: own zone, own region, other regions; on-prem behind its gateway",
			proxy: goldenProxies[0].proxy,
			key:   frontend,
			want: map[string][]loc{"outbound|80||frontend.shop.svc.cluster.local": {
				{"us-east-1a", 0, 2, []string{"10.1.0.1/HEALTHY/1", "10.1.0.2/DRAINING/1"}},
				{"us-east-1b", 1, 1, []string{"10.1.1.1/HEALTHY/1"}},
				{"eu-west-1a", 2, 1, []string{"10.2.0.7/HEALTHY/1"}}, // stale: still healthy
				{"dc1-z1", 2, 2, []string{"192.0.2.10/HEALTHY/2", "gw.dc1.example.com/HEALTHY/2"}},
			}},
		},
		{
			name:  "egress: only other clusters, priorities renumbered from 0",
			proxy: goldenProxies[2].proxy,
			key:   frontend,
			want: map[string][]loc{"outbound|80||frontend.shop.svc.cluster.local": {
				{"eu-west-1a", 0, 1, []string{"10.2.0.7/HEALTHY/1"}},
				{"dc1-z1", 0, 2, []string{"192.0.2.10/HEALTHY/2", "gw.dc1.example.com/HEALTHY/2"}},
			}},
		},
		{
			name:  "east-west in on-prem: its own endpoints, directly",
			proxy: goldenProxies[3].proxy,
			key:   frontend,
			want: map[string][]loc{"outbound|80||frontend.shop.svc.cluster.local": {
				{"dc1-z1", 0, 2, []string{"172.16.0.2/HEALTHY/1", "172.16.0.4/HEALTHY/1"}},
			}},
		},
		{
			name:  "multi-port service: each port gets its own endpoints",
			proxy: goldenProxies[4].proxy,
			key:   registry.ServiceKey{Namespace: "shop", Name: "checkout"},
			want: map[string][]loc{
				"outbound|9090||checkout.shop.svc.cluster.local": {
					{"us-east-1a", 0, 2, []string{"10.1.0.5/HEALTHY/1"}},
					{"eu-west-1b", 1, 1, []string{"10.2.1.5/UNHEALTHY/1"}},
				},
				"outbound|9102||checkout.shop.svc.cluster.local": {
					{"us-east-1a", 0, 2, []string{"10.1.0.5/HEALTHY/1"}},
				},
			},
		},
		{
			name:  "endpoints without a definition: nothing",
			proxy: goldenProxies[0].proxy,
			key:   registry.ServiceKey{Namespace: "shop", Name: "ghost"},
			want:  map[string][]loc{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := translate.LoadAssignments(in, tc.proxy.Scope(translate.EndpointType), tc.key)
			got := map[string][]loc{}
			for _, r := range res.Resources {
				if err := translate.Validate(r); err != nil {
					t.Error(err)
				}
				cla := r.Message.(*endpoint.ClusterLoadAssignment)
				got[r.Name] = []loc{}
				for _, l := range cla.Endpoints {
					x := loc{zone: l.Locality.Zone, priority: l.Priority, weight: l.LoadBalancingWeight.GetValue()}
					for _, e := range l.LbEndpoints {
						x.eps = append(x.eps, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()+"/"+e.HealthStatus.String()+"/"+strconv.FormatUint(uint64(e.LoadBalancingWeight.GetValue()), 10))
					}
					got[r.Name] = append(got[r.Name], x)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d load assignments %v, want %d", len(got), got, len(tc.want))
			}
			for name, want := range tc.want {
				if g := got[name]; fmt.Sprint(g) != fmt.Sprint(want) {
					t.Errorf("%s:\n got %v\nwant %v", name, g, want)
				}
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	loc := func(prio, weight uint32) *endpoint.LocalityLbEndpoints {
		l := &endpoint.LocalityLbEndpoints{Priority: prio}
		if weight > 0 {
			l.LoadBalancingWeight = wrapperspb.UInt32(weight)
		}
		return l
	}
	for _, tc := range []struct {
		name string
		res  translate.Resource
		want string
	}{
		{"zero locality weight", translate.Resource{Name: "c", Message: &endpoint.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpoint.LocalityLbEndpoints{loc(0, 0)}}}, "locality weight must not be zero"},
		{"priority gap", translate.Resource{Name: "c", Message: &endpoint.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpoint.LocalityLbEndpoints{loc(0, 1), loc(2, 1)}}}, "1 is missing"},
		{"envoy constraint: empty cluster name", translate.Resource{Name: "c", Message: &endpoint.ClusterLoadAssignment{}}, "ClusterName"},
		{"no message", translate.Resource{Name: "c"}, "no message"},
	} {
		err := translate.Validate(tc.res)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error = %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestNames(t *testing.T) {
	host := translate.Host(registry.ServiceKey{Namespace: "shop", Name: "frontend"}, translate.DefaultDomain)
	if host != "frontend.shop.svc.cluster.local" {
		t.Fatalf("host = %q", host)
	}
	name := translate.ClusterName(80, host)
	if name != "outbound|80||frontend.shop.svc.cluster.local" {
		t.Fatalf("cluster name = %q", name)
	}
	port, subset, h, err := translate.ParseClusterName(name)
	if err != nil || port != 80 || subset != "" || h != host {
		t.Fatalf("ParseClusterName = %d %q %q %v", port, subset, h, err)
	}
	sub := translate.SubsetClusterName(80, "v2@eks-euw1", host)
	if _, subset, _, err := translate.ParseClusterName(sub); err != nil || subset != "v2@eks-euw1" {
		t.Fatalf("ParseClusterName(%q) subset = %q, %v", sub, subset, err)
	}
	for _, bad := range []string{"inbound|80||x", "outbound|x||h", "outbound|80|h", "outbound|0||h", "outbound|80||", "outbound|80|||h"} {
		if _, _, _, err := translate.ParseClusterName(bad); err == nil {
			t.Errorf("ParseClusterName(%q) accepted", bad)
		}
	}
	if got := translate.Target(host, 9090); got != "frontend.shop.svc.cluster.local:9090" {
		t.Errorf("target = %q", got)
	}
}

// TestResidencyNeverLeaks: under the residency rule of
// testdata/policies.yaml, the ledger replica outside the EU (and the
// gateway of its cluster) reaches no client, of any mode, anywhere.
func TestResidencyNeverLeaks(t *testing.T) {
	in := translate.Input{View: threeClusters(t).View(), Policies: policies(t)}
	ledger := registry.ServiceKey{Namespace: "data", Name: "ledger"}
	forbidden := map[string]bool{"10.1.0.20": true, "198.51.100.1": true}
	locs := []struct {
		cluster string
		loc     registry.Locality
	}{
		{"eks-use1", useast1a},
		{"eks-use1", registry.Locality{Region: "us-east-1", Zone: "us-east-1b"}},
		{"eks-euw1", registry.Locality{Region: "eu-west-1", Zone: "eu-west-1a"}},
		{"onprem-dc1", registry.Locality{Region: "onprem-east", Zone: "dc1-z1"}},
	}
	for _, mode := range []translate.Mode{translate.ModeSidecar, translate.ModeIngress, translate.ModeEgress, translate.ModeEastWest, translate.ModeProxyless} {
		for _, l := range locs {
			p := translate.Proxy{ID: "x", Mode: mode, Cluster: l.cluster, Namespace: "data", Locality: l.loc}
			for _, r := range translate.LoadAssignments(in, p.Scope(translate.EndpointType), ledger).Resources {
				for _, le := range r.Message.(*endpoint.ClusterLoadAssignment).Endpoints {
					for _, e := range le.LbEndpoints {
						if a := e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress(); forbidden[a] {
							t.Errorf("%s proxy in %s/%s got %s in %s", mode, l.cluster, l.loc, a, r.Name)
						}
					}
				}
			}
		}
	}
}

func TestCompilePoliciesRejectsInvalid(t *testing.T) {
	objs, err := v1alpha1.Decode([]byte(`apiVersion: meridian.io/v1alpha1
kind: TrafficRoute
metadata: {name: broken, namespace: shop}
spec:
  hosts: [frontend]
  http:
  - route:
    - {host: frontend, subset: v1, weight: 60}
    - {host: frontend, subset: v2, weight: 60}
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = translate.CompilePolicies(objs)
	if err == nil || !strings.Contains(err.Error(), "TrafficRoute shop/broken") || !strings.Contains(err.Error(), "spec.http[0].route") {
		t.Fatalf("error = %v, want one naming the object and the field", err)
	}
}

// TestRetryBudget: a route's retry budget goes on the clusters of its
// destination service (Envoy keeps it with the circuit breakers, beside a
// DestinationPolicy's limits); two routes' budgets for one service give
// the strictest; a minimum left unset is Envoy's default, 3; other services
// get none.
func TestRetryBudget(t *testing.T) {
	objs, err := v1alpha1.Decode([]byte(`
apiVersion: meridian.io/v1alpha1
kind: DestinationPolicy
metadata: {name: frontend, namespace: shop}
spec:
  host: frontend
  connectionPool: {maxRequests: 100}
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: meridian.io/v1alpha1
kind: TrafficRoute
metadata: {name: a, namespace: shop}
spec:
  hosts: [frontend]
  http:
  - route: [{host: frontend, subset: v1}]
    retries: {attempts: 2, budget: {percent: 25, minRetryConcurrency: 2}}
---
apiVersion: meridian.io/v1alpha1
kind: TrafficRoute
metadata: {name: b, namespace: shop}
spec:
  hosts: [checkout]
  http:
  - route: [{host: frontend}]
    retries: {attempts: 2, budget: {percent: 10, minRetryConcurrency: 5}}
  - route: [{host: checkout}]
    retries: {attempts: 2, budget: {percent: 50}}
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := translate.CompilePolicies(objs)
	if err != nil {
		t.Fatal(err)
	}
	proxy := translate.Proxy{ID: "sc", Mode: translate.ModeSidecar, Cluster: "eks-use1", Namespace: "shop", Locality: registry.Locality{Region: "us-east-1", Zone: "us-east-1a"}}
	res := translate.Build(translate.Input{View: threeClusters(t).View(), Policies: p}, proxy.Scope(translate.ClusterType))
	got := map[string]string{}
	for _, r := range res.Resources {
		c := r.Message.(*cluster.Cluster)
		for _, th := range c.GetCircuitBreakers().GetThresholds() {
			if rb := th.GetRetryBudget(); rb != nil {
				got[c.Name] = fmt.Sprintf("%v%% min %v max_requests %v", rb.GetBudgetPercent().GetValue(), rb.GetMinRetryConcurrency().GetValue(), th.GetMaxRequests().GetValue())
			}
		}
	}
	want := map[string]string{
		"outbound|80||frontend.shop.svc.cluster.local":   "10% min 2 max_requests 100",
		"outbound|80|v1|frontend.shop.svc.cluster.local": "10% min 2 max_requests 100",
		"outbound|9090||checkout.shop.svc.cluster.local": "50% min 3 max_requests 0",
		"outbound|9102||checkout.shop.svc.cluster.local": "50% min 3 max_requests 0",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("retry budgets (-want +got):\n%s", diff)
	}
}
