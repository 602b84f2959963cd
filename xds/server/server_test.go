package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/translate"
)

const (
	hostA   = "a.shop.svc.cluster.local"
	hostB   = "b.shop.svc.cluster.local"
	targetA = hostA + ":9090"
	claA    = "outbound|9090||" + hostA
	claB    = "outbound|80||" + hostB
)

// seed puts one cluster with two services into the registry.
func seed(h *harness) {
	h.t.Helper()
	h.must(h.reg.SetCluster(registry.Cluster{Name: "c1", Region: "r1"}))
	_, err := h.reg.Apply("c1",
		registry.PutService(&registry.Service{Namespace: "shop", Name: "a", Ports: []registry.ServicePort{{Port: 9090, Protocol: registry.ProtocolGRPC}}}),
		registry.PutService(&registry.Service{Namespace: "shop", Name: "b", Ports: []registry.ServicePort{{Port: 80, Protocol: registry.ProtocolHTTP}}}),
		putEp("a", "a-1", "10.0.0.1", "r1/z1"),
		putEp("b", "b-1", "10.0.1.1", "r1/z1"),
	)
	h.must(err)
}

func putEp(svc, id, addr, loc string) registry.Change {
	l, err := registry.ParseLocality(loc)
	if err != nil {
		panic(err)
	}
	return registry.PutEndpoint(&registry.Endpoint{Service: registry.ServiceKey{Namespace: "shop", Name: svc}, ID: id, Addresses: []string{addr}, Port: 8080, Locality: l})
}

var z1 = &core.Locality{Region: "r1", Zone: "z1"}

// TestAnswersExactlyTheRequestedNames is the grpc-go case go-control-plane's
// snapshot cache fails: listeners and clusters asked for by name, while
// the server has more of them.
func TestAnswersExactlyTheRequestedNames(t *testing.T) {
	h := newHarness(t, harnessOpts{seed: seed})
	c := h.sotw(nodeOf(t, "app-1", map[string]any{"mode": "proxyless"}, z1))
	c.send(&discovery.DiscoveryRequest{TypeUrl: translate.ListenerType, ResourceNames: []string{targetA}})
	r := c.recv()
	if got := names(r); !slices.Equal(got, []string{targetA}) {
		t.Fatalf("listeners = %v, want exactly [%s]", got, targetA)
	}
	c.ack(r, targetA)
	c.send(&discovery.DiscoveryRequest{TypeUrl: translate.ClusterType, ResourceNames: []string{claA}})
	r = c.recv()
	if got := names(r); !slices.Equal(got, []string{claA}) {
		t.Fatalf("clusters = %v, want exactly [%s]", got, claA)
	}
	if r.TypeUrl != translate.ClusterType || r.VersionInfo == "" || r.Nonce == "" {
		t.Fatalf("bad response header: %v", r)
	}
}

// TestOneEndpointChangeSotw: a change to one service's endpoints sends that
// service's load assignment alone, and nothing of the other types.
func TestOneEndpointChangeSotw(t *testing.T) {
	h := newHarness(t, harnessOpts{seed: seed})
	c := h.sotw(nodeOf(t, "sidecar-1", nil, z1))
	c.send(&discovery.DiscoveryRequest{TypeUrl: translate.ClusterType})
	cds := c.recv()
	if got := names(cds); len(got) != 4 { // two services, passthrough, blackhole
		t.Fatalf("wildcard clusters = %v", got)
	}
	c.ack(cds)
	c.send(&discovery.DiscoveryRequest{TypeUrl: translate.EndpointType, ResourceNames: []string{claA, claB}})
	eds := c.recv()
	if got := names(eds); !slices.Equal(got, []string{claB, claA}) { // sorted by name
		t.Fatalf("load assignments = %v", got)
	}
	c.ack(eds, claA, claB)
	waitAcked(h, "sidecar-1", "EDS", eds.VersionInfo)

	_, err := h.reg.Apply("c1", putEp("b", "b-2", "10.0.1.2", "r1/z1"))
	h.must(err)
	next := c.recv()
	if next.TypeUrl != translate.EndpointType || !slices.Equal(names(next), []string{claB}) {
		t.Fatalf("after one endpoint change got %s %v, want EDS [%s] only", next.TypeUrl, names(next), claB)
	}
	cla := &endpoint.ClusterLoadAssignment{}
	h.must(next.Resources[0].UnmarshalTo(cla))
	if n := len(cla.Endpoints[0].LbEndpoints); n != 2 {
		t.Fatalf("cluster b has %d endpoints, want 2", n)
	}
	c.ack(next, claA, claB)
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := h.metric("meridian_xds_convergence_seconds"); n < 1 {
			return fmt.Errorf("convergence observed %v times", n)
		}
		return nil
	})
}

// waitAcked waits until the debug view shows a proxy's ACK of a version.
func waitAcked(h *harness, proxy, typ, version string) {
	h.t.Helper()
	testutil.Eventually(h.t, 5*time.Second, func() error {
		d := debugProxy(h, proxy, false)
		for _, st := range d.Streams {
			if got := st.Types[typ].Acked; got == version {
				return nil
			}
		}
		return fmt.Errorf("%s %s not acked at %s: %+v", proxy, typ, version, d)
	})
}

type debugView struct {
	Proxy   string `json:"proxy"`
	Streams []struct {
		Mode    string `json:"mode"`
		Cluster string `json:"cluster"`
		Types   map[string]struct {
			Scope       string                             `json:"scope"`
			Acked       string                             `json:"acked"`
			AwaitingAck string                             `json:"awaitingAck"`
			Nacks       int                                `json:"nacks"`
			Subscribed  []string                           `json:"subscribed"`
			Unknown     []string                           `json:"unknown"`
			LastNack    *struct{ Version, Message string } `json:"lastNack"`
			LastPush    *struct {
				Version   string            `json:"version"`
				Resources map[string]string `json:"resources"`
			} `json:"lastPush"`
			Resources map[string]json.RawMessage `json:"resources"`
		} `json:"types"`
	} `json:"streams"`
}

func debugProxy(h *harness, id string, resources bool) debugView {
	h.t.Helper()
	url := "/debug/xds?proxy=" + id
	if resources {
		url += "&resources=1"
	}
	rec := httptest.NewRecorder()
	h.xds.DebugHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, url, nil))
	var v debugView
	if rec.Code == http.StatusOK {
		h.must(json.Unmarshal(rec.Body.Bytes(), &v))
	}
	return v
}

// TestNACK: a rejected response is logged with the proxy and the error,
// counted, shown in the debug view, and not sent again; the stream keeps
// getting later changes.
func TestNACK(t *testing.T) {
	h := newHarness(t, harnessOpts{seed: seed})
	c := h.sotw(nodeOf(t, "envoy-nack", nil, z1))
	c.send(&discovery.DiscoveryRequest{TypeUrl: translate.EndpointType, ResourceNames: []string{claA, claB}})
	first := c.recv()
	c.ack(first, claA, claB)
	waitAcked(h, "envoy-nack", "EDS", first.VersionInfo)

	_, err := h.reg.Apply("c1", putEp("a", "a-2", "10.0.0.2", "r1/z1"))
	h.must(err)
	bad := c.recv()
	c.send(&discovery.DiscoveryRequest{TypeUrl: translate.EndpointType, VersionInfo: first.VersionInfo, ResponseNonce: bad.Nonce,
		ResourceNames: []string{claA, claB}, ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "no thanks: endpoint 10.0.0.2 rejected"}})
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := h.metric("meridian_xds_nacks_total", "type", "EDS"); n != 1 {
			return fmt.Errorf("nacks = %v", n)
		}
		return nil
	})
	if l := h.logs.String(); !contains(l, "proxy=envoy-nack") || !contains(l, "no thanks: endpoint 10.0.0.2 rejected") {
		t.Errorf("no NACK log line with proxy and detail:\n%s", l)
	}
	d := debugProxy(h, "envoy-nack", false)
	eds := d.Streams[0].Types["EDS"]
	if eds.LastNack == nil || eds.LastNack.Version != bad.VersionInfo || eds.Acked != first.VersionInfo {
		t.Errorf("debug view after NACK: %+v", eds)
	}

	// A later change to the other service: only it is sent, not the
	// NACKed assignment again.
	_, err = h.reg.Apply("c1", putEp("b", "b-2", "10.0.1.2", "r1/z1"))
	h.must(err)
	next := c.recv()
	if !slices.Equal(names(next), []string{claB}) {
		t.Fatalf("after a NACK and another change got %v, want [%s] only", names(next), claB)
	}
}

// TestBadNode: garbage metadata closes that stream with InvalidArgument
// naming the field, logs it, and the server keeps serving others.
func TestBadNode(t *testing.T) {
	h := newHarness(t, harnessOpts{seed: seed})
	for _, tc := range []struct {
		name string
		node *core.Node
		req  *discovery.DiscoveryRequest
		want string
	}{
		{"mode", nodeOf(t, "bad-1", map[string]any{"mode": "toaster"}, nil), nil, `node.metadata[mode]: Unsupported value: "toaster"`},
		{"namespace", nodeOf(t, "bad-2", map[string]any{"namespace": []any{1.0}}, nil), nil, "node.metadata[namespace]: Invalid value: \"a list\": must be a string"},
		{"locality", &core.Node{Id: "bad-3", Locality: &core.Locality{Zone: "z1"}}, nil, "node.locality.region"},
		{"no node", nil, nil, "node.id: Required value"},
		{"no type", nodeOf(t, "bad-4", nil, nil), &discovery.DiscoveryRequest{}, "type_url is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.sotw(tc.node)
			req := tc.req
			if req == nil {
				req = &discovery.DiscoveryRequest{TypeUrl: translate.ClusterType}
			}
			c.send(req)
			err := c.streamErr()
			if status.Code(err) != codes.InvalidArgument || !contains(err.Error(), tc.want) {
				t.Fatalf("stream error = %v, want InvalidArgument containing %q", err, tc.want)
			}
		})
	}
	if n := h.metric("meridian_xds_rejected_streams_total", "reason", "node"); n != 4 {
		t.Errorf("rejected streams (node) = %v, want 4", n)
	}
	if l := h.logs.String(); !contains(l, "rejected stream: bad node") || !contains(l, "node=bad-1") {
		t.Errorf("no log line for the bad node:\n%s", l)
	}
	good := h.sotw(nodeOf(t, "good", nil, z1))
	good.send(&discovery.DiscoveryRequest{TypeUrl: translate.ClusterType})
	if got := names(good.recv()); len(got) == 0 {
		t.Fatal("a good client got nothing after the bad ones")
	}
}

// TestUnknownNamesAndTypes: names and types Meridian does not have get an
// empty response and a log line, never an error or a hang.
func TestUnknownNamesAndTypes(t *testing.T) {
	h := newHarness(t, harnessOpts{seed: seed})
	c := h.sotw(nodeOf(t, "curious", map[string]any{"mode": "proxyless"}, z1))
	c.send(&discovery.DiscoveryRequest{TypeUrl: translate.ListenerType, ResourceNames: []string{"nosuch.shop.svc.cluster.local:1"}})
	if r := c.recv(); len(r.Resources) != 0 {
		t.Fatalf("unknown listener: got %v, want an empty response", names(r))
	}
	const runtime = "type.googleapis.com/envoy.service.runtime.v3.Runtime"
	c.send(&discovery.DiscoveryRequest{TypeUrl: runtime, ResourceNames: []string{"default"}})
	if r := c.recv(); len(r.Resources) != 0 || r.TypeUrl != runtime {
		t.Fatalf("unserved type: got %v", r)
	}
	// Secrets, to a stream that proved no identity: nothing.
	c.send(&discovery.DiscoveryRequest{TypeUrl: translate.SecretType, ResourceNames: []string{"spiffe://mesh.test/ns/default/sa/default", "ROOTCA"}})
	if r := c.recv(); len(r.Resources) != 0 || r.TypeUrl != translate.SecretType {
		t.Fatalf("secrets without an identity: got %v", r)
	}
	if n := h.metric("meridian_xds_unknown_resources_total", "type", "LDS"); n != 1 {
		t.Errorf("unknown LDS names = %v, want 1", n)
	}
	if l := h.logs.String(); !contains(l, "asked for resources Meridian does not have") || !contains(l, "nosuch.shop.svc.cluster.local:1") || !contains(l, "does not serve") || !contains(l, "proved no identity") {
		t.Errorf("missing log lines:\n%s", l)
	}
	// The stream still works.
	c.send(&discovery.DiscoveryRequest{TypeUrl: translate.ClusterType, ResourceNames: []string{claA}})
	if got := names(c.recv()); !slices.Equal(got, []string{claA}) {
		t.Fatalf("clusters after unknown requests = %v", got)
	}
}

// TestBurstIsDebounced: a burst of changes reaches a proxy as at most two
// pushes — the first change at once, the rest coalesced — and the last
// carries everything.
func TestBurstIsDebounced(t *testing.T) {
	h := newHarness(t, harnessOpts{debounce: 300 * time.Millisecond, seed: seed})
	c := h.sotw(nodeOf(t, "burst", nil, z1))
	c.send(&discovery.DiscoveryRequest{TypeUrl: translate.EndpointType, ResourceNames: []string{claA}})
	first := c.recv()
	c.ack(first, claA)
	waitAcked(h, "burst", "EDS", first.VersionInfo)
	before := h.metric("meridian_xds_pushes_total", "type", "EDS")
	for i := range 20 {
		_, err := h.reg.Apply("c1", putEp("a", fmt.Sprintf("burst-%d", i), fmt.Sprintf("10.9.0.%d", i+1), "r1/z1"))
		h.must(err)
	}
	for {
		r := c.recv()
		c.ack(r, claA)
		cla := &endpoint.ClusterLoadAssignment{}
		h.must(r.Resources[0].UnmarshalTo(cla))
		if len(cla.Endpoints[0].LbEndpoints) == 21 {
			break
		}
	}
	if n := h.metric("meridian_xds_pushes_total", "type", "EDS") - before; n > 2 {
		t.Fatalf("%v pushes for one burst, want at most 2", n)
	}
}

// TestSharedGroups: proxies with the same scope share one computed group;
// the debug overview and the connected-proxies gauge show them.
func TestSharedGroups(t *testing.T) {
	h := newHarness(t, harnessOpts{seed: seed})
	for i := range 5 {
		c := h.sotw(nodeOf(t, fmt.Sprintf("twin-%d", i), map[string]any{"namespace": "shop"}, z1))
		c.send(&discovery.DiscoveryRequest{TypeUrl: translate.EndpointType, ResourceNames: []string{claA}})
		c.recv()
	}
	other := h.sotw(nodeOf(t, "elsewhere", map[string]any{"namespace": "shop"}, &core.Locality{Region: "r1", Zone: "z2"}))
	other.send(&discovery.DiscoveryRequest{TypeUrl: translate.EndpointType, ResourceNames: []string{claA}})
	other.recv()

	rec := httptest.NewRecorder()
	h.xds.DebugHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/xds", nil))
	var overview struct {
		Proxies []struct{ ID string }
		Groups  []struct {
			Scope   string
			Streams int
		}
	}
	h.must(json.Unmarshal(rec.Body.Bytes(), &overview))
	if len(overview.Proxies) != 6 || len(overview.Groups) != 2 {
		t.Fatalf("overview: %d proxies, %d groups, want 6 and 2: %s", len(overview.Proxies), len(overview.Groups), rec.Body)
	}
	if g := overview.Groups[0]; g.Scope != "EDS cluster=c1 locality=r1/z1" || g.Streams != 5 {
		t.Fatalf("group %+v, want the five twins in one", g)
	}
	if n := h.metric("meridian_xds_connected_proxies", "mode", "sidecar", "cluster", "c1"); n != 6 {
		t.Fatalf("connected sidecars in c1 = %v, want 6", n)
	}
	d := debugProxy(h, "twin-0", true)
	eds := d.Streams[0].Types["EDS"]
	if !slices.Equal(eds.Subscribed, []string{claA}) || len(eds.Resources[claA]) == 0 || eds.LastPush == nil || eds.LastPush.Resources[claA] == "" {
		t.Fatalf("debug view of twin-0: %+v", eds)
	}
}
