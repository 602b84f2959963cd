package service

import (
	"context"
	"net"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/trustpb"
)

// RegisterGRPC adds the trust admin service (package trustpb, used by
// meridianctl trust) to a gRPC server.
func (s *Service) RegisterGRPC(g *grpc.Server) { trustpb.RegisterTrustServiceServer(g, admin{s: s}) }

type admin struct {
	trustpb.UnimplementedTrustServiceServer
	s *Service
}

// CreateJoinToken mints a join token, for callers on this host only: a
// token is an identity, and the gRPC port is reachable by the whole
// cluster.
func (a admin) CreateJoinToken(ctx context.Context, req *trustpb.CreateJoinTokenRequest) (*trustpb.CreateJoinTokenResponse, error) {
	if !LocalCaller(ctx) {
		return nil, status.Error(codes.PermissionDenied, "join tokens are minted only for callers on meridiand's own host")
	}
	td := a.s.cfg.TrustDomain
	var id spiffeid.ID
	var err error
	switch x := req.GetIdentity().(type) {
	case *trustpb.CreateJoinTokenRequest_Cluster:
		if id, err = trust.ClusterID(td, x.Cluster); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "cluster: %v", err)
		}
	case *trustpb.CreateJoinTokenRequest_Workload:
		if id, err = trust.WorkloadID(td, x.Workload.GetNamespace(), x.Workload.GetServiceAccount()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "workload: %v", err)
		}
	default:
		return nil, status.Error(codes.InvalidArgument, "identity: give a cluster or a workload")
	}
	tok, exp, err := a.s.JoinTokens.Create(ctx, id, req.GetTtl().AsDuration())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	resp := &trustpb.CreateJoinTokenResponse{Token: tok, SpiffeId: id.String(), Expires: timestamppb.New(exp)}
	if b, ok := a.s.Bundles.Get(td); ok {
		for _, r := range b.X509Authorities() {
			resp.RootKeyIds = append(resp.RootKeyIds, bundle.KeyID(r))
		}
	}
	if addr := a.s.CAAddr(); addr != "" {
		resp.CaUrl = "https://" + addr
	}
	return resp, nil
}

// GetBundle returns every bundle this cluster trusts.
func (a admin) GetBundle(context.Context, *trustpb.GetBundleRequest) (*trustpb.GetBundleResponse, error) {
	resp := &trustpb.GetBundleResponse{}
	for _, b := range a.s.Bundles.Bundles() {
		doc, err := b.Marshal()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "bundle %s: %v", b.TrustDomain(), err)
		}
		seq, _ := b.SequenceNumber()
		resp.Bundles = append(resp.Bundles, &trustpb.Bundle{
			TrustDomain: b.TrustDomain().Name(), SpiffeJson: doc, RootsPem: string(ca.EncodeCertificates(b.X509Authorities()...)),
			Sequence: seq, Local: b.TrustDomain() == a.s.cfg.TrustDomain,
		})
	}
	return resp, nil
}

// LocalCaller reports whether a gRPC call comes from meridiand's own host
// (loopback or a Unix socket): what may take the trust component's
// sensitive steps, since the gRPC port is reachable by the whole cluster.
func LocalCaller(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	return ok && loopback(p.Addr)
}

func loopback(a net.Addr) bool {
	switch x := a.(type) {
	case *net.TCPAddr:
		return x.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}
