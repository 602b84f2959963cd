package cli_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// TestProxyConfig: meridianctl proxy-config against a real meridiand, with
// a proxy connected over ADS: the table lists what was sent with versions
// and ACK state (a NACK with the proxy's reason), json adds the resources
// of the types asked for; an unknown proxy and a bad --type are one line
// and a hint.
func TestProxyConfig(t *testing.T) {
	cfg := daemon.DefaultConfig()
	cfg.Cluster = registry.Cluster{Name: "c1", Region: "r1"}
	cfg.DataDir = t.TempDir()
	cfg.GRPCAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	d, err := daemon.New(context.Background(), cfg, daemon.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if _, err := d.Registry.Apply("c1",
		registry.PutService(&registry.Service{Namespace: "shop", Name: "web", Ports: []registry.ServicePort{{Port: 80, Protocol: registry.ProtocolHTTP}}}),
		registry.PutEndpoint(&registry.Endpoint{Service: registry.ServiceKey{Namespace: "shop", Name: "web"}, ID: "web-0",
			Addresses: []string{"10.0.0.1"}, Port: 8080, Locality: registry.Locality{Region: "r1", Zone: "z1"}}),
	); err != nil {
		t.Fatal(err)
	}
	server := d.GRPCAddr()

	// A proxy: clusters ACKed, listeners NACKed.
	conn, err := grpc.NewClient(server, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	ads, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := structpb.NewStruct(map[string]any{"namespace": "shop"})
	if err := ads.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "web-sidecar", Metadata: meta}, TypeUrl: translate.ClusterType}); err != nil {
		t.Fatal(err)
	}
	cds, err := ads.Recv()
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ads.Send(&discovery.DiscoveryRequest{TypeUrl: translate.ClusterType, VersionInfo: cds.VersionInfo, ResponseNonce: cds.Nonce}))
	must(ads.Send(&discovery.DiscoveryRequest{TypeUrl: translate.ListenerType}))
	lds, err := ads.Recv()
	must(err)
	must(ads.Send(&discovery.DiscoveryRequest{TypeUrl: translate.ListenerType, ResponseNonce: lds.Nonce,
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "listener 0.0.0.0_80: no thanks"}}))

	var out string
	testutil.Eventually(t, 10*time.Second, func() error {
		code, stdout, stderr := run(context.Background(), "proxy-config", "web-sidecar", "--server", server)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		out = stdout
		if !strings.Contains(out, "ACKed version "+cds.VersionInfo) || !strings.Contains(out, "NACKed version "+lds.VersionInfo) {
			return errNotYet(out)
		}
		return nil
	})
	for _, want := range []string{"PROXY web-sidecar (sidecar)", "namespace shop", "TYPE", "outbound|80||web.shop.svc.cluster.local", "PassthroughCluster",
		"virtualOutbound", "(listener 0.0.0.0_80: no thanks)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	code, stdout, stderr := run(context.Background(), "proxy-config", "web-sidecar", "--server", server, "--type", "clusters", "-o", "json")
	if code != 0 {
		t.Fatalf("json: exit %d: %s", code, stderr)
	}
	var resp struct {
		Streams []struct {
			Types map[string]struct {
				Acked     string                     `json:"acked"`
				Sent      map[string]string          `json:"sent"`
				Resources map[string]json.RawMessage `json:"resources"`
			} `json:"types"`
		} `json:"streams"`
	}
	if err := json.Unmarshal([]byte(stdout), &resp); err != nil || len(resp.Streams) != 1 {
		t.Fatalf("json: %v\n%s", err, stdout)
	}
	types := resp.Streams[0].Types
	cluster := "outbound|80||web.shop.svc.cluster.local"
	var content struct{ Type string }
	_ = json.Unmarshal(types["CDS"].Resources[cluster], &content)
	if _, lds := types["LDS"]; lds || types["CDS"].Acked != cds.VersionInfo || types["CDS"].Sent[cluster] == "" || content.Type != "EDS" {
		t.Fatalf("json of the clusters: %s", stdout)
	}

	code, _, stderr = run(context.Background(), "proxy-config", "nobody", "--server", server)
	checkFailure(t, code, stderr, `no proxy with id "nobody" is connected`)
	code, _, stderr = run(context.Background(), "proxy-config", "web-sidecar", "--server", server, "--type", "ingresses")
	checkFailure(t, code, stderr, `--type "ingresses": not a resource type`)
	if !strings.Contains(stderr, "clusters, endpoints, listeners, routes, secrets") {
		t.Errorf("the hint does not list the types: %s", stderr)
	}
	code, _, stderr = run(context.Background(), "proxy-config", "--server", server)
	checkFailure(t, code, stderr, "accepts 1 arg(s), received 0")
}

type errNotYet string

func (e errNotYet) Error() string { return "not yet:\n" + string(e) }
