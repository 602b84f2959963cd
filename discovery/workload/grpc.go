package workload

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/discovery/workload/workloadpb"
)

// A replica that does not serve the Workload API answers Unavailable with
// a google.rpc.ErrorInfo of this reason and domain; its metadata names the
// cluster and, when known, the "leader" address that serves it.
const (
	ReasonNotLeader = "NOT_LEADER"
	ErrorDomain     = "meridian.io"
)

// Register adds the Workload API to a gRPC server (meridiand's shared one).
func (s *Server) Register(g grpc.ServiceRegistrar) {
	workloadpb.RegisterWorkloadServiceServer(g, &grpcService{s: s})
}

// grpcService is the gRPC edge: it parses requests, calls the Server, and
// maps its errors to status codes.
type grpcService struct {
	workloadpb.UnimplementedWorkloadServiceServer
	s *Server
}

func (g *grpcService) Register(ctx context.Context, req *workloadpb.RegisterRequest) (*workloadpb.RegisterResponse, error) {
	rec, errs := parseRequest(req, g.s.cfg.DefaultTTL)
	if len(errs) > 0 {
		return nil, g.reject(ctx, &invalidError{errs})
	}
	g.s.awaitServing(ctx)
	e, created, err := g.s.register(ctx, rec)
	if err != nil {
		var inv *invalidError
		if errors.As(err, &inv) {
			return nil, g.reject(ctx, err)
		}
		return nil, g.status(err)
	}
	outcome := "updated"
	if created {
		outcome = "created"
		g.s.log.Info("workload registered", "id", rec.ID, "service", rec.Service.String(), "address", req.GetAddress())
	}
	g.s.m.registrations.WithLabelValues(outcome).Inc()
	return &workloadpb.RegisterResponse{Workload: g.toProto(&e), Created: created}, nil
}

// reject logs and counts an invalid registration.
func (g *grpcService) reject(ctx context.Context, err error) error {
	g.s.m.registrations.WithLabelValues("rejected").Inc()
	from := "unknown"
	if p, ok := peer.FromContext(ctx); ok {
		from = p.Addr.String()
	}
	g.s.log.Info("registration rejected", "peer", from, "err", err)
	return g.status(err)
}

func (g *grpcService) Deregister(ctx context.Context, req *workloadpb.DeregisterRequest) (*workloadpb.DeregisterResponse, error) {
	if err := requireID(req.GetId()); err != nil {
		return nil, g.status(err)
	}
	g.s.awaitServing(ctx)
	if err := g.s.deregister(ctx, req.GetId()); err != nil {
		return nil, g.status(err)
	}
	g.s.m.deregistrations.Inc()
	g.s.log.Info("workload deregistered", "id", req.GetId())
	return &workloadpb.DeregisterResponse{}, nil
}

func (g *grpcService) Heartbeat(ctx context.Context, req *workloadpb.HeartbeatRequest) (*workloadpb.HeartbeatResponse, error) {
	if err := requireID(req.GetId()); err != nil {
		return nil, g.status(err)
	}
	g.s.awaitServing(ctx)
	e, err := g.s.heartbeat(req.GetId())
	if errors.Is(err, errNotFound) {
		g.s.m.heartbeats.WithLabelValues("unknown").Inc()
	}
	if err != nil {
		return nil, g.status(err)
	}
	g.s.m.heartbeats.WithLabelValues("ok").Inc()
	return &workloadpb.HeartbeatResponse{Ttl: durationpb.New(e.rec.TTL), ExpiresAt: timestamppb.New(e.expiresAt())}, nil
}

func (g *grpcService) List(ctx context.Context, req *workloadpb.ListRequest) (*workloadpb.ListResponse, error) {
	g.s.awaitServing(ctx)
	entries, err := g.s.list(req.GetNamespace(), req.GetService())
	if err != nil {
		return nil, g.status(err)
	}
	out := &workloadpb.ListResponse{Workloads: make([]*workloadpb.Workload, len(entries))}
	for i := range entries {
		out.Workloads[i] = g.toProto(&entries[i])
	}
	return out, nil
}

func requireID(id string) error {
	if id == "" {
		return &invalidError{field.ErrorList{field.Required(field.NewPath("id"), "the ID Register returned")}}
	}
	return nil
}

func (g *grpcService) toProto(e *entry) *workloadpb.Workload {
	r := &e.rec
	h := workloadpb.Health_HEALTHY
	if e.unhealthy {
		h = workloadpb.Health_UNHEALTHY
	}
	return &workloadpb.Workload{
		Id:             r.ID,
		Service:        r.Service.Name,
		Namespace:      r.Service.Namespace,
		Address:        r.addrPort().String(),
		PortName:       r.PortName,
		Protocol:       string(r.Protocol),
		Locality:       r.Locality.String(),
		Labels:         r.Labels,
		ServiceAccount: r.ServiceAccount,
		Ttl:            durationpb.New(r.TTL),
		Health:         h,
		RegisteredAt:   timestamppb.New(r.RegisteredAt),
		LastHeartbeat:  timestamppb.New(e.lastBeat),
		ExpiresAt:      timestamppb.New(e.expiresAt()),
		RemovedAt:      timestamppb.New(e.expiresAt().Add(g.s.cfg.Grace)),
	}
}

// status maps the server's errors to gRPC status codes. Invalid requests
// carry a google.rpc.BadRequest naming each field.
func (g *grpcService) status(err error) error {
	var inv *invalidError
	var ns *notServingError
	switch {
	case errors.As(err, &ns):
		st := status.New(codes.Unavailable, err.Error())
		info := &errdetails.ErrorInfo{Reason: ReasonNotLeader, Domain: ErrorDomain, Metadata: map[string]string{"cluster": ns.cluster}}
		if ns.leader != "" {
			info.Metadata["leader"] = ns.leader
		}
		if withDetails, derr := st.WithDetails(info); derr == nil {
			st = withDetails
		}
		return st.Err()
	case errors.As(err, &inv):
		st := status.New(codes.InvalidArgument, err.Error())
		br := &errdetails.BadRequest{}
		for _, fe := range inv.errs {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: fe.Field, Description: fe.ErrorBody()})
		}
		if withDetails, derr := st.WithDetails(br); derr == nil {
			st = withDetails
		}
		return st.Err()
	case errors.Is(err, errNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	default:
		g.s.log.Error("workload API request failed", "err", err)
		return status.Error(codes.Unavailable, err.Error())
	}
}
