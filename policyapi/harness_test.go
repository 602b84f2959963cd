package policyapi_test

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/internal/meshtest"
	"github.com/meridian-mesh/meridian/policyapi"
	"github.com/meridian-mesh/meridian/policyapi/policyapipb"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/store"
	"github.com/meridian-mesh/meridian/xds/translate"
)

var (
	web      = registry.ServiceKey{Namespace: "shop", Name: "web"}
	payments = registry.ServiceKey{Namespace: "shop", Name: "payments"}
)

// env is one control plane's policy API over real etcd and gRPC on
// loopback, on the lab topology, with an in-memory policy store (several
// envs may share one: that is replication without the federation).
type env struct {
	t        *testing.T
	reg      *registry.Registry
	pol      *policy.Store
	etcd     *store.Store
	srv      *policyapi.Server
	applied  atomic.Pointer[translate.Policies]
	metrics  *prometheus.Registry
	policies policyapipb.PolicyServiceClient
	locality policyapipb.LocalityServiceClient
}

type envOpts struct {
	cluster string
	pol     *policy.Store      // shared with another env
	reg     *registry.Registry // shared with another env
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	ctx := context.Background()
	if o.cluster == "" {
		o.cluster = meshtest.USE1.Name
	}
	e := &env{t: t, reg: o.reg, pol: o.pol, metrics: prometheus.NewRegistry()}
	if e.reg == nil {
		e.reg = meshtest.Lab(t, web, payments)
	}
	if e.pol == nil {
		var err error
		e.pol, err = policy.Open(ctx, policy.Options{Node: o.cluster + "/0", Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.pol.Close)
	}
	var err error
	e.etcd, err = store.Open(ctx, store.Config{DataDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.etcd.Close() })
	e.srv, err = policyapi.New(policyapi.Config{
		Cluster: o.cluster, Registry: e.reg, Policies: e.pol, Etcd: e.etcd,
		Apply:         func(p *translate.Policies) { e.applied.Store(p) },
		DrillLeaseTTL: 2 * time.Second, ProgressInterval: 50 * time.Millisecond, Metrics: e.metrics,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	e.srv.Register(gs)
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = gs.Serve(lis) }()
	go func() {
		defer wg.Done()
		if err := e.srv.Run(runCtx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); gs.Stop(); wg.Wait() })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.policies = policyapipb.NewPolicyServiceClient(conn)
	e.locality = policyapipb.NewLocalityServiceClient(conn)
	return e
}

func (e *env) apply(yaml string, force bool) (*policyapipb.ApplyResponse, error) {
	return e.policies.Apply(context.Background(), &policyapipb.ApplyRequest{
		Sources: []*policyapipb.Source{{Name: "policies.yaml", Data: []byte(yaml)}}, Force: force})
}

func (e *env) mustApply(yaml string) *policyapipb.ApplyResponse {
	e.t.Helper()
	resp, err := e.apply(yaml, false)
	if err != nil {
		e.t.Fatalf("apply: %v", err)
	}
	return resp
}

// violations returns the field violations of an InvalidArgument error,
// "field: description" each, and whether force would override it.
func violations(t *testing.T, err error) (vs []string, forceable bool) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				vs = append(vs, v.GetField()+": "+v.GetDescription())
			}
		case *errdetails.ErrorInfo:
			forceable = d.GetReason() == policyapi.ReasonForceable
		}
	}
	if len(vs) == 0 {
		t.Fatalf("InvalidArgument without field violations: %v", err)
	}
	return vs, forceable
}

func containsAll(t *testing.T, got []string, want ...string) {
	t.Helper()
	all := strings.Join(got, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("violations lack %q:\n%s", w, all)
		}
	}
}

// counter reads a counter of the server's metrics whose one label has the
// given value ("": a counter without labels).
func counter(t *testing.T, e *env, name, label string) float64 {
	t.Helper()
	v, _ := metric(t, e, name, func(ls []*dto.LabelPair) bool {
		return (label == "" && len(ls) == 0) || (len(ls) == 1 && ls[0].GetValue() == label)
	})
	return v
}

// gauge reads a gauge of the server's metrics with exactly these labels
// (name, value pairs); ok is false when there is none.
func gauge(t *testing.T, e *env, name string, labels ...string) (v float64, ok bool) {
	t.Helper()
	return metric(t, e, name, func(ls []*dto.LabelPair) bool {
		if len(ls)*2 != len(labels) {
			return false
		}
		for _, l := range ls {
			if i := slices.Index(labels, l.GetName()); i < 0 || i%2 != 0 || labels[i+1] != l.GetValue() {
				return false
			}
		}
		return true
	})
}

// metric reads the first counter or gauge of name whose labels match.
func metric(t *testing.T, e *env, name string, match func([]*dto.LabelPair) bool) (float64, bool) {
	t.Helper()
	mfs, err := e.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if match(m.GetLabel()) {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue(), true // whichever it is
			}
		}
	}
	return 0, false
}
