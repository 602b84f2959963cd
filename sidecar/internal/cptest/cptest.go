package cptest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	gcpserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/server"
)

// Logger returns a logger writing to the test's output.
func Logger(t testing.TB) *slog.Logger {
	var w io.Writer = io.Discard
	if tt, ok := t.(*testing.T); ok {
		w = tt.Output()
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// Meridian is Meridian's xDS server over a registry, serving on loopback.
type Meridian struct {
	Addr   string
	Reg    *registry.Registry
	Server *server.Server
	stop   func()
}

// MeridianOption adjusts StartMeridian: the server's config (secrets,
// attestation) and the gRPC server's options (TLS).
type MeridianOption struct {
	Configure func(*server.Config)
	GRPC      []grpc.ServerOption
}

// StartMeridian serves reg's view through xds/server with a short debounce.
// addr may be "" for a free port.
func StartMeridian(t testing.TB, reg *registry.Registry, cluster, addr string, opts ...MeridianOption) *Meridian {
	t.Helper()
	cfg := server.Config{Registry: reg, Cluster: cluster, Logger: Logger(t), Debounce: 10 * time.Millisecond}
	var gopts []grpc.ServerOption
	for _, o := range opts {
		if o.Configure != nil {
			o.Configure(&cfg)
		}
		gopts = append(gopts, o.GRPC...)
	}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &Meridian{Reg: reg, Server: s}
	// Stop waits for the stream handlers, so nothing logs after the test.
	g := grpc.NewServer(append(gopts, grpc.WaitForHandlers(true))...)
	s.Register(g)
	m.Addr, m.stop = serve(t, g, addr, func(ctx context.Context) {
		if err := s.Run(ctx); err != nil {
			t.Errorf("xds server: %v", err)
		}
	})
	t.Cleanup(m.Stop)
	return m
}

// Stop ends the server (and every stream); idempotent.
func (m *Meridian) Stop() { m.stop() }

// serve runs g on addr (or a free port) with run beside it; stop ends
// both and waits.
func serve(t testing.TB, g *grpc.Server, addr string, run func(context.Context)) (string, func()) {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = g.Serve(lis) }()
	if run != nil {
		wg.Add(1)
		go func() { defer wg.Done(); run(ctx) }()
	}
	var once sync.Once
	return lis.Addr().String(), func() {
		once.Do(func() {
			cancel()
			g.Stop()
			wg.Wait()
		})
	}
}

// Snapshot is go-control-plane's snapshot-cache server, recording the
// requests it receives.
type Snapshot struct {
	Addr  string
	Cache cache.SnapshotCache
	stop  func()

	mu      sync.Mutex
	nacks   []string
	streams int
	version int
}

// SnapshotOptions configure StartSnapshot.
type SnapshotOptions struct {
	// SotWOnly answers delta streams with Unimplemented, as an older
	// control plane would.
	SotWOnly bool
	// Addr to listen on; "" picks a free port.
	Addr string
}

// StartSnapshot starts a snapshot-cache server.
func StartSnapshot(t testing.TB, o SnapshotOptions) *Snapshot {
	t.Helper()
	s := &Snapshot{Cache: cache.NewSnapshotCache(false, cache.IDHash{}, nil)}
	cb := gcpserver.CallbackFuncs{
		StreamOpenFunc:      func(context.Context, int64, string) error { s.count(); return nil },
		DeltaStreamOpenFunc: func(context.Context, int64, string) error { s.count(); return nil },
		StreamRequestFunc: func(_ int64, r *discovery.DiscoveryRequest) error {
			s.noteNack(r.GetErrorDetail().GetMessage())
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, r *discovery.DeltaDiscoveryRequest) error {
			s.noteNack(r.GetErrorDetail().GetMessage())
			return nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := gcpserver.NewServer(ctx, s.Cache, cb)
	g := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(g, ads{srv: srv, sotwOnly: o.SotWOnly})
	var stop func()
	s.Addr, stop = serve(t, g, o.Addr, nil)
	s.stop = func() { stop(); cancel() }
	t.Cleanup(s.Stop)
	return s
}

// Stop ends the server; idempotent.
func (s *Snapshot) Stop() { s.stop() }

func (s *Snapshot) count() {
	s.mu.Lock()
	s.streams++
	s.mu.Unlock()
}

func (s *Snapshot) noteNack(msg string) {
	if msg == "" {
		return
	}
	s.mu.Lock()
	s.nacks = append(s.nacks, msg)
	s.mu.Unlock()
}

// Nacks returns the error details of every NACK received.
func (s *Snapshot) Nacks() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.nacks...)
}

// Streams counts the streams opened.
func (s *Snapshot) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams
}

// Set publishes resources for a node under a fresh version.
func (s *Snapshot) Set(t testing.TB, node string, res map[string][]types.Resource) {
	t.Helper()
	s.mu.Lock()
	s.version++
	v := s.version
	s.mu.Unlock()
	// A type absent from a snapshot has no version, and the cache never
	// answers a wildcard request for it: give every type a list.
	for _, typ := range []string{resource.ListenerType, resource.ClusterType, resource.RouteType, resource.EndpointType, resource.SecretType} {
		if _, ok := res[typ]; !ok {
			res[typ] = nil
		}
	}
	snap, err := cache.NewSnapshot(itoa(v), res)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
}

func itoa(v int) string {
	b := []byte{}
	for v > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + v%10)}, b...)
		v /= 10
	}
	return string(b)
}

type ads struct {
	srv      gcpserver.Server
	sotwOnly bool
}

func (a ads) StreamAggregatedResources(st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.srv.StreamAggregatedResources(st)
}

func (a ads) DeltaAggregatedResources(st discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	if a.sotwOnly {
		return status.Error(codes.Unimplemented, "delta xDS is not implemented here")
	}
	return a.srv.DeltaAggregatedResources(st)
}

// Node returns a sidecar node with the given id, for snapshot servers.
func Node(id string) *core.Node { return &core.Node{Id: id} }
