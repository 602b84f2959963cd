package workloadapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/internal/metrics"
	"github.com/meridian-mesh/meridian/trust/svid"
)

// SecurityHeader is the metadata every Workload API call must carry (SPIFFE
// Workload Endpoint spec): it keeps a browser or an SSRF-prone proxy that
// can be made to reach the socket from calling it.
const SecurityHeader = "workload.spiffe.io"

// Config configures New.
type Config struct {
	// SocketPath of the Unix socket to listen on. Required. A stale socket
	// file there is replaced.
	SocketPath string
	// SVIDs mints and rotates the SVIDs handed out. Required.
	SVIDs *svid.Manager
	// Bundles is what workloads verify peers with. Required.
	Bundles *bundle.Source
	// TrustDomain is the mesh's; its bundle goes with each SVID, the others
	// are federated bundles. Required.
	TrustDomain spiffeid.TrustDomain
	// Registry says which local process gets which identity. Required.
	Registry *Registry
	Logger   *slog.Logger
	// Registerer receives meridian_trust_workloadapi_calls_total{method,code}.
	Registerer prometheus.Registerer
}

// Server is the SPIFFE Workload API on a Unix socket, for processes on the
// same host. Callers are attested by their peer credentials against the
// Registry. X.509-SVIDs and X.509 bundles are served and streamed as they
// rotate; the JWT and WIT profiles answer Unimplemented.
type Server struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	cfg   Config
	log   *slog.Logger
	calls *prometheus.CounterVec
}

// New checks the configuration.
func New(cfg Config) (*Server, error) {
	if cfg.SocketPath == "" || cfg.SVIDs == nil || cfg.Bundles == nil || cfg.Registry == nil || cfg.TrustDomain.IsZero() {
		return nil, errors.New("workloadapi: socket path, SVID manager, bundles, trust domain and registry are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{
		cfg: cfg, log: log.With("component", "trust.workloadapi"),
		calls: metrics.CounterVec(cfg.Registerer, prometheus.CounterOpts{
			Name: "meridian_trust_workloadapi_calls_total", Help: "Workload API calls by method and final gRPC code.",
		}, "method", "code"),
	}, nil
}

// Run listens on the socket and serves until ctx ends, then closes every
// stream and removes the socket.
func (s *Server) Run(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(s.cfg.SocketPath), 0o755); err != nil {
		return fmt.Errorf("workloadapi: %w", err)
	}
	if err := os.Remove(s.cfg.SocketPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("workloadapi: stale socket: %w", err)
	}
	l, err := net.Listen("unix", s.cfg.SocketPath)
	if err != nil {
		return fmt.Errorf("workloadapi: %w", err)
	}
	// Anyone on the host may connect; what they get is decided by
	// attestation, as with SPIRE's agent socket.
	if err := os.Chmod(s.cfg.SocketPath, 0o777); err != nil {
		l.Close()
		return fmt.Errorf("workloadapi: %w", err)
	}
	g := grpc.NewServer(grpc.Creds(peerCreds{}), grpc.StreamInterceptor(s.count), grpc.UnaryInterceptor(s.countUnary))
	workload.RegisterSpiffeWorkloadAPIServer(g, s)
	var wg sync.WaitGroup
	wg.Go(func() {
		<-ctx.Done()
		g.Stop() // streams are long-lived: a graceful stop would wait for them forever
	})
	s.log.Info("Workload API listening", "socket", s.cfg.SocketPath)
	err = g.Serve(l)
	wg.Wait()
	os.Remove(s.cfg.SocketPath)
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("workloadapi: serve: %w", err)
}

func (s *Server) count(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	err := h(srv, ss)
	s.calls.WithLabelValues(filepath.Base(info.FullMethod), status.Code(err).String()).Inc()
	return err
}

func (s *Server) countUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	s.calls.WithLabelValues(filepath.Base(info.FullMethod), status.Code(err).String()).Inc()
	return resp, err
}

// attest checks the security header and returns the caller's identities.
func (s *Server) attest(ctx context.Context) (Caller, []spiffeid.ID, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(SecurityHeader); len(v) != 1 || v[0] != "true" {
		return Caller{}, nil, status.Error(codes.InvalidArgument, "security header missing from request")
	}
	p, ok := peer.FromContext(ctx)
	info, ok2 := p.AuthInfo.(authInfo)
	if !ok || !ok2 {
		return Caller{}, nil, status.Error(codes.Internal, "no peer credentials")
	}
	return info.caller, s.cfg.Registry.Attest(info.caller), nil
}

// FetchX509SVID streams the caller's SVIDs and bundles, again after every
// rotation or bundle change.
func (s *Server) FetchX509SVID(_ *workload.X509SVIDRequest, stream workload.SpiffeWorkloadAPI_FetchX509SVIDServer) error {
	ctx := stream.Context()
	caller, ids, err := s.attest(ctx)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		s.log.Warn("Workload API caller matches no registration", "pid", caller.PID, "uid", caller.UID, "gid", caller.GID)
		return status.Error(codes.PermissionDenied, "no identity issued")
	}
	s.log.Info("Workload API caller attested", "pid", caller.PID, "uid", caller.UID, "ids", ids)
	return s.stream(ctx, func() (proto.Message, error) { return s.x509SVIDResponse(ids) }, func(m proto.Message) error {
		return stream.Send(m.(*workload.X509SVIDResponse))
	})
}

// FetchX509Bundles streams the trust bundles to any attested caller.
func (s *Server) FetchX509Bundles(_ *workload.X509BundlesRequest, stream workload.SpiffeWorkloadAPI_FetchX509BundlesServer) error {
	ctx := stream.Context()
	_, ids, err := s.attest(ctx)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return status.Error(codes.PermissionDenied, "no identity issued")
	}
	return s.stream(ctx, func() (proto.Message, error) {
		resp := &workload.X509BundlesResponse{Bundles: map[string][]byte{}}
		for _, b := range s.cfg.Bundles.Bundles() {
			resp.Bundles[b.TrustDomain().IDString()] = der(b.X509Authorities())
		}
		return resp, nil
	}, func(m proto.Message) error { return stream.Send(m.(*workload.X509BundlesResponse)) })
}

// stream sends build's answer, then a new one whenever SVIDs or bundles
// changed and the answer differs, until the client goes away.
func (s *Server) stream(ctx context.Context, build func() (proto.Message, error), send func(proto.Message) error) error {
	svids, cancelS := s.cfg.SVIDs.Subscribe()
	defer cancelS()
	bundles, cancelB := s.cfg.Bundles.Subscribe()
	defer cancelB()
	var last proto.Message
	for {
		resp, err := build()
		if err != nil {
			s.log.Error("Workload API answer", "error", err)
			return status.Error(codes.Unavailable, err.Error())
		}
		if last == nil || !proto.Equal(resp, last) {
			if err := send(resp); err != nil {
				return err
			}
			last = resp
		}
		select {
		case <-ctx.Done():
			return nil
		case <-svids:
		case <-bundles:
		}
	}
}

func (s *Server) x509SVIDResponse(ids []spiffeid.ID) (*workload.X509SVIDResponse, error) {
	own, ok := s.cfg.Bundles.Get(s.cfg.TrustDomain)
	if !ok {
		return nil, fmt.Errorf("workloadapi: no bundle for %s", s.cfg.TrustDomain)
	}
	resp := &workload.X509SVIDResponse{}
	for _, id := range ids {
		sv, err := s.cfg.SVIDs.Get(id)
		if err != nil {
			return nil, err
		}
		m, err := x509svidMessage(sv, own)
		if err != nil {
			return nil, err
		}
		resp.Svids = append(resp.Svids, m)
	}
	for _, b := range s.cfg.Bundles.Bundles() {
		if b.TrustDomain() != s.cfg.TrustDomain {
			if resp.FederatedBundles == nil {
				resp.FederatedBundles = map[string][]byte{}
			}
			resp.FederatedBundles[b.TrustDomain().IDString()] = der(b.X509Authorities())
		}
	}
	return resp, nil
}

func x509svidMessage(sv *x509svid.SVID, own *spiffebundle.Bundle) (*workload.X509SVID, error) {
	key, err := x509.MarshalPKCS8PrivateKey(sv.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("workloadapi: %s: %w", sv.ID, err)
	}
	return &workload.X509SVID{
		SpiffeId:    sv.ID.String(),
		X509Svid:    der(sv.Certificates),
		X509SvidKey: key,
		Bundle:      der(own.X509Authorities()),
	}, nil
}

// der concatenates certificates' DER, as the Workload API carries chains
// and bundles.
func der(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return slices.Clip(out)
}
