// Package xdstest holds what tests of Meridian's xDS need around it: real
// gRPC backends that answer with their own name, and stock grpc-go xDS
// clients (google.golang.org/grpc/xds) bootstrapped at a control plane.
// Tests only.
package xdstest

import (
	"context"
	"encoding/json"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
)

// Backend is a gRPC server of grpc.testing.TestService whose UnaryCall
// answers with its name, on loopback.
type Backend struct {
	Name string
	// Addr is its "127.0.0.1:PORT".
	Addr  string
	Port  int
	calls atomic.Int64
	gs    *grpc.Server
}

type echo struct {
	testgrpc.UnimplementedTestServiceServer
	b *Backend
}

func (e echo) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	e.b.calls.Add(1)
	return &testgrpc.SimpleResponse{ServerId: e.b.Name}, nil
}

// StartBackend starts a backend; the test's end stops it.
func StartBackend(t testing.TB, name string) *Backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &Backend{Name: name, Addr: lis.Addr().String(), Port: lis.Addr().(*net.TCPAddr).Port, gs: grpc.NewServer()}
	testgrpc.RegisterTestServiceServer(b.gs, echo{b: b})
	go func() { _ = b.gs.Serve(lis) }()
	t.Cleanup(b.Stop)
	return b
}

// Calls counts the RPCs the backend answered, from any client.
func (b *Backend) Calls() int64 { return b.calls.Load() }

// Stop closes the backend's listener and connections: to clients it is
// down. It is idempotent.
func (b *Backend) Stop() { b.gs.Stop() }

// Client returns a stock grpc-go xDS client of target ("xds:///NAME")
// whose bootstrap points at the xDS server at addr (insecure) with the
// given node (id, locality, metadata). The test's end closes it.
func Client(t testing.TB, addr, target string, node map[string]any) testgrpc.TestServiceClient {
	t.Helper()
	bootstrap, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      addr,
			"channel_creds":   []any{map[string]any{"type": "insecure"}},
			"server_features": []any{"xds_v3"},
		}},
		"node": node,
	})
	if err != nil {
		t.Fatal(err)
	}
	resolver, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(resolver))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return testgrpc.NewTestServiceClient(conn)
}

// Answers counts n RPCs by the backend that answered; failed RPCs count
// under their status code's name ("Unavailable"). With waitForReady the
// RPCs wait (up to 10s each) for the channel to be ready instead of
// failing fast.
func Answers(c testgrpc.TestServiceClient, n int, waitForReady bool) map[string]int {
	got := map[string]int{}
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(waitForReady))
		cancel()
		if err != nil {
			got[status.Code(err).String()]++
			continue
		}
		got[r.GetServerId()]++
	}
	return got
}
