package workload_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridian-mesh/meridian/discovery/workload"
	"github.com/meridian-mesh/meridian/discovery/workload/workloadpb"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
)

// notLeader checks that err is the answer of a replica that does not
// serve: Unavailable, with an ErrorInfo naming the leader.
func notLeader(t *testing.T, err error, leader string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != codes.Unavailable {
		t.Fatalf("want Unavailable, got %v", err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == workload.ReasonNotLeader &&
			info.GetDomain() == workload.ErrorDomain && info.GetMetadata()["leader"] == leader && info.GetMetadata()["cluster"] == cluster {
			return
		}
	}
	t.Fatalf("no ErrorInfo naming leader %q in %v", leader, st.Details())
}

// The server serves only while Run runs — one term of leading the
// cluster — and otherwise sends clients to the leader. A new term loads
// the registrations from etcd, takes over the service definitions a
// previous term put into the segment, and removes workload endpoints left
// there without a registration.
func TestServesOnlyDuringATerm(t *testing.T) {
	const leader = "10.1.2.3:15010"
	clk := newClock()
	h := startIdle(t, t.TempDir(), clk, leader)
	ctx := context.Background()

	_, err := h.client.Register(ctx, web("10.0.0.1:8080"))
	notLeader(t, err, leader)
	_, err = h.client.List(ctx, &workloadpb.ListRequest{})
	notLeader(t, err, leader)
	_, err = h.client.Heartbeat(ctx, &workloadpb.HeartbeatRequest{Id: "web-000000000000"})
	notLeader(t, err, leader)
	if keys := h.storedKeys(); len(keys) != 0 || h.segment().Version() != 0 {
		t.Fatalf("a replica that does not serve wrote: %v, segment version %d", keys, h.segment().Version())
	}

	end := h.term()
	testutil.Eventually(t, 10*time.Second, func() error {
		_, err := h.client.List(ctx, &workloadpb.ListRequest{})
		return err
	})
	a := h.register(web("10.0.0.1:8080"))
	b := h.register(web("10.0.0.2:8080"))
	c := h.register(web("10.0.0.3:8080"))
	end()
	_, err = h.client.Heartbeat(ctx, &workloadpb.HeartbeatRequest{Id: a.Workload.Id})
	notLeader(t, err, leader)
	if h.segment().EndpointCount() != 3 {
		t.Fatal("the end of a term removed endpoints: the next leader serves them")
	}

	// A leader that died between removing a registration from etcd and
	// from the segment left its endpoint behind.
	if _, err := h.store.Client.Delete(ctx, "/meridian/workloads/shop/web/"+c.Workload.Id); err != nil {
		t.Fatal(err)
	}

	h.term()
	var list *workloadpb.ListResponse
	testutil.Eventually(t, 10*time.Second, func() error {
		list, err = h.client.List(ctx, &workloadpb.ListRequest{})
		return err
	})
	if len(list.Workloads) != 2 {
		t.Fatalf("the second term serves %d workloads, want 2", len(list.Workloads))
	}
	if _, ok := h.endpoint(c.Workload.Id, "http"); ok {
		t.Fatal("an endpoint without a registration outlived the change of leader")
	}
	// The definition the first term put is this server's: deregistering
	// every workload removes it.
	for _, id := range []string{a.Workload.Id, b.Workload.Id} {
		if _, err := h.client.Deregister(ctx, &workloadpb.DeregisterRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := h.segment().Service(registry.ServiceKey{Namespace: "shop", Name: "web"}); ok {
		t.Fatal("the service definition of the previous term was left behind")
	}
}
