package translate_test

import (
	"crypto/tls"
	"errors"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/translate"
)

func downstreamTLS(t *testing.T, fc *listener.FilterChain) *tlsv3.DownstreamTlsContext {
	t.Helper()
	var d tlsv3.DownstreamTlsContext
	if err := fc.GetTransportSocket().GetTypedConfig().UnmarshalTo(&d); err != nil {
		t.Fatalf("%s: %v", fc.GetName(), err)
	}
	return &d
}

// TestIngressGateway: a Gateway's HTTPS listeners terminate TLS with their
// credentials over SDS (simple, and mutual with the CA and TLS 1.3), by
// server name; the TrafficRoute bound to it routes by path into the mesh
// (checkout's metrics port, frontend pinned to the EU cluster, frontend);
// TLS passthrough forwards by server name without terminating; a route
// bound only to the gateway stays out of the sidecars.
func TestIngressGateway(t *testing.T) {
	objs := append(objects(t, readFile(t, "mesh.yaml")), objects(t, `apiVersion: meridian.io/v1alpha1
kind: TrafficRoute
metadata: {name: frontend-at-the-edge, namespace: gateways}
spec:
  hosts: [frontend.shop]
  gateways: [public]
  http:
  - fault: {abort: {status: 503, percent: 100}}
    route: [{host: frontend.shop}]
`)...)
	in := translate.Input{View: threeClusters(t).View(), Policies: compile(t, objs)}
	gw := translate.Proxy{Mode: translate.ModeIngress, Cluster: "eks-use1", Namespace: "gateways", Labels: map[string]string{"istio": "ingressgateway"}, ListenerPort: 8080, Identity: gatewayID}
	lds, warnings := build(t, in, gw, translate.ListenerType)
	if len(warnings) > 0 {
		t.Errorf("warnings: %v", warnings)
	}
	https := lds["ingress_443"].(*listener.Listener)
	if len(https.GetListenerFilters()) != 1 || len(https.GetFilterChains()) != 2 {
		t.Fatalf("ingress_443: %v", https)
	}
	for _, want := range []struct {
		sni, cert, ca string
		min           tlsv3.TlsParameters_TlsProtocol
	}{
		{"shop.example.com", "gateways/shop-cert", "", tlsv3.TlsParameters_TLSv1_2},
		{"partners.example.com", "gateways/partners-cert", "gateways/partners-cert-cacert", tlsv3.TlsParameters_TLSv1_3},
	} {
		i := slices.IndexFunc(https.GetFilterChains(), func(fc *listener.FilterChain) bool {
			return slices.Equal(fc.GetFilterChainMatch().GetServerNames(), []string{want.sni})
		})
		if i < 0 {
			t.Fatalf("no chain for %s", want.sni)
		}
		fc := https.GetFilterChains()[i]
		d := downstreamTLS(t, fc)
		ctx := d.GetCommonTlsContext()
		if ctx.GetTlsCertificateSdsSecretConfigs()[0].GetName() != want.cert || ctx.GetValidationContextSdsSecretConfig().GetName() != want.ca ||
			d.GetRequireClientCertificate().GetValue() != (want.ca != "") || ctx.GetTlsParams().GetTlsMinimumProtocolVersion() != want.min {
			t.Errorf("%s: %v", want.sni, d)
		}
		if m := hcmOf(t, fc.GetFilters()[0]); m.GetRds().GetRouteConfigName() != "ingress_443" {
			t.Errorf("%s: routes %q", want.sni, m.GetRds().GetRouteConfigName())
		}
	}
	pass := lds["ingress_6379"].(*listener.Listener).GetFilterChains()
	if len(pass) != 1 || pass[0].GetTransportSocket() != nil {
		t.Fatalf("passthrough chains %v", pass)
	}
	if cl, _ := tcpCluster(t, pass[0].GetFilters()[0]); cl != "outbound|6379||cache.data.svc.cluster.local" {
		t.Errorf("passthrough to %s", cl)
	}

	rds, _ := build(t, in, gw, translate.RouteType)
	vh := virtualHosts(rds["ingress_443"].(*route.RouteConfiguration))["shop.example.com"]
	var got []string
	for _, r := range vh.GetRoutes() {
		got = append(got, r.GetMatch().GetPrefix()+" -> "+r.GetRoute().GetCluster())
	}
	want := []string{"/metrics -> outbound|9102||checkout.shop.svc.cluster.local", "/eu/ -> outbound|80|@eks-euw1|frontend.shop.svc.cluster.local", "/ -> outbound|80||frontend.shop.svc.cluster.local"}
	if !slices.Equal(got, want) {
		t.Errorf("shop.example.com routes\n got %v\nwant %v", got, want)
	}
	if !slices.Equal(vh.GetDomains(), []string{"shop.example.com", "shop.example.com:443"}) {
		t.Errorf("domains %v", vh.GetDomains())
	}

	sidecar := translate.Proxy{Mode: translate.ModeSidecar, Cluster: "eks-use1", Namespace: "shop"}
	srds, _ := build(t, in, sidecar, translate.RouteType)
	for _, r := range virtualHosts(srds["80"].(*route.RouteConfiguration))["frontend.shop.svc.cluster.local:80"].GetRoutes() {
		if len(r.GetTypedPerFilterConfig()) > 0 {
			t.Fatal("a route bound only to a gateway reached the sidecars")
		}
	}
}

// TestGatewayHostsWithoutRoutes: a listener host no bound route covers
// goes to the mesh service of that name; a host that names nothing is
// warned about; without any Gateway object a gateway keeps its default
// listener.
func TestGatewayHostsWithoutRoutes(t *testing.T) {
	in := translate.Input{View: threeClusters(t).View(), Policies: compile(t, objects(t, `apiVersion: meridian.io/v1alpha1
kind: Gateway
metadata: {name: plain, namespace: gateways}
spec:
  type: ingress
  listeners:
  - {name: http, port: 8081, protocol: HTTP, hosts: [frontend.shop.svc.cluster.local, nothing.example.com]}
`))}
	gw := translate.Proxy{Mode: translate.ModeIngress, Cluster: "eks-use1", Namespace: "gateways", ListenerPort: 8080}
	rds, warnings := build(t, in, gw, translate.RouteType)
	vhs := virtualHosts(rds["ingress_8081"].(*route.RouteConfiguration))
	if vhs["frontend.shop.svc.cluster.local"].GetRoutes()[0].GetRoute().GetCluster() != "outbound|80||frontend.shop.svc.cluster.local" || len(vhs) != 1 {
		t.Errorf("virtual hosts %v", vhs)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "nothing.example.com has no bound route") {
		t.Errorf("warnings %v", warnings)
	}
	// The selector-less Gateway applies to gateways of its namespace only.
	other := gw
	other.Namespace = "edge"
	lds, _ := build(t, in, other, translate.ListenerType)
	if _, ok := lds["ingress_8080"]; !ok || len(lds) != 1 {
		t.Errorf("gateway of another namespace: listeners %v", slices.Sorted(maps.Keys(lds)))
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sniOf sends a real TLS ClientHello with cfg to a listener and returns
// the server name the listener saw.
func sniOf(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	got := make(chan string, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			got <- ""
			return
		}
		defer c.Close()
		srv := tls.Server(c, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			got <- h.ServerName
			return nil, errors.New("seen")
		}})
		srv.SetDeadline(time.Now().Add(5 * time.Second))
		_ = srv.Handshake()
	}()
	c, err := tls.Dial("tcp", lis.Addr().String(), cfg)
	if err == nil {
		c.Close()
	}
	return <-got
}

// matchChain picks the filter chain Envoy would for a server name: an
// exact server name first, then the longest wildcard suffix, then a chain
// without server names.
func matchChain(l *listener.Listener, sni string) *listener.FilterChain {
	var wildcard, any *listener.FilterChain
	best := 0
	for _, fc := range l.GetFilterChains() {
		names := fc.GetFilterChainMatch().GetServerNames()
		if len(names) == 0 {
			any = fc
		}
		for _, n := range names {
			switch {
			case n == sni:
				return fc
			case strings.HasPrefix(n, "*.") && strings.HasSuffix(sni, n[1:]) && len(n) > best:
				wildcard, best = fc, len(n)
			}
		}
	}
	if wildcard != nil {
		return wildcard
	}
	if any != nil {
		return any
	}
	return l.GetDefaultFilterChain()
}

func addresses(cla *endpoint.ClusterLoadAssignment) []string {
	var out []string
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			out = append(out, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
		}
	}
	return out
}

// TestEastWestSNIRouting: a client on another network sends the SNI its
// cluster's mTLS carries (outbound_.PORT_._.HOST, read from the cluster
// translate gave it) in a real TLS ClientHello; the east-west gateway's
// listener matches it to the service port's chain, which forwards without
// terminating TLS to a cluster holding only the gateway's own cluster's
// endpoints — residency still applied (ledger's US replica never appears).
// A server name no service port claims matches no chain.
func TestEastWestSNIRouting(t *testing.T) {
	in := translate.Input{View: threeClusters(t).View(), Policies: policies(t, "policies.yaml", "mesh.yaml")}
	client := translate.Proxy{Mode: translate.ModeSidecar, Cluster: "onprem-dc1", Namespace: "shop", Identity: frontendID}
	gw := translate.Proxy{Mode: translate.ModeEastWest, Cluster: "eks-use1", Namespace: "gateways", Labels: map[string]string{"istio": "eastwestgateway"}, ListenerPort: 15443}
	ccds, _ := build(t, in, client, translate.ClusterType)
	glds, _ := build(t, in, gw, translate.ListenerType)
	gcds, _ := build(t, in, gw, translate.ClusterType)
	geds, _ := build(t, in, gw, translate.EndpointType)
	l := glds[translate.GatewayName(translate.ModeEastWest, 15443)].(*listener.Listener)
	for _, tc := range []struct {
		cluster string
		want    []string
	}{
		{"outbound|80||frontend.shop.svc.cluster.local", []string{"10.1.0.1", "10.1.0.2", "10.1.1.1"}},
		{"outbound|9090||checkout.shop.svc.cluster.local", []string{"10.1.0.5"}},
		{"outbound|5432||ledger.data.svc.cluster.local", nil}, // EU-only: its US replica is never served
	} {
		u := upstreamTLS(t, ccds[tc.cluster].(*cluster.Cluster))
		sni := sniOf(t, &tls.Config{ServerName: u.GetSni(), InsecureSkipVerify: true})
		if sni != u.GetSni() {
			t.Fatalf("ClientHello carried %q, want %q", sni, u.GetSni())
		}
		fc := matchChain(l, sni)
		if fc == nil || fc.GetTransportSocket() != nil {
			t.Fatalf("%s: chain %v (passthrough needs one without a transport socket)", sni, fc)
		}
		target, _ := tcpCluster(t, fc.GetFilters()[0])
		if target != tc.cluster {
			t.Errorf("%s routed to %s", sni, target)
		}
		if upstreamTLS(t, gcds[target].(*cluster.Cluster)) != nil {
			t.Errorf("%s: the gateway originates TLS", target)
		}
		if got := addresses(geds[target].(*endpoint.ClusterLoadAssignment)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: endpoints %v, want %v", target, got, tc.want)
		}
	}
	if fc := matchChain(l, sniOf(t, &tls.Config{ServerName: "frontend.shop.svc.cluster.local", InsecureSkipVerify: true})); fc != nil {
		t.Errorf("a plain host name matched %s", fc.GetName())
	}
}

// TestResidencyThroughGatewaysAndMirrors: with frontend restricted to the
// EU, no client of any mode — sidecars on either network, gateways of
// every kind in every cluster, proxyless — gets a non-EU endpoint of it:
// not directly, not as a lower priority, not as another network's gateway
// fronting only disallowed endpoints, not through a cluster-pinned
// variant, and not as the target of a mirror.
func TestResidencyThroughGatewaysAndMirrors(t *testing.T) {
	objs := append(objects(t, readFile(t, "mesh.yaml")), objects(t, `apiVersion: meridian.io/v1alpha1
kind: ResidencyRule
metadata: {name: frontend-in-eu, namespace: shop}
spec:
  selector: {services: [frontend]}
  clusterSelector:
    matchLabels: {jurisdiction: eu}
---
apiVersion: meridian.io/v1alpha1
kind: TrafficRoute
metadata: {name: checkout-shadow, namespace: shop}
spec:
  hosts: [checkout]
  http:
  - name: shadow-to-us
    mirror: {host: frontend, port: 80, cluster: eks-use1}
    route: [{host: checkout, port: 9102}]
  - name: shadow
    mirror: {host: frontend, port: 80}
    route: [{host: checkout, port: 9102}]
`)...)
	in := translate.Input{View: threeClusters(t).View(), Policies: compile(t, objs)}
	allowed := map[string]bool{"10.2.0.7": true, "198.51.100.20": true} // frontend-eu, and the EU cluster's gateway
	frontend := "frontend.shop.svc.cluster.local"
	var proxies []translate.Proxy
	for _, c := range []struct {
		name string
		loc  registry.Locality
	}{{"eks-use1", useast1a}, {"eks-euw1", registry.Locality{Region: "eu-west-1", Zone: "eu-west-1a"}}, {"onprem-dc1", registry.Locality{Region: "onprem-east", Zone: "dc1-z1"}}} {
		for _, m := range []translate.Mode{translate.ModeSidecar, translate.ModeProxyless, translate.ModeIngress, translate.ModeEgress, translate.ModeEastWest} {
			proxies = append(proxies, translate.Proxy{Mode: m, Cluster: c.name, Namespace: "shop", Locality: c.loc, ListenerPort: 8080,
				Labels: map[string]string{"istio": "ingressgateway"}, Identity: frontendID})
		}
	}
	mirrors := 0
	for _, p := range proxies {
		eds, _ := build(t, in, p, translate.EndpointType)
		for name, m := range eds {
			if _, _, host, _ := translate.ParseClusterName(name); host != frontend {
				continue
			}
			for _, a := range addresses(m.(*endpoint.ClusterLoadAssignment)) {
				if !allowed[a] {
					t.Errorf("%s proxy in %s: %s has endpoint %s outside the EU", p.Mode, p.Cluster, name, a)
				}
			}
			if strings.Contains(name, "@eks-use1") && len(m.(*endpoint.ClusterLoadAssignment).GetEndpoints()) > 0 {
				t.Errorf("%s proxy in %s: the US-pinned variant %s has endpoints", p.Mode, p.Cluster, name)
			}
		}
		if p.Mode != translate.ModeSidecar && p.Mode != translate.ModeProxyless {
			continue
		}
		// The mirrors are configured, towards clusters residency empties.
		rds, _ := build(t, in, p, translate.RouteType)
		for _, m := range rds {
			for _, vh := range m.(*route.RouteConfiguration).GetVirtualHosts() {
				for _, r := range vh.GetRoutes() {
					for _, mp := range r.GetRoute().GetRequestMirrorPolicies() {
						mirrors++
						cla, ok := eds[mp.GetCluster()].(*endpoint.ClusterLoadAssignment)
						if !ok {
							t.Fatalf("mirror cluster %s has no load assignment", mp.GetCluster())
						}
						for _, a := range addresses(cla) {
							if !allowed[a] {
								t.Errorf("%s proxy in %s: mirror %s targets %s", p.Mode, p.Cluster, mp.GetCluster(), a)
							}
						}
					}
				}
			}
		}
	}
	if mirrors == 0 {
		t.Fatal("no mirror was translated: the test proves nothing")
	}
	// The on-prem sidecar reaches the EU endpoint through the EU cluster's
	// gateway — and never through the US cluster's, which fronts only
	// disallowed endpoints.
	eds, _ := build(t, in, translate.Proxy{Mode: translate.ModeSidecar, Cluster: "onprem-dc1", Namespace: "shop"}, translate.EndpointType)
	if got := addresses(eds[translate.ClusterName(80, frontend)].(*endpoint.ClusterLoadAssignment)); !slices.Equal(got, []string{"198.51.100.20"}) {
		t.Errorf("on-prem sidecar: %v, want only the EU gateway", got)
	}
}

// TestTCPRoutes: a mesh TrafficRoute's TCP rule splits a sidecar's
// connections across weighted destinations.
func TestTCPRoutes(t *testing.T) {
	in := translate.Input{View: threeClusters(t).View(), Policies: policies(t, "mesh.yaml")}
	lds, _ := build(t, in, translate.Proxy{Mode: translate.ModeSidecar, Cluster: "eks-use1", Namespace: "shop"}, translate.ListenerType)
	_, w := tcpCluster(t, lds[translate.OutboundListenerName(5432)].(*listener.Listener).GetDefaultFilterChain().GetFilters()[0])
	if w["outbound|5432||ledger.data.svc.cluster.local"] != 80 || w["outbound|5432||reports.data.svc.cluster.local"] != 20 || len(w) != 2 {
		t.Errorf("weights %v", w)
	}
}

// TestGatewayPublishedByName: another network's gateway given as a DNS
// name is an endpoint carrying the name as its address and hostname.
func TestGatewayPublishedByName(t *testing.T) {
	in := translate.Input{View: threeClusters(t).View()}
	eds, _ := build(t, in, translate.Proxy{Mode: translate.ModeSidecar, Cluster: "eks-use1", Namespace: "shop", Locality: useast1a}, translate.EndpointType)
	cla := eds[translate.ClusterName(80, "frontend.shop.svc.cluster.local")].(*endpoint.ClusterLoadAssignment)
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			if a := e.GetEndpoint().GetAddress().GetSocketAddress(); a.GetAddress() == "gw.dc1.example.com" {
				if e.GetEndpoint().GetHostname() != "gw.dc1.example.com" || a.GetPortValue() != 15443 {
					t.Errorf("endpoint %v", e)
				}
				return
			}
		}
	}
	t.Fatal("the gateway published by name is missing")
}
