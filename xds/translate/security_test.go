package translate_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/trust/sds"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// build returns a proxy's resources of one type by name, each validated.
func build(t *testing.T, in translate.Input, p translate.Proxy, typ string) (map[string]proto.Message, []string) {
	t.Helper()
	res := translate.Build(in, p.Scope(typ))
	out := map[string]proto.Message{}
	for _, r := range res.Resources {
		if err := translate.Validate(r); err != nil {
			t.Errorf("invalid resource: %v", err)
		}
		out[r.Name] = r.Message
	}
	return out, res.Warnings
}

func objects(t *testing.T, yaml string) []v1alpha1.Object {
	t.Helper()
	objs, err := v1alpha1.Decode([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func compile(t *testing.T, objs []v1alpha1.Object) *translate.Policies {
	t.Helper()
	p, err := translate.CompilePolicies(objs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func upstreamTLS(t *testing.T, c *cluster.Cluster) *tlsv3.UpstreamTlsContext {
	t.Helper()
	ts := c.GetTransportSocket()
	if ts == nil {
		return nil
	}
	var u tlsv3.UpstreamTlsContext
	if err := ts.GetTypedConfig().UnmarshalTo(&u); err != nil {
		t.Fatal(err)
	}
	return &u
}

func sans(u *tlsv3.UpstreamTlsContext) []string {
	var out []string
	for _, m := range u.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
		out = append(out, m.GetMatcher().GetExact())
	}
	return out
}

var (
	frontendID = spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/frontend")
	gatewayID  = spiffeid.RequireFromString("spiffe://mesh.test/ns/gateways/sa/gw")
)

// TestOutboundMTLS: every mesh cluster of an attested sidecar or gateway
// presents its SVID, checks the exact service accounts of the service's
// endpoints and sends the east-west SNI; a proxy without an identity, an
// east-west gateway (passthrough) and grpc-go (certificate providers, not
// SDS) get no TLS; DestinationPolicy tls disable wins.
func TestOutboundMTLS(t *testing.T) {
	view := threeClusters(t).View()
	in := translate.Input{View: view, Policies: policies(t, "policies.yaml", "mesh.yaml")}
	for _, tc := range []struct {
		name  string
		proxy translate.Proxy
		tls   bool
	}{
		{"attested sidecar", translate.Proxy{Mode: translate.ModeSidecar, Cluster: "eks-use1", Namespace: "shop", Identity: frontendID}, true},
		{"attested ingress gateway", translate.Proxy{Mode: translate.ModeIngress, Cluster: "eks-use1", Namespace: "gateways", ListenerPort: 8080, Identity: gatewayID}, true},
		{"attested egress gateway", translate.Proxy{Mode: translate.ModeEgress, Cluster: "eks-use1", Namespace: "gateways", ListenerPort: 8080, Identity: gatewayID}, true},
		{"sidecar without identity", translate.Proxy{Mode: translate.ModeSidecar, Cluster: "eks-use1", Namespace: "shop"}, false},
		{"east-west gateway", translate.Proxy{Mode: translate.ModeEastWest, Cluster: "eks-use1", Namespace: "gateways", ListenerPort: 15443, Identity: gatewayID}, false},
		{"proxyless", translate.Proxy{Mode: translate.ModeProxyless, Cluster: "eks-use1", Namespace: "shop", Identity: frontendID}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cds, _ := build(t, in, tc.proxy, translate.ClusterType)
			for name, m := range cds {
				c := m.(*cluster.Cluster)
				port, _, host, err := translate.ParseClusterName(name)
				if err != nil || c.GetType() != cluster.Cluster_EDS {
					continue
				}
				u := upstreamTLS(t, c)
				want := tc.tls && host != "reports.data.svc.cluster.local" // tls: disable
				if (u != nil) != want {
					t.Fatalf("%s: TLS = %v, want %v", name, u != nil, want)
				}
				if u == nil {
					continue
				}
				if u.GetSni() != translate.EastWestSNI(port, host) {
					t.Errorf("%s: SNI %q", name, u.GetSni())
				}
				if got := u.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0].GetName(); got != tc.proxy.Identity.String() {
					t.Errorf("%s: certificate %q, want the proxy's own SVID", name, got)
				}
				if got := u.GetCommonTlsContext().GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName(); got != sds.BundleSecretName {
					t.Errorf("%s: validation %q", name, got)
				}
				var wantSANs []string
				switch host {
				case "frontend.shop.svc.cluster.local":
					wantSANs = []string{"spiffe://mesh.test/ns/shop/sa/frontend", "spiffe://mesh.test/ns/shop/sa/frontend-legacy"}
				case "ledger.data.svc.cluster.local":
					// ledger-us is kept from every client by residency,
					// but it runs as the same account.
					wantSANs = []string{"spiffe://mesh.test/ns/data/sa/ledger"}
				}
				if got := sans(u); !slices.Equal(got, wantSANs) {
					t.Errorf("%s: peers %v, want %v", name, got, wantSANs)
				}
			}
		})
	}
}

func inboundOf(t *testing.T, in translate.Input, p translate.Proxy) *listener.Listener {
	t.Helper()
	lds, _ := build(t, in, p, translate.ListenerType)
	return lds[translate.VirtualInboundListener].(*listener.Listener)
}

type chainDesc struct {
	name, transport string
	port            uint32
	tls             bool
}

func chains(l *listener.Listener) []chainDesc {
	var out []chainDesc
	for _, fc := range l.GetFilterChains() {
		out = append(out, chainDesc{fc.GetName(), fc.GetFilterChainMatch().GetTransportProtocol(), fc.GetFilterChainMatch().GetDestinationPort().GetValue(), fc.GetTransportSocket() != nil})
	}
	return out
}

// TestInboundMTLSModes: STRICT unless a PeerAuthentication says otherwise
// (the workload's, then its namespace's, then the mesh's; a port-level mode
// beats them), as trust/mtls resolves it; a proxy without an identity
// keeps plaintext chains.
func TestInboundMTLSModes(t *testing.T) {
	view := threeClusters(t).View()
	proxy := translate.Proxy{Mode: translate.ModeSidecar, Cluster: "eks-use1", Namespace: "shop", Labels: map[string]string{"app": "frontend"},
		InboundPorts: []uint32{8080, 9090}, Identity: frontendID}
	namespacePermissive := `apiVersion: meridian.io/v1alpha1
kind: PeerAuthentication
metadata: {name: migrating, namespace: shop}
spec: {mode: PERMISSIVE}
`
	portStrict := namespacePermissive + `---
apiVersion: meridian.io/v1alpha1
kind: PeerAuthentication
metadata: {name: frontend, namespace: shop}
spec:
  selector: {matchLabels: {app: frontend}}
  portLevelMtls: {"8080": STRICT}
`
	meshPermissive := `apiVersion: meridian.io/v1alpha1
kind: PeerAuthentication
metadata: {name: mesh, namespace: meridian-system}
spec: {mode: PERMISSIVE}
`
	strict := []chainDesc{{"inbound|8080|||tls", "tls", 8080, true}, {"inbound|9090|||tls", "tls", 9090, true}, {"PassthroughCluster|tls", "tls", 0, true}}
	permissive := []chainDesc{{"inbound|8080|||tls", "tls", 8080, true}, {"inbound|8080|||raw_buffer", "raw_buffer", 8080, false},
		{"inbound|9090|||tls", "tls", 9090, true}, {"inbound|9090|||raw_buffer", "raw_buffer", 9090, false}, {"PassthroughCluster|tls", "tls", 0, true}}
	for _, tc := range []struct {
		name          string
		policies      string
		noIdentity    bool
		want          []chainDesc
		defaultChain  bool // plaintext to undeclared ports passes through
		inspectorWant bool
	}{
		{name: "STRICT by default", want: strict, inspectorWant: true},
		{name: "namespace PERMISSIVE", policies: namespacePermissive, want: permissive, defaultChain: true, inspectorWant: true},
		{name: "mesh-wide PERMISSIVE", policies: meshPermissive, want: permissive, defaultChain: true, inspectorWant: true},
		{name: "port-level STRICT inside a PERMISSIVE namespace", policies: portStrict,
			want:         []chainDesc{{"inbound|8080|||tls", "tls", 8080, true}, {"inbound|9090|||tls", "tls", 9090, true}, {"inbound|9090|||raw_buffer", "raw_buffer", 9090, false}, {"PassthroughCluster|tls", "tls", 0, true}},
			defaultChain: true, inspectorWant: true},
		{name: "no identity: plaintext", noIdentity: true, want: []chainDesc{{"inbound|8080||", "", 8080, false}, {"inbound|9090||", "", 9090, false}}, defaultChain: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := translate.Input{View: view}
			if tc.policies != "" {
				in.Policies = compile(t, objects(t, tc.policies))
			}
			p := proxy
			if tc.noIdentity {
				p.Identity = spiffeid.ID{}
			}
			l := inboundOf(t, in, p)
			if got := chains(l); !slices.Equal(got, tc.want) {
				t.Errorf("chains\n got %v\nwant %v", got, tc.want)
			}
			if (l.GetDefaultFilterChain() != nil) != tc.defaultChain {
				t.Errorf("default chain present = %v, want %v", l.GetDefaultFilterChain() != nil, tc.defaultChain)
			}
			if (len(l.GetListenerFilters()) > 0) != tc.inspectorWant {
				t.Errorf("listener filters %v", l.GetListenerFilters())
			}
			for _, fc := range l.GetFilterChains() {
				if fc.GetTransportSocket() == nil {
					continue
				}
				var d tlsv3.DownstreamTlsContext
				if err := fc.GetTransportSocket().GetTypedConfig().UnmarshalTo(&d); err != nil {
					t.Fatal(err)
				}
				if !d.GetRequireClientCertificate().GetValue() || d.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0].GetName() != frontendID.String() {
					t.Errorf("%s: downstream TLS %v", fc.GetName(), &d)
				}
			}
		})
	}
}

func hcmOf(t *testing.T, f *listener.Filter) *hcm.HttpConnectionManager {
	t.Helper()
	var m hcm.HttpConnectionManager
	if err := f.GetTypedConfig().UnmarshalTo(&m); err != nil {
		t.Fatalf("%s: %v", f.GetName(), err)
	}
	return &m
}

// TestInboundHTTPAuthorization: an HTTP workload port gets an HTTP
// connection manager whose filters are trust/authz's JWT and RBAC filters
// then the router; a TCP port keeps tcp_proxy; the remote JWKS has its
// cluster; a gRPC inbound cluster speaks HTTP/2 to the application.
func TestInboundHTTPAuthorization(t *testing.T) {
	in := translate.Input{View: threeClusters(t).View(), Policies: policies(t, "mesh.yaml")}
	p := translate.Proxy{Mode: translate.ModeSidecar, Cluster: "eks-use1", Namespace: "shop", Labels: map[string]string{"app": "frontend"},
		InboundPorts: []uint32{8080, 9090, 9091}, InboundProtocols: map[uint32]registry.Protocol{8080: registry.ProtocolHTTP, 9091: registry.ProtocolGRPC}, Identity: frontendID}
	l := inboundOf(t, in, p)
	for _, fc := range l.GetFilterChains() {
		f := fc.GetFilters()[0]
		switch fc.GetFilterChainMatch().GetDestinationPort().GetValue() {
		case 8080, 9091:
			m := hcmOf(t, f)
			var names []string
			for _, hf := range m.GetHttpFilters() {
				names = append(names, hf.GetName())
			}
			if want := []string{"envoy.filters.http.jwt_authn", "envoy.filters.http.rbac", "envoy.filters.http.router"}; !slices.Equal(names, want) {
				t.Errorf("%s: HTTP filters %v, want %v", fc.GetName(), names, want)
			}
			if m.GetForwardClientCertDetails() != hcm.HttpConnectionManager_APPEND_FORWARD {
				t.Errorf("%s: client certificate details not forwarded", fc.GetName())
			}
		case 9090:
			if f.GetName() != "envoy.filters.network.tcp_proxy" {
				t.Errorf("%s: %s, want tcp_proxy", fc.GetName(), f.GetName())
			}
		}
	}
	cds, _ := build(t, in, p, translate.ClusterType)
	jwks, ok := cds["jwks|auth.example.com:443"].(*cluster.Cluster)
	if !ok || jwks.GetType() != cluster.Cluster_STRICT_DNS || upstreamTLS(t, jwks).GetSni() != "auth.example.com" {
		t.Errorf("JWKS cluster: %v", jwks)
	}
	if c := cds[translate.InboundClusterName(9091)].(*cluster.Cluster); len(c.GetTypedExtensionProtocolOptions()) == 0 {
		t.Error("gRPC inbound cluster without HTTP/2 options")
	}

	// A workload with AuthorizationPolicies but no HTTP port is warned
	// about: the policies cannot be enforced at L4.
	p.InboundProtocols = nil
	_, warnings := build(t, in, p, translate.ListenerType)
	if !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, "enforced on HTTP ports only") }) {
		t.Errorf("warnings %v", warnings)
	}
}

// TestTranslationIsDeterministic: equal inputs give equal bytes (the
// server versions resources by a hash of them), including the filters
// package trust builds with maps (RBAC policies, JWT providers).
func TestTranslationIsDeterministic(t *testing.T) {
	view := threeClusters(t).View()
	in := translate.Input{View: view, Policies: policies(t, "policies.yaml", "mesh.yaml")}
	for _, tc := range goldenProxies {
		for _, typ := range translate.Types {
			first := map[string][]byte{}
			for i := range 5 {
				for _, r := range translate.Build(in, tc.proxy.Scope(typ)).Resources {
					b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.Message)
					if err != nil {
						t.Fatal(err)
					}
					if i == 0 {
						first[r.Name] = b
					} else if string(first[r.Name]) != string(b) {
						t.Fatalf("%s %s: bytes differ between two builds", tc.name, r.Name)
					}
				}
			}
		}
	}
}

func tcpCluster(t *testing.T, f *listener.Filter) (string, map[string]uint32) {
	t.Helper()
	var tp tcpproxy.TcpProxy
	if err := f.GetTypedConfig().UnmarshalTo(&tp); err != nil {
		t.Fatal(err)
	}
	w := map[string]uint32{}
	for _, c := range tp.GetWeightedClusters().GetClusters() {
		w[c.GetName()] = c.GetWeight()
	}
	return tp.GetCluster(), w
}

func virtualHosts(rc *route.RouteConfiguration) map[string]*route.VirtualHost {
	out := map[string]*route.VirtualHost{}
	for _, vh := range rc.GetVirtualHosts() {
		out[vh.GetName()] = vh
	}
	return out
}

// TestOutboundTrafficPolicy: under REGISTRY_ONLY (node metadata, or the
// mesh default) hosts the mesh does not know go to BlackHoleCluster —
// plain connections, HTTP hosts and TLS server names alike — while mesh
// services and ServiceEntry hosts stay reachable; ALLOW_ANY passes them
// through.
func TestOutboundTrafficPolicy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		meta    map[string]any
		mesh    bool
		want    string
		wantErr string
	}{
		{name: "default", want: translate.PassthroughCluster},
		{name: "node REGISTRY_ONLY", meta: map[string]any{"outbound_traffic_policy": "REGISTRY_ONLY"}, want: translate.BlackHoleCluster},
		{name: "mesh REGISTRY_ONLY", mesh: true, want: translate.BlackHoleCluster},
		{name: "node ALLOW_ANY beats the mesh", meta: map[string]any{"outbound_traffic_policy": "ALLOW_ANY"}, mesh: true, want: translate.PassthroughCluster},
		{name: "bad value", meta: map[string]any{"outbound_traffic_policy": "registry-only"}, wantErr: `node.metadata[outbound_traffic_policy]: Unsupported value: "registry-only"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta := map[string]any{"namespace": "shop"}
			for k, v := range tc.meta {
				meta[k] = v
			}
			p, err := translate.ParseNode(node(t, "sc", meta), translate.NodeDefaults{Cluster: "eks-use1", RegistryOnly: tc.mesh})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			in := translate.Input{View: threeClusters(t).View(), Policies: policies(t, "mesh.yaml")}
			lds, _ := build(t, in, p, translate.ListenerType)
			if got, _ := tcpCluster(t, lds[translate.VirtualOutboundListener].(*listener.Listener).GetFilterChains()[0].GetFilters()[0]); got != tc.want {
				t.Errorf("virtualOutbound: %s, want %s", got, tc.want)
			}
			// Port 443 carries only TLS hosts (api.external.test and
			// *.corp.example.com): unknown server names.
			tls443 := lds[translate.OutboundListenerName(443)].(*listener.Listener)
			if got, _ := tcpCluster(t, tls443.GetDefaultFilterChain().GetFilters()[0]); got != tc.want {
				t.Errorf("TLS port default: %s, want %s", got, tc.want)
			}
			var names []string
			for _, fc := range tls443.GetFilterChains() {
				names = append(names, fc.GetFilterChainMatch().GetServerNames()...)
			}
			if want := []string{"*.corp.example.com", "api.external.test"}; !slices.Equal(names, want) {
				t.Errorf("TLS server names %v, want %v", names, want)
			}
			rds, _ := build(t, in, p, translate.RouteType)
			vhs := virtualHosts(rds[translate.OutboundRouteName(80)].(*route.RouteConfiguration))
			catchAll := vhs["allow_any"]
			if tc.want == translate.BlackHoleCluster {
				catchAll = vhs["block_all"]
			}
			if catchAll.GetRoutes()[0].GetRoute().GetCluster() != tc.want {
				t.Errorf("catch-all virtual host %v", catchAll)
			}
			if vhs["api.external.test:80"].GetRoutes()[0].GetRoute().GetCluster() != "outbound|80||api.external.test" {
				t.Errorf("ServiceEntry host not routed: %v", vhs["api.external.test:80"])
			}
		})
	}
}

// TestServiceEntryClusters: dns resolution is STRICT_DNS to the
// endpoints' names or the host itself, static is STATIC to the IPs (with
// localities and weights), none is ORIGINAL_DST and only for sidecars;
// grpc-go and east-west gateways get none of them.
func TestServiceEntryClusters(t *testing.T) {
	in := translate.Input{View: threeClusters(t).View(), Policies: policies(t, "mesh.yaml")}
	sidecar := translate.Proxy{Mode: translate.ModeSidecar, Cluster: "eks-use1", Namespace: "shop"}
	cds, _ := build(t, in, sidecar, translate.ClusterType)
	for name, want := range map[string]struct {
		typ   cluster.Cluster_DiscoveryType
		addrs []string
	}{
		"outbound|80||api.external.test":      {cluster.Cluster_STRICT_DNS, []string{"api.external.test:80"}},
		"outbound|443||api.external.test":     {cluster.Cluster_STRICT_DNS, []string{"api.external.test:443"}},
		"outbound|8443||payments.example.com": {cluster.Cluster_STATIC, []string{"203.0.113.10:8443", "203.0.113.20:8443"}},
		"outbound|443||*.corp.example.com":    {cluster.Cluster_ORIGINAL_DST, nil},
	} {
		c, ok := cds[name].(*cluster.Cluster)
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		var addrs []string
		for _, l := range c.GetLoadAssignment().GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				addrs = append(addrs, sa.GetAddress()+":"+strconv.FormatUint(uint64(sa.GetPortValue()), 10))
			}
		}
		if c.GetType() != want.typ || !slices.Equal(addrs, want.addrs) {
			t.Errorf("%s: %s %v, want %s %v", name, c.GetType(), addrs, want.typ, want.addrs)
		}
	}
	for _, p := range []translate.Proxy{
		{Mode: translate.ModeProxyless, Cluster: "eks-use1"},
		{Mode: translate.ModeEastWest, Cluster: "eks-use1", ListenerPort: 15443},
		{Mode: translate.ModeEgress, Cluster: "eks-use1", ListenerPort: 8080},
	} {
		cds, _ := build(t, in, p, translate.ClusterType)
		_, dns := cds["outbound|80||api.external.test"]
		_, orig := cds["outbound|443||*.corp.example.com"]
		if dns != (p.Mode == translate.ModeEgress) || orig {
			t.Errorf("%s: dns entry %v, resolution-none entry %v", p.Mode, dns, orig)
		}
	}
}

// TestDestinationPolicyTLS: disable, simple (system roots, or the
// credential's CA over SDS; SNI and SANs), mutual (plus the client
// certificate), mesh (the SVID) — for a mesh service and an external host.
func TestDestinationPolicyTLS(t *testing.T) {
	view := threeClusters(t).View()
	proxy := translate.Proxy{Mode: translate.ModeSidecar, Cluster: "eks-use1", Namespace: "shop", Identity: frontendID}
	entry := `apiVersion: meridian.io/v1alpha1
kind: ServiceEntry
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.external.test]
  ports: [{number: 443, protocol: HTTP}]
  resolution: dns
---
`
	for _, tc := range []struct {
		name, host, tls string
		cluster         string
		wantTLS         bool
		sni, cert, ca   string
		system          bool
	}{
		{name: "mesh service, default mesh", host: "frontend", cluster: "outbound|80||frontend.shop.svc.cluster.local", wantTLS: true,
			sni: "outbound_.80_._.frontend.shop.svc.cluster.local", cert: frontendID.String(), ca: sds.BundleSecretName},
		{name: "mesh service, disable", host: "frontend", tls: "{mode: disable}", cluster: "outbound|80||frontend.shop.svc.cluster.local"},
		{name: "external host, default none", host: "api.external.test", cluster: "outbound|443||api.external.test"},
		{name: "external host, simple with system roots", host: "api.external.test", tls: "{mode: simple}", cluster: "outbound|443||api.external.test",
			wantTLS: true, sni: "api.external.test", system: true},
		{name: "external host, simple with a CA and SNI", host: "api.external.test", tls: "{mode: simple, sni: edge.external.test, credentialName: api-ca}", cluster: "outbound|443||api.external.test",
			wantTLS: true, sni: "edge.external.test", ca: "shop/api-ca-cacert"},
		{name: "external host, mutual", host: "api.external.test", tls: "{mode: mutual, credentialName: api-client}", cluster: "outbound|443||api.external.test",
			wantTLS: true, sni: "api.external.test", cert: "shop/api-client", ca: "shop/api-client-cacert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := entry
			if tc.tls != "" {
				yaml += "apiVersion: meridian.io/v1alpha1\nkind: DestinationPolicy\nmetadata: {name: dp, namespace: shop}\nspec:\n  host: " + tc.host + "\n  tls: " + tc.tls + "\n"
			}
			in := translate.Input{View: view, Policies: compile(t, objects(t, yaml))}
			cds, _ := build(t, in, proxy, translate.ClusterType)
			u := upstreamTLS(t, cds[tc.cluster].(*cluster.Cluster))
			if (u != nil) != tc.wantTLS {
				t.Fatalf("TLS = %v, want %v", u != nil, tc.wantTLS)
			}
			if u == nil {
				return
			}
			ctx := u.GetCommonTlsContext()
			var cert string
			if c := ctx.GetTlsCertificateSdsSecretConfigs(); len(c) > 0 {
				cert = c[0].GetName()
			}
			ca := ctx.GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName()
			system := ctx.GetValidationContext().GetSystemRootCerts() != nil
			if u.GetSni() != tc.sni || cert != tc.cert || ca != tc.ca || system != tc.system {
				t.Errorf("sni %q cert %q ca %q system %v, want %q %q %q %v", u.GetSni(), cert, ca, system, tc.sni, tc.cert, tc.ca, tc.system)
			}
		})
	}
}

// TestCredentials: a proxy receives the credentials of the Gateways that
// select it and of the DestinationPolicies that originate TLS — only those
// of its attested identity's namespace.
func TestCredentials(t *testing.T) {
	in := translate.Input{View: threeClusters(t).View(), Policies: policies(t, "mesh.yaml")}
	ingress := map[string]string{"istio": "ingressgateway"}
	for _, tc := range []struct {
		name  string
		proxy translate.Proxy
		want  []string
	}{
		{"ingress gateway of the Gateway's namespace", translate.Proxy{Mode: translate.ModeIngress, Namespace: "gateways", Labels: ingress, Identity: gatewayID},
			[]string{"gateways/partners-cert", "gateways/partners-cert-cacert", "gateways/shop-cert"}},
		{"ingress gateway running as another namespace's identity", translate.Proxy{Mode: translate.ModeIngress, Namespace: "gateways", Labels: ingress, Identity: frontendID},
			[]string{"shop/payments-client", "shop/payments-client-cacert"}},
		{"ingress gateway the Gateway does not select", translate.Proxy{Mode: translate.ModeIngress, Namespace: "gateways", Identity: gatewayID}, nil},
		{"unattested ingress gateway", translate.Proxy{Mode: translate.ModeIngress, Namespace: "gateways", Labels: ingress}, nil},
		{"sidecar of the DestinationPolicy's namespace", translate.Proxy{Mode: translate.ModeSidecar, Namespace: "shop", Identity: frontendID},
			[]string{"shop/payments-client", "shop/payments-client-cacert"}},
		{"sidecar elsewhere", translate.Proxy{Mode: translate.ModeSidecar, Namespace: "data", Identity: spiffeid.RequireFromString("spiffe://mesh.test/ns/data/sa/ledger")}, nil},
		{"proxyless", translate.Proxy{Mode: translate.ModeProxyless, Namespace: "shop", Identity: frontendID}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, c := range translate.Credentials(in, tc.proxy.Scope(translate.SecretType)) {
				got = append(got, c.SecretName())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
