package policyapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/policyapi/policyapipb"
	"github.com/meridian-mesh/meridian/registry"
)

// The gRPC edge: requests are parsed here, the Server does the work, and
// its errors are mapped to status codes here only.

type policyService struct {
	policyapipb.UnimplementedPolicyServiceServer
	s *Server
}

func (p *policyService) Apply(ctx context.Context, req *policyapipb.ApplyRequest) (*policyapipb.ApplyResponse, error) {
	srcs := make([]Source, len(req.GetSources()))
	for i, src := range req.GetSources() {
		srcs[i] = Source{Name: src.GetName(), Data: src.GetData()}
	}
	if len(srcs) == 0 {
		return nil, p.s.status(refused("sources", "give at least one source of objects"))
	}
	res, err := p.s.Apply(ctx, srcs, ApplyOptions{DefaultNamespace: req.GetDefaultNamespace(), Force: req.GetForce(), DryRun: req.GetDryRun()})
	if err != nil {
		return nil, p.s.status(err)
	}
	return &policyapipb.ApplyResponse{Results: results(res), Warnings: findings(res.Warnings)}, nil
}

func (p *policyService) Delete(ctx context.Context, req *policyapipb.DeleteRequest) (*policyapipb.DeleteResponse, error) {
	if len(req.GetRefs()) == 0 {
		return nil, p.s.status(refused("refs", "name at least one object"))
	}
	var keys []policy.Key
	var vs []Violation
	for i, r := range req.GetRefs() {
		k, err := keyOfRef(r, fmt.Sprintf("refs[%d]", i))
		if err != nil {
			vs = append(vs, err.(*RefusedError).Violations...)
			continue
		}
		keys = append(keys, k)
	}
	if len(vs) > 0 {
		return nil, p.s.status(&RefusedError{Violations: vs})
	}
	res, err := p.s.Delete(ctx, keys, ApplyOptions{Force: req.GetForce(), DryRun: req.GetDryRun()})
	if err != nil {
		return nil, p.s.status(err)
	}
	return &policyapipb.DeleteResponse{Results: results(res), Warnings: findings(res.Warnings)}, nil
}

func (p *policyService) Get(_ context.Context, req *policyapipb.GetRequest) (*policyapipb.Object, error) {
	k, err := keyOfRef(req.GetRef(), "ref")
	if err != nil {
		return nil, p.s.status(err)
	}
	st, err := p.s.Get(k)
	if err != nil {
		return nil, p.s.status(err)
	}
	return objectProto(st)
}

func (p *policyService) List(_ context.Context, req *policyapipb.ListRequest) (*policyapipb.ListResponse, error) {
	kind := ""
	if req.GetKind() != "" {
		k, ok := v1alpha1.ResolveKind(req.GetKind())
		if !ok {
			return nil, p.s.status(unknownKind("kind", req.GetKind()))
		}
		kind = k.Name
	}
	resp := &policyapipb.ListResponse{}
	for _, st := range p.s.List(kind, req.GetNamespace()) {
		o, err := objectProto(st)
		if err != nil {
			return nil, p.s.status(err)
		}
		resp.Objects = append(resp.Objects, o)
	}
	return resp, nil
}

func keyOfRef(r *policyapipb.ObjectRef, path string) (policy.Key, error) {
	k, ok := v1alpha1.ResolveKind(r.GetKind())
	if !ok {
		return policy.Key{}, unknownKind(path+".kind", r.GetKind())
	}
	key := policy.Key{Kind: k.Name, Namespace: r.GetNamespace(), Name: r.GetName()}
	if key.Namespace == "" {
		key.Namespace = "default"
	}
	var vs []Violation
	for _, fe := range key.Validate(nil) {
		vs = append(vs, Violation{Field: path + "." + fe.Field, Description: fe.ErrorBody()})
	}
	if len(vs) > 0 {
		return key, &RefusedError{Violations: vs}
	}
	return key, nil
}

func unknownKind(path, kind string) error {
	names := make([]string, 0, 6)
	for _, k := range v1alpha1.Kinds() {
		names = append(names, k.Name+" ("+strings.Join(append([]string{k.Plural}, k.ShortNames...), ", ")+")")
	}
	if kind == "" {
		return refused(path, "Required value: one of "+strings.Join(names, "; "))
	}
	return refused(path, fmt.Sprintf("unknown kind %q: want one of %s", kind, strings.Join(names, "; ")))
}

func refused(field, desc string) error {
	return &RefusedError{Violations: []Violation{{Field: field, Description: desc}}}
}

func objectProto(st Stored) (*policyapipb.Object, error) {
	m, err := manifest(st.Object)
	if err != nil {
		return nil, fmt.Errorf("policyapi: %s: %w", v1alpha1.Describe(st.Object), err)
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		return nil, fmt.Errorf("policyapi: %s: %w", v1alpha1.Describe(st.Object), err)
	}
	return &policyapipb.Object{Manifest: s, Origin: st.Resource.Origin, Updated: timestamppb.New(st.Resource.Stamp.Wall()), Source: st.Source}, nil
}

func results(res WriteResult) []*policyapipb.Result {
	out := make([]*policyapipb.Result, len(res.Results))
	for i, r := range res.Results {
		out[i] = &policyapipb.Result{Ref: &policyapipb.ObjectRef{Kind: r.Key.Kind, Namespace: r.Key.Namespace, Name: r.Key.Name},
			Outcome: r.Outcome, ResourceVersion: r.ResourceVersion}
	}
	return out
}

func findings(vs []Violation) []*policyapipb.Finding {
	out := make([]*policyapipb.Finding, len(vs))
	for i, v := range vs {
		obj, fieldPath, _ := strings.Cut(v.Field, ": ")
		out[i] = &policyapipb.Finding{Object: obj, Field: fieldPath, Message: v.Description}
	}
	return out
}

// status maps the Server's errors to gRPC codes.
func (s *Server) status(err error) error {
	var ref *RefusedError
	var nf *NotFoundError
	switch {
	case errors.As(err, &ref):
		st := status.New(codes.InvalidArgument, err.Error())
		br := &errdetails.BadRequest{}
		for _, v := range ref.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		details := []protoadapt.MessageV1{br}
		if ref.Forceable {
			details = append(details, &errdetails.ErrorInfo{Reason: ReasonForceable, Domain: v1alpha1.Group})
		}
		if withDetails, derr := st.WithDetails(details...); derr == nil {
			st = withDetails
		}
		return st.Err()
	case errors.As(err, &nf):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	default:
		s.log.Error("policy API request failed", "err", err)
		return status.Error(codes.Unavailable, err.Error())
	}
}

// ReasonForceable is the google.rpc.ErrorInfo reason of refusals that
// force would override.
const ReasonForceable = "FORCEABLE"

type localityService struct {
	policyapipb.UnimplementedLocalityServiceServer
	s *Server
}

func (l *localityService) Explain(_ context.Context, req *policyapipb.ExplainRequest) (*policyapipb.ExplainResponse, error) {
	ex, err := l.s.Explain(req.GetService(), req.GetFrom())
	if err != nil {
		return nil, l.s.status(err)
	}
	st, err := toStruct(ex)
	if err != nil {
		return nil, l.s.status(err)
	}
	return &policyapipb.ExplainResponse{Explanation: st}, nil
}

func (l *localityService) PlanDrill(_ context.Context, req *policyapipb.PlanDrillRequest) (*policyapipb.PlanDrillResponse, error) {
	rep, err := l.s.PlanDrill(req.GetTarget().GetKind(), req.GetTarget().GetName())
	if err != nil {
		return nil, l.s.status(err)
	}
	st, err := toStruct(rep)
	if err != nil {
		return nil, l.s.status(err)
	}
	return &policyapipb.PlanDrillResponse{Report: st}, nil
}

func (l *localityService) ListDrills(context.Context, *policyapipb.ListDrillsRequest) (*policyapipb.ListDrillsResponse, error) {
	now := time.Now()
	resp := &policyapipb.ListDrillsResponse{}
	for _, d := range l.s.drillsIn(l.s.cfg.Policies.Snapshot()) {
		if d.active(now) {
			resp.Drills = append(resp.Drills, drillProto(d))
		}
	}
	return resp, nil
}

func drillProto(d drill) *policyapipb.Drill {
	return &policyapipb.Drill{Id: d.ID, Target: &policyapipb.Target{Kind: string(d.Target.Kind), Name: d.Target.Name},
		Cluster: d.Cluster, Started: timestamppb.New(d.Started), Ends: timestamppb.New(d.Ends)}
}

// restoreWait bounds how long a drill that ended waits to report the
// target restored.
const restoreWait = 5 * time.Second

func (l *localityService) RunDrill(st policyapipb.LocalityService_RunDrillServer) error {
	s := l.s
	ctx := st.Context()
	first, err := st.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return s.status(refused("start", "the first message must start the drill"))
	}
	plan, err := s.PlanDrill(start.GetTarget().GetKind(), start.GetTarget().GetName())
	if err != nil {
		return s.status(err)
	}
	d, err := s.startDrill(ctx, start.GetTarget().GetKind(), start.GetTarget().GetName(), start.GetDuration().AsDuration())
	if err != nil {
		return s.status(err)
	}
	planStruct, err := toStruct(plan)
	if err != nil {
		d.end(context.WithoutCancel(ctx))
		return s.status(err)
	}
	if err := st.Send(&policyapipb.RunDrillEvent{Event: &policyapipb.RunDrillEvent_Started{Started: &policyapipb.DrillStarted{
		Drill: drillProto(d.rec), LeaseTtl: durationpb.New(s.cfg.DrillLeaseTTL), Plan: planStruct,
	}}}); err != nil {
		return err // the client is gone: the lease runs out
	}
	services := make([]registry.ServiceKey, len(plan.Services))
	for i, si := range plan.Services {
		services[i] = si.Service
	}
	msgs := make(chan *policyapipb.RunDrillRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	ticker := time.NewTicker(s.cfg.ProgressInterval)
	defer ticker.Stop()
	timeUp := time.NewTimer(time.Until(d.rec.Ends))
	defer timeUp.Stop()
	finish := func(reason string, restore bool) error {
		if restore {
			d.end(context.WithoutCancel(ctx))
			s.awaitRestored(ctx, d.rec.Target)
		}
		if err := st.Send(progressEvent(s.progress(d.rec.Target, services))); err != nil {
			return nil
		}
		_ = st.Send(&policyapipb.RunDrillEvent{Event: &policyapipb.RunDrillEvent_Ended{Ended: &policyapipb.DrillEnded{Reason: reason}}})
		return nil
	}
	if err := st.Send(progressEvent(s.progress(d.rec.Target, services))); err != nil {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			// The client is gone without stopping the drill: stop renewing
			// the lease, which runs out within its TTL and ends the drill.
			s.log.Info("drill client gone; the lease runs out", "drill", d.rec.ID, "ttl", s.cfg.DrillLeaseTTL)
			return nil
		case err := <-recvErr:
			if err == io.EOF {
				return finish("stopped", true)
			}
			s.log.Info("drill client gone; the lease runs out", "drill", d.rec.ID, "ttl", s.cfg.DrillLeaseTTL)
			return nil
		case m := <-msgs:
			switch {
			case m.GetStop() != nil:
				return finish("stopped", true)
			case m.GetHeartbeat() != nil:
				if err := d.keepAlive(ctx); err != nil {
					s.log.Warn("live drill ended", "drill", d.rec.ID, "err", err)
					s.deleteDrill(context.WithoutCancel(ctx), d.rec.ID)
					s.awaitRestored(ctx, d.rec.Target)
					return finish("lease lost", false)
				}
			default:
				return s.status(refused("msg", "after start, send heartbeat or stop"))
			}
		case <-ticker.C:
			if err := st.Send(progressEvent(s.progress(d.rec.Target, services))); err != nil {
				return nil
			}
		case <-timeUp.C:
			return finish("duration reached", true)
		}
	}
}

// awaitRestored waits, briefly, until the engine in force no longer
// drains the target (or another drill still does).
func (s *Server) awaitRestored(ctx context.Context, t locality.Target) {
	timeout := time.NewTimer(restoreWait)
	defer timeout.Stop()
	for {
		st := s.state.Load()
		if st == nil || !slices.Contains(st.drains, t) {
			return
		}
		select {
		case <-st.replaced:
		case <-timeout.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// progress is where each client locality's traffic for the services a
// drill touches goes now, with the engine in force.
func (s *Server) progress(t locality.Target, services []registry.ServiceKey) *policyapipb.DrillProgress {
	v := s.cfg.Registry.View()
	e := s.Engine()
	p := &policyapipb.DrillProgress{Time: timestamppb.Now(), Applied: slices.Contains(e.Config().Drains, t)}
	clients := locality.ClientsOf(v)
	for _, k := range services {
		for _, c := range clients {
			a := e.Assign(v, k, c)
			cs := &policyapipb.ClientShares{Service: k.String(), Client: c.Locality.String(), Serving: int32(a.Serving())}
			for _, sh := range a.Distribution(locality.LoadOptions{}) {
				cs.Shares = append(cs.Shares, &policyapipb.Share{Priority: int32(sh.Priority), Locality: sh.Locality.String(), Percent: sh.Percent, Failing: sh.Failing})
			}
			p.Shares = append(p.Shares, cs)
		}
	}
	return p
}

func progressEvent(p *policyapipb.DrillProgress) *policyapipb.RunDrillEvent {
	return &policyapipb.RunDrillEvent{Event: &policyapipb.RunDrillEvent_Progress{Progress: p}}
}

// toStruct carries a JSON-encodable value as a google.protobuf.Struct.
func toStruct(v any) (*structpb.Struct, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("policyapi: encode: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("policyapi: encode: %w", err)
	}
	st, err := structpb.NewStruct(m)
	if err != nil {
		return nil, fmt.Errorf("policyapi: encode: %w", err)
	}
	return st, nil
}
