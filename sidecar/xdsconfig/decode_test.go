package xdsconfig_test

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/sds"
	"github.com/meridian-mesh/meridian/xds/translate"
)

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// translated returns what xds/translate builds for a sidecar, a gateway
// and a proxyless client over a small registry: real resources, the seeds
// of the decoder's tests and fuzzer.
func translated(t testing.TB) map[string][]*anypb.Any {
	t.Helper()
	reg := registry.New(registry.Options{})
	if err := reg.SetCluster(registry.Cluster{Name: "c1", Region: "r1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Apply("c1",
		registry.PutService(&registry.Service{Namespace: "shop", Name: "web", Ports: []registry.ServicePort{{Port: 80, Protocol: registry.ProtocolHTTP, Name: "http"}, {Port: 9090, Protocol: registry.ProtocolGRPC, Name: "grpc"}}}),
		registry.PutService(&registry.Service{Namespace: "shop", Name: "db", Ports: []registry.ServicePort{{Port: 5432}}}),
		registry.PutEndpoint(&registry.Endpoint{Service: registry.ServiceKey{Namespace: "shop", Name: "web"}, ID: "w1", PortName: "http", Addresses: []string{"10.0.0.1"}, Port: 8080, Locality: registry.Locality{Region: "r1", Zone: "z1"}}),
	); err != nil {
		t.Fatal(err)
	}
	out := map[string][]*anypb.Any{}
	for _, p := range []translate.Proxy{
		{ID: "s", Mode: translate.ModeSidecar, Cluster: "c1", Namespace: "shop", InboundPorts: []uint32{8080}},
		{ID: "i", Mode: translate.ModeIngress, Cluster: "c1", Namespace: "shop", ListenerPort: 8080},
		{ID: "e", Mode: translate.ModeEastWest, Cluster: "c1", Namespace: "shop", ListenerPort: 15443},
		{ID: "g", Mode: translate.ModeProxyless, Cluster: "c1", Namespace: "shop"},
	} {
		for _, typ := range translate.Types {
			for _, r := range translate.Build(translate.Input{View: reg.View()}, p.Scope(typ)).Resources {
				out[typ] = append(out[typ], mustAny(t, r.Message))
			}
		}
	}
	return out
}

// TestDecodesWhatTranslateBuilds: every resource the control plane sends
// decodes, and references the resources the client must subscribe to.
func TestDecodesWhatTranslateBuilds(t *testing.T) {
	d := xdsconfig.NewDecoder(xdsconfig.Options{})
	refs := map[string]bool{}
	for typ, as := range translated(t) {
		for _, a := range as {
			name, r, err := d.Decode(typ, a)
			if err != nil {
				t.Fatalf("%s %s: %v", typ, name, err)
			}
			r.References(func(typ, name string) { refs[typ+" "+name] = true })
		}
	}
	for _, want := range []string{xdsclient.RouteType + " 80", xdsclient.EndpointType + " outbound|80||web.shop.svc.cluster.local"} {
		if !refs[want] {
			t.Errorf("no reference to %s", want)
		}
	}
}

// TestRefusals: what the proxy cannot honour is refused with the resource,
// the field and the reason — the NACK detail the control plane logs.
func TestRefusals(t *testing.T) {
	d := xdsconfig.NewDecoder(xdsconfig.Options{})
	hcmAny := func(m *hcm.HttpConnectionManager) *anypb.Any { return mustAny(t, m) }
	router := &hcm.HttpFilter{Name: wellknown.Router}
	addr := &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{Address: "127.0.0.1", PortSpecifier: &core.SocketAddress_PortValue{PortValue: 80}}}}
	lis := func(f *listener.Filter) *listener.Listener {
		return &listener.Listener{Name: "l", Address: addr, FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{f}}}}
	}
	for _, tc := range []struct {
		name string
		typ  string
		msg  proto.Message
		want string
	}{
		{"unknown network filter", xdsclient.ListenerType, lis(&listener.Filter{Name: "envoy.filters.network.redis_proxy", ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(t, &hcm.HttpConnectionManager{})}}),
			`filter_chains[0] : filters[0] envoy.filters.network.redis_proxy: unsupported network filter`},
		{"router not last", xdsclient.ListenerType, lis(&listener.Filter{Name: wellknown.HTTPConnectionManager, ConfigType: &listener.Filter_TypedConfig{TypedConfig: hcmAny(&hcm.HttpConnectionManager{
			StatPrefix: "x", RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{RouteConfigName: "r"}}, HttpFilters: []*hcm.HttpFilter{router, {Name: "envoy.filters.http.fault"}}}),
		}}), "the router must be the last HTTP filter"},
		{"RBAC without an evaluator", xdsclient.ListenerType, lis(&listener.Filter{Name: wellknown.HTTPConnectionManager, ConfigType: &listener.Filter_TypedConfig{TypedConfig: hcmAny(&hcm.HttpConnectionManager{
			StatPrefix: "x", RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{RouteConfigName: "r"}},
			HttpFilters: []*hcm.HttpFilter{{Name: wellknown.HTTPRoleBasedAccessControl, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &hcm.HttpConnectionManager{})}}, router}}),
		}}), "envoy.filters.http.rbac"},
		{"bad regex", xdsclient.RouteType, &route.RouteConfiguration{Name: "r", VirtualHosts: []*route.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*route.Route{{
			Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: "(unclosed"}}},
			Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: "c"}}},
		}}}}}, `virtual_hosts[0] v: routes[0] : match: safe_regex: regex "(unclosed"`},
		{"duplicate domain", xdsclient.RouteType, &route.RouteConfiguration{Name: "r", VirtualHosts: []*route.VirtualHost{
			{Name: "a", Domains: []string{"x.example"}}, {Name: "b", Domains: []string{"x.example"}}}}, `domain "x.example" is in virtual hosts "a" and "b"`},
		{"ring hash", xdsclient.ClusterType, &cluster.Cluster{Name: "c", ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS}, LbPolicy: cluster.Cluster_RING_HASH}, "lb_policy RING_HASH is not supported"},
		{"health checks", xdsclient.ClusterType, &cluster.Cluster{Name: "c", ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS}, HealthChecks: []*core.HealthCheck{{
			Timeout: durationpb.New(time.Second), Interval: durationpb.New(time.Second), UnhealthyThreshold: wrapperspb.UInt32(1), HealthyThreshold: wrapperspb.UInt32(1),
			HealthChecker: &core.HealthCheck_TcpHealthCheck_{TcpHealthCheck: &core.HealthCheck_TcpHealthCheck{}}}}}, "active health checks are not supported"},
		{"no name", xdsclient.ClusterType, &cluster.Cluster{}, "resource has no name"},
	} {
		_, _, err := d.Decode(tc.typ, mustAny(t, tc.msg))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	if _, _, err := d.Decode(xdsclient.ListenerType, &anypb.Any{TypeUrl: xdsclient.ListenerType, Value: []byte{0xff, 0xff}}); err == nil {
		t.Error("garbage bytes decoded")
	}
}

// FuzzDecode: any bytes under any type are decoded or refused; never a
// panic. Seeds are translate's real resources.
func FuzzDecode(f *testing.F) {
	types := []string{xdsclient.ListenerType, xdsclient.RouteType, xdsclient.ClusterType, xdsclient.EndpointType, xdsclient.SecretType}
	for typ, as := range translated(f) {
		for i, a := range as {
			for j, t := range types {
				if t == typ && (i < 3) {
					f.Add(uint8(j), a.GetValue())
				}
			}
		}
	}
	d := xdsconfig.NewDecoder(xdsconfig.Options{})
	f.Fuzz(func(t *testing.T, typ uint8, b []byte) {
		tu := types[int(typ)%len(types)]
		name, r, err := d.Decode(tu, &anypb.Any{TypeUrl: tu, Value: b})
		if err == nil && (r == nil || name == "") {
			t.Fatalf("accepted without a name or value")
		}
	})
}

// TestSameAsTrustSDS: the secrets trust/sds builds decode to what
// trust/sds's own parsers read from them.
func TestSameAsTrustSDS(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("mesh.test")
	root, err := ca.NewRoot(ca.RootOptions{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ca.GenerateKey(ca.ECDSAP256)
	ic, err := root.IssueIntermediate(ca.IntermediateRequest{Cluster: "c1", PublicKey: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := ca.NewAuthority(ca.AuthorityConfig{TrustDomain: td, Cluster: "c1", Chain: []*x509.Certificate{ic}, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	svid, err := auth.Mint(spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/web"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other := spiffeid.RequireTrustDomainFromString("other.test")
	oroot, _ := ca.NewRoot(ca.RootOptions{TrustDomain: other})
	svidSec, err := sds.SVIDSecret(svid)
	if err != nil {
		t.Fatal(err)
	}
	bundleSec, err := sds.BundleSecret([]*spiffebundle.Bundle{
		spiffebundle.FromX509Authorities(td, []*x509.Certificate{root.Certificate()}),
		spiffebundle.FromX509Authorities(other, []*x509.Certificate{oroot.Certificate()}),
	})
	if err != nil {
		t.Fatal(err)
	}
	d := xdsconfig.NewDecoder(xdsconfig.Options{})
	_, r, err := d.Decode(xdsclient.SecretType, mustAny(t, svidSec))
	if err != nil {
		t.Fatal(err)
	}
	want, err := sds.ParseSVIDSecret(svidSec)
	if err != nil {
		t.Fatal(err)
	}
	got := r.(*xdsconfig.Secret).SVID
	if got == nil || got.ID != want.ID || len(got.Certificates) != len(want.Certificates) || !got.Certificates[0].Equal(want.Certificates[0]) {
		t.Fatalf("SVID %+v, trust/sds reads %+v", got, want)
	}
	_, r, err = d.Decode(xdsclient.SecretType, mustAny(t, bundleSec))
	if err != nil {
		t.Fatal(err)
	}
	wantSet, err := sds.ParseBundleSecret(bundleSec)
	if err != nil {
		t.Fatal(err)
	}
	gotSet := r.(*xdsconfig.Secret).Validation.Bundles
	for _, d := range []spiffeid.TrustDomain{td, other} {
		g, err1 := gotSet.GetX509BundleForTrustDomain(d)
		w, err2 := wantSet.GetX509BundleForTrustDomain(d)
		if err1 != nil || err2 != nil || !g.Equal(w) {
			t.Fatalf("bundle of %s: %v %v", d, err1, err2)
		}
	}
}

// TestSystemRootCerts: the clusters translate builds for a remote JWKS
// and for TLS to an external host without a credential trust the system's
// roots (system_root_certs), and decode as such.
func TestSystemRootCerts(t *testing.T) {
	reg := registry.New(registry.Options{})
	if err := reg.SetCluster(registry.Cluster{Name: "c1", Region: "r1"}); err != nil {
		t.Fatal(err)
	}
	objs, err := v1alpha1.Load([]byte(`
apiVersion: meridian.io/v1alpha1
kind: RequestAuthentication
metadata: {name: users, namespace: shop}
spec:
  jwtRules:
  - issuer: https://auth.example.com
    jwksUri: https://auth.example.com/.well-known/jwks.json
---
apiVersion: meridian.io/v1alpha1
kind: ServiceEntry
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.external.test]
  ports: [{number: 443, protocol: HTTP}]
  resolution: dns
---
apiVersion: meridian.io/v1alpha1
kind: DestinationPolicy
metadata: {name: api, namespace: shop}
spec:
  host: api.external.test
  tls: {mode: simple}
`), v1alpha1.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := translate.CompilePolicies(objs)
	if err != nil {
		t.Fatal(err)
	}
	proxy := translate.Proxy{ID: "s", Mode: translate.ModeSidecar, Cluster: "c1", Namespace: "shop", InboundPorts: []uint32{8080}}
	d := xdsconfig.NewDecoder(xdsconfig.Options{})
	system := map[string]bool{}
	for _, r := range translate.Build(translate.Input{View: reg.View(), Policies: pol}, proxy.Scope(translate.ClusterType)).Resources {
		name, res, err := d.Decode(translate.ClusterType, mustAny(t, r.Message))
		if err != nil {
			t.Fatalf("cluster %s: %v", r.Name, err)
		}
		if tls := res.(*xdsconfig.Cluster).TLS; tls != nil && tls.Validation != nil && tls.Validation.Inline != nil && tls.Validation.Inline.SystemRoots {
			system[name] = true
		}
	}
	var jwks bool
	for name := range system {
		jwks = jwks || strings.Contains(name, "auth.example.com")
	}
	if !jwks || !system["outbound|443||api.external.test"] {
		t.Fatalf("clusters that trust the system's roots: %v, want the JWKS cluster and outbound|443||api.external.test", system)
	}
}
