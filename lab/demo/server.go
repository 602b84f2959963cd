package demo

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meridian-mesh/meridian/lab/demopb"
)

// Upstream is a service an instance calls on every request.
type Upstream struct {
	// Name is the upstream's service name, for error messages.
	Name   string
	Client demopb.DemoClient
}

// Config configures one instance's server.
type Config struct {
	// Self is this instance's hop; the address is filled in by Serve from
	// the listener when empty.
	Self *demopb.Hop
	// Upstreams are called in order on every request; their hops follow
	// this instance's in the reply.
	Upstreams []Upstream
	// UpstreamTimeout bounds each upstream call, within the caller's own
	// deadline. Default 2s.
	UpstreamTimeout time.Duration
}

// Server answers Demo.Call. Create it with NewServer.
type Server struct {
	demopb.UnimplementedDemoServer
	cfg Config
}

// NewServer returns the Demo service of one instance.
func NewServer(cfg Config) *Server {
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = 2 * time.Second
	}
	return &Server{cfg: cfg}
}

// Call answers with this instance's hop after calling every upstream.
func (s *Server) Call(ctx context.Context, req *demopb.CallRequest) (*demopb.CallReply, error) {
	reply := &demopb.CallReply{Hops: []*demopb.Hop{s.cfg.Self}}
	for _, u := range s.cfg.Upstreams {
		uctx, cancel := context.WithTimeout(ctx, s.cfg.UpstreamTimeout)
		r, err := u.Client.Call(uctx, &demopb.CallRequest{Caller: s.cfg.Self.GetService()})
		cancel()
		if err != nil {
			// The caller learns which hop failed and keeps the code, so
			// that "no healthy upstream" stays UNAVAILABLE end to end.
			st := status.Convert(err)
			return nil, status.Errorf(st.Code(), "%s@%s → %s: %s", s.cfg.Self.GetService(), s.cfg.Self.GetCluster(), u.Name, st.Message())
		}
		reply.Hops = append(reply.Hops, r.GetHops()...)
	}
	return reply, nil
}

// Serve serves the Demo service and gRPC health on lis until ctx ends,
// then stops gracefully (in-flight calls finish within a second).
func Serve(ctx context.Context, lis net.Listener, cfg Config) error {
	if cfg.Self == nil || cfg.Self.GetService() == "" {
		return fmt.Errorf("demo: Config.Self needs at least a service name")
	}
	self := proto.Clone(cfg.Self).(*demopb.Hop)
	if self.GetAddress() == "" {
		self.Address = lis.Addr().String()
	}
	cfg.Self = self
	gs := grpc.NewServer()
	demopb.RegisterDemoServer(gs, NewServer(cfg))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		hs.Shutdown()
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(time.Second):
			gs.Stop()
		}
	}()
	err := gs.Serve(lis)
	<-done
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("demo: serving %s: %w", self.GetService(), err)
	}
	return nil
}
