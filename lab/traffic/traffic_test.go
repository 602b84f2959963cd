package traffic

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/lab/demopb"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// nopClient is never called: these tests record results directly.
type nopClient struct{ demopb.DemoClient }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func hop(cluster string) *demopb.CallReply {
	return &demopb.CallReply{Hops: []*demopb.Hop{{Service: "frontend", Cluster: cluster, Zone: "z1"}}}
}

// TestRecovery files a minute of results — 100 calls a second, all served
// in us until a cut at 10s, all failing for 1.5s, then served by onprem —
// and checks the shares and the recovery figures.
func TestRecovery(t *testing.T) {
	clk := &fakeClock{now: t0}
	g, err := New(Config{Targets: []Target{{Name: "frontend", Client: nopClient{}}}, Now: clk.Now, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cut := t0.Add(10 * time.Second)
	unavailable := status.Error(codes.Unavailable, "no healthy upstream")
	for i := range 6000 { // 60s at 100/s
		at := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		switch {
		case at.Before(cut):
			g.record("frontend", at, hop("eks-use1"), nil)
		case at.Before(cut.Add(1500 * time.Millisecond)):
			g.record("frontend", at, nil, unavailable)
		default:
			g.record("frontend", at, hop("onprem-dc1"), nil)
		}
	}
	clk.set(t0.Add(time.Minute))

	rec := g.Recovery("frontend", cut, 0.99, time.Second)
	if rec.After != 1500*time.Millisecond || rec.Failed != 150 || rec.Requests != 150 || !rec.Recovered {
		t.Errorf("Recovery = %+v, want 1.5s, 150 of 150 failed, recovered", rec)
	}
	before := g.Recovery("frontend", t0, 0.99, time.Second)
	if before.After != 11500*time.Millisecond {
		t.Errorf("Recovery from the start = %v, want 11.5s (the failures are after it)", before.After)
	}

	r, _ := g.Between(t0, t0.Add(20*time.Second)).Target("frontend")
	if r.Requests != 2000 || r.OK != 1850 || r.Errors["Unavailable"] != 150 {
		t.Errorf("Between = %+v", r)
	}
	sh := Shares(r.Served)
	if len(sh) != 2 || sh[0].Name != "eks-use1" || sh[0].Count != 1000 || sh[1].Name != "onprem-dc1" || sh[1].Count != 850 {
		t.Errorf("Shares = %+v", sh)
	}
	if got, want := r.Summary(), "ok  92.5% (2000)  served by eks-use1 54% onprem-dc1 46%  failed: Unavailable 150"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	firstHop := func(cluster string) func(string) bool {
		return func(p string) bool { return strings.HasPrefix(p, "frontend@"+cluster+"/") }
	}
	if d, ok := g.Moved("frontend", cut, firstHop("onprem-dc1")); !ok || d != 1500*time.Millisecond {
		t.Errorf("Moved to onprem-dc1 = %v, %t; want 1.5s, true", d, ok)
	}
	if _, ok := g.Moved("frontend", t0, firstHop("eks-use1")); ok {
		t.Error("Moved to eks-use1 holds, but the traffic left it")
	}
	w, _ := g.Window(5 * time.Second).Target("frontend")
	if w.SuccessRate() != 1 || w.Served["onprem-dc1"] != w.Requests {
		t.Errorf("Window = %+v", w)
	}
}

// TestHistoryBound keeps only History.
func TestHistoryBound(t *testing.T) {
	clk := &fakeClock{now: t0}
	g, err := New(Config{Targets: []Target{{Name: "a", Client: nopClient{}}}, Now: clk.Now, History: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		g.record("a", t0.Add(time.Duration(i)*100*time.Millisecond), hop("c"), nil)
	}
	if n := len(g.history["a"]); n != 10 {
		t.Errorf("kept %d buckets, want 10", n)
	}
	r, _ := g.Between(t0, t0.Add(time.Hour)).Target("a")
	if r.OK != 10 {
		t.Errorf("kept %d calls, want 10", r.OK)
	}
}

// echo answers from one cluster.
type echo struct{ cluster string }

func (e *echo) Call(context.Context, *demopb.CallRequest, ...grpc.CallOption) (*demopb.CallReply, error) {
	return hop(e.cluster), nil
}

// TestRun drives a target in real time and sees the calls arrive.
func TestRun(t *testing.T) {
	e := &echo{cluster: "c1"}
	g, err := New(Config{Caller: "test", Targets: []Target{{Name: "a", Client: e}}, Rate: 200, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	testutil.Eventually(t, 10*time.Second, func() error {
		r, _ := g.Between(t0, time.Now().Add(time.Hour)).Target("a")
		if r.OK < 50 {
			return status.Errorf(codes.Unknown, "%d calls so far", r.OK)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New without targets: no error")
	}
	if _, err := New(Config{Targets: []Target{{Name: "a", Client: e}, {Name: "a", Client: e}}}); err == nil {
		t.Error("New with a duplicate target: no error")
	}
}
