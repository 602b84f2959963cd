package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/server"
)

// syncBuffer collects log output for assertions; tests also see it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.out != nil {
		b.out.Write(p)
	}
	return b.buf.Write(p)
}

// detach stops echoing to the test's output, which panics once the test
// has ended.
func (b *syncBuffer) detach() {
	b.mu.Lock()
	b.out = nil
	b.mu.Unlock()
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is one control plane's xDS serving: a registry, the server and
// its Run loop, a real gRPC server on loopback.
type harness struct {
	t       *testing.T
	reg     *registry.Registry
	xds     *server.Server
	addr    string
	metrics *prometheus.Registry
	logs    *syncBuffer
	grpc    *grpc.Server
}

type harnessOpts struct {
	debounce time.Duration
	register func(*grpc.Server) // extra services on the same gRPC server
	reg      *registry.Registry
	// seed fills the registry before the server starts, so that the first
	// proxies already see it.
	seed func(*harness)
	// configure adjusts the server's config (secrets, attestation).
	configure func(*server.Config)
	// grpcOpts are the gRPC server's options (TLS credentials).
	grpcOpts []grpc.ServerOption
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	h := &harness{t: t, reg: o.reg, metrics: prometheus.NewRegistry(), logs: &syncBuffer{out: t.Output()}}
	if h.reg == nil {
		h.reg = registry.New(registry.Options{})
	}
	if o.seed != nil {
		o.seed(h)
	}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var err error
	cfg := server.Config{Registry: h.reg, Cluster: "c1", Logger: log, Metrics: h.metrics, Debounce: o.debounce}
	if o.configure != nil {
		o.configure(&cfg)
	}
	h.xds, err = server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = lis.Addr().String()
	h.grpc = grpc.NewServer(o.grpcOpts...)
	h.xds.Register(h.grpc)
	if o.register != nil {
		o.register(h.grpc)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = h.grpc.Serve(lis) }()
	go func() {
		defer wg.Done()
		if err := h.xds.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		// Run's return ends every stream, so the graceful stop does not
		// wait on clients.
		cancel()
		h.grpc.GracefulStop()
		wg.Wait()
		h.logs.detach()
	})
	return h
}

func (h *harness) must(err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
}

// conn dials the server, in plaintext unless options say otherwise.
func (h *harness) conn(opts ...grpc.DialOption) *grpc.ClientConn {
	h.t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	c, err := grpc.NewClient(h.addr, opts...)
	h.must(err)
	h.t.Cleanup(func() { c.Close() })
	return c
}

// counter reads one labelled counter or gauge from the server's metrics.
func (h *harness) metric(name string, labels ...string) float64 {
	h.t.Helper()
	mfs, err := h.metrics.Gather()
	h.must(err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func nodeOf(t testing.TB, id string, meta map[string]any, loc *core.Locality) *core.Node {
	t.Helper()
	s, err := structpb.NewStruct(meta)
	if err != nil {
		t.Fatal(err)
	}
	return &core.Node{Id: id, Metadata: s, Locality: loc}
}

// adsStream is a hand-driven ADS stream over real gRPC, state of the
// world or delta: requests go out as the test sends them (the node on the
// first only, as clients do), responses queue up for recv.
type adsStream[Req any, Resp any] struct {
	t       *testing.T
	stream  interface{ Send(Req) error }
	node    *core.Node
	setNode func(Req, *core.Node)
	resps   chan Resp
	errs    chan error
}

type bidi[Req, Resp any] interface {
	Send(Req) error
	Recv() (Resp, error)
}

func openStream[Req, Resp any](h *harness, conn *grpc.ClientConn, node *core.Node, open func(context.Context, discovery.AggregatedDiscoveryServiceClient) (bidi[Req, Resp], error), setNode func(Req, *core.Node)) *adsStream[Req, Resp] {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := open(ctx, discovery.NewAggregatedDiscoveryServiceClient(conn))
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	s := &adsStream[Req, Resp]{t: h.t, stream: st, node: node, setNode: setNode, resps: make(chan Resp, 100), errs: make(chan error, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			r, err := st.Recv()
			if err != nil {
				s.errs <- err
				return
			}
			s.resps <- r
		}
	}()
	h.t.Cleanup(func() { cancel(); <-done })
	return s
}

func (s *adsStream[Req, Resp]) send(req Req) {
	s.t.Helper()
	if s.node != nil {
		s.setNode(req, s.node)
		s.node = nil
	}
	// io.EOF: the server already ended the stream (a refused credential can
	// end it before the first request is sent); its status comes from Recv,
	// which streamErr and recv report.
	if err := s.stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
		s.t.Fatal(err)
	}
}

func (s *adsStream[Req, Resp]) recv() Resp {
	s.t.Helper()
	select {
	case r := <-s.resps:
		return r
	case err := <-s.errs:
		s.t.Fatalf("stream ended: %v", err)
	case <-time.After(10 * time.Second):
		s.t.Fatal("no response within 10s")
	}
	var zero Resp
	return zero
}

// streamErr waits for the stream to end and returns its error.
func (s *adsStream[Req, Resp]) streamErr() error {
	s.t.Helper()
	select {
	case r := <-s.resps:
		s.t.Fatalf("got a response %v, want the stream to end", r)
	case err := <-s.errs:
		return err
	case <-time.After(10 * time.Second):
		s.t.Fatal("stream still open after 10s")
	}
	return errors.New("unreachable")
}

// sotw is a state-of-the-world stream.
type sotw struct {
	*adsStream[*discovery.DiscoveryRequest, *discovery.DiscoveryResponse]
}

func (h *harness) sotw(node *core.Node) *sotw {
	h.t.Helper()
	return h.sotwVia(h.conn(), node)
}

// sotwVia opens a state-of-the-world stream on a given connection.
func (h *harness) sotwVia(conn *grpc.ClientConn, node *core.Node) *sotw {
	h.t.Helper()
	return &sotw{openStream(h, conn, node,
		func(ctx context.Context, c discovery.AggregatedDiscoveryServiceClient) (bidi[*discovery.DiscoveryRequest, *discovery.DiscoveryResponse], error) {
			return c.StreamAggregatedResources(ctx)
		},
		func(r *discovery.DiscoveryRequest, n *core.Node) { r.Node = n })}
}

// ack acknowledges a response, naming the same resources again.
func (s *sotw) ack(r *discovery.DiscoveryResponse, names ...string) {
	s.t.Helper()
	s.send(&discovery.DiscoveryRequest{TypeUrl: r.TypeUrl, VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce, ResourceNames: names})
}

func names(r *discovery.DiscoveryResponse) []string {
	var out []string
	for _, a := range r.Resources {
		m, err := a.UnmarshalNew()
		if err != nil {
			panic(err)
		}
		out = append(out, resourceName(m))
	}
	return out
}

func resourceName(m any) string {
	if n, ok := m.(interface{ GetName() string }); ok {
		return n.GetName()
	}
	if n, ok := m.(interface{ GetClusterName() string }); ok {
		return n.GetClusterName()
	}
	return fmt.Sprintf("%T", m)
}

func contains(haystack, needle string) bool { return strings.Contains(haystack, needle) }
