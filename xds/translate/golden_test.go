package translate_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/translate"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

var useast1a = registry.Locality{Region: "us-east-1", Zone: "us-east-1a"}

// goldenProxies is one proxy per mode, all in eks-use1 zone us-east-1a
// (plus an east-west gateway of the on-prem cluster), against the
// three-cluster topology.
var goldenProxies = []struct {
	name     string
	proxy    translate.Proxy
	policies []string // testdata files
}{
	{"sidecar", translate.Proxy{ID: "sc", Mode: translate.ModeSidecar, Cluster: "eks-use1", Namespace: "shop", Locality: useast1a, InboundPorts: []uint32{8080, 9090}}, nil},
	{"ingress", translate.Proxy{ID: "in", Mode: translate.ModeIngress, Cluster: "eks-use1", Namespace: "gateways", Locality: useast1a, ListenerPort: 8080}, nil},
	{"egress", translate.Proxy{ID: "eg", Mode: translate.ModeEgress, Cluster: "eks-use1", Namespace: "gateways", Locality: useast1a, ListenerPort: 8080}, nil},
	{"east-west", translate.Proxy{ID: "ew", Mode: translate.ModeEastWest, Cluster: "onprem-dc1", Namespace: "gateways", Locality: registry.Locality{Region: "onprem-east", Zone: "dc1-z1"}, ListenerPort: 15443}, nil},
	{"proxyless", translate.Proxy{ID: "pl", Mode: translate.ModeProxyless, Cluster: "eks-use1", Namespace: "shop", Locality: useast1a, NoOverprovisioning: true}, nil},
	{"sidecar-policies", translate.Proxy{ID: "sc", Mode: translate.ModeSidecar, Cluster: "eks-use1", Namespace: "shop", Locality: useast1a}, []string{"policies.yaml"}},
	{"proxyless-policies", translate.Proxy{ID: "pl", Mode: translate.ModeProxyless, Cluster: "eks-euw1", Namespace: "shop", Locality: registry.Locality{Region: "eu-west-1", Zone: "eu-west-1a"}, NoOverprovisioning: true}, []string{"policies.yaml"}},
	// Security, ServiceEntries, REGISTRY_ONLY and Gateways (mesh.yaml),
	// for proxies whose identity the server attested.
	{"sidecar-mtls", translate.Proxy{ID: "fe", Mode: translate.ModeSidecar, Cluster: "eks-use1", Namespace: "shop", ServiceAccount: "frontend", Locality: useast1a,
		Labels: map[string]string{"app": "frontend"}, InboundPorts: []uint32{8080, 9090}, InboundProtocols: map[uint32]registry.Protocol{8080: registry.ProtocolHTTP},
		RegistryOnly: true, Identity: spiffeid.RequireFromString("spiffe://mesh.test/ns/shop/sa/frontend")}, []string{"policies.yaml", "mesh.yaml"}},
	{"ingress-gateway", translate.Proxy{ID: "in", Mode: translate.ModeIngress, Cluster: "eks-use1", Namespace: "gateways", ServiceAccount: "ingress", Locality: useast1a,
		Labels: map[string]string{"istio": "ingressgateway"}, ListenerPort: 8080, Identity: spiffeid.RequireFromString("spiffe://mesh.test/ns/gateways/sa/ingress")}, []string{"policies.yaml", "mesh.yaml"}},
	{"egress-gateway", translate.Proxy{ID: "eg", Mode: translate.ModeEgress, Cluster: "eks-use1", Namespace: "gateways", ServiceAccount: "egress", Locality: useast1a,
		Labels: map[string]string{"istio": "egressgateway"}, ListenerPort: 8080, RegistryOnly: true, Identity: spiffeid.RequireFromString("spiffe://mesh.test/ns/gateways/sa/egress")}, []string{"policies.yaml", "mesh.yaml"}},
	{"east-west-gateway", translate.Proxy{ID: "ew", Mode: translate.ModeEastWest, Cluster: "eks-use1", Namespace: "gateways", Locality: useast1a,
		Labels: map[string]string{"istio": "eastwestgateway"}, ListenerPort: 15443, Identity: spiffeid.RequireFromString("spiffe://mesh.test/ns/gateways/sa/eastwest")}, []string{"policies.yaml", "mesh.yaml"}},
}

// TestGolden renders every resource a proxy of each mode gets and compares
// it with testdata/golden/MODE.json; `go test ./xds/translate -update`
// rewrites the files after a deliberate change (review the diff).
func TestGolden(t *testing.T) {
	view := threeClusters(t).View()
	for _, tc := range goldenProxies {
		t.Run(tc.name, func(t *testing.T) {
			in := translate.Input{View: view}
			if tc.policies != nil {
				in.Policies = policies(t, tc.policies...)
			}
			out := map[string]any{}
			var warnings []string
			for _, typ := range append(translate.Types, translate.SecretType) {
				s := tc.proxy.Scope(typ)
				res := translate.Build(in, s)
				byName := map[string]json.RawMessage{}
				for _, r := range res.Resources {
					if err := translate.Validate(r); err != nil {
						t.Errorf("invalid resource: %v", err)
					}
					b, err := protojson.Marshal(r.Message)
					if err != nil {
						t.Fatal(err)
					}
					byName[r.Name] = b
				}
				if typ == translate.SecretType {
					// Secrets come from the trust component; the
					// translation only names the credentials a proxy may
					// receive.
					var creds []string
					for _, c := range translate.Credentials(in, s) {
						creds = append(creds, c.SecretName())
					}
					if len(creds) > 0 {
						out[s.String()+" credentials"] = creds
					}
					continue
				}
				out[s.String()] = byName
				warnings = append(warnings, res.Warnings...)
			}
			if warnings == nil {
				warnings = []string{}
			}
			out["warnings"] = warnings
			got := normalize(t, out)
			path := filepath.Join("testdata", "golden", tc.name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s differs (-want +got); rerun with -update if the change is intended:\n%s", path, diff)
			}
		})
	}
}

// normalize renders JSON with sorted keys and fixed indentation: protojson
// output is deliberately unstable in its whitespace.
func normalize(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(generic); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
