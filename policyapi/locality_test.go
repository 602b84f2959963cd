package policyapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/internal/meshtest"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/policyapi"
	"github.com/meridian-mesh/meridian/policyapi/policyapipb"
)

// inForce waits until the engine in force has n policies.
func (e *env) inForce(n int) {
	e.t.Helper()
	testutil.Eventually(e.t, 5*time.Second, func() error {
		if got := len(e.srv.Engine().Config().Policies); got != n {
			return fmt.Errorf("%d policies in force, want %d", got, n)
		}
		return nil
	})
}

func (e *env) explain(service, from string) (policyapi.Explanation, error) {
	resp, err := e.locality.Explain(context.Background(), &policyapipb.ExplainRequest{Service: service, From: from})
	if err != nil {
		return policyapi.Explanation{}, err
	}
	var ex policyapi.Explanation
	b, _ := resp.GetExplanation().MarshalJSON()
	if err := json.Unmarshal(b, &ex); err != nil {
		e.t.Fatalf("decoding the explanation: %v\n%s", err, b)
	}
	return ex, nil
}

func TestExplain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.mustApply(webFailover + "---\n" + paymentsInEU)
	e.inForce(2)

	ex, err := e.explain("web.shop", "us-east-1/use1-az1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range ex.Levels {
		got = append(got, l.Localities[0].Locality.Region+" "+l.Reason.Field)
	}
	if strings.Join(got, ", ") != "us-east-1 , us-east-1 , eu-west-1 spec.failover[0].to[0], onprem-east spec.failover[0].to[1]" ||
		ex.Failover != "FailoverPolicy shop/web" || ex.Client.Cluster != "eks-use1" {
		t.Fatalf("levels %q, failover %q, client %+v", got, ex.Failover, ex.Client)
	}
	if len(ex.Shares) != 1 || ex.Shares[0].Percent != 100 || ex.Shares[0].Locality.Zone != "use1-az1" || ex.Load.Healthy[0] != 100 {
		t.Fatalf("shares %+v, load %+v", ex.Shares, ex.Load)
	}

	// From a cluster: the cluster's region, its labels.
	ex, err = e.explain("payments.shop", "eks-use1")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ex.Levels {
		for _, le := range l.Localities {
			if le.Locality.Region != "eu-west-1" {
				t.Fatalf("payments offered %s to a US client", le.Locality)
			}
		}
	}
	if len(ex.Blocked) != 8 || ex.Blocked[0].Rule.Policy != "ResidencyRule shop/payments-eu" || ex.Client.Labels["jurisdiction"] != "us" {
		t.Fatalf("blocked %d (%+v), client %+v", len(ex.Blocked), ex.Blocked, ex.Client)
	}
	// The same, as metrics: 8 endpoints kept out of the EU-only service,
	// its 4 EU endpoints serving; web has no residency rule.
	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"meridian_residency_blocked_endpoints", []string{"service", "payments.shop", "rule", "shop/payments-eu", "mode", "enforce"}, 8},
		{"meridian_residency_serving_endpoints", []string{"service", "payments.shop"}, 4},
	} {
		if got, ok := gauge(t, e, m.name, m.labels...); !ok || got != m.want {
			t.Errorf("%s%v = %v (present %v), want %v", m.name, m.labels, got, ok, m.want)
		}
	}
	if _, ok := gauge(t, e, "meridian_residency_serving_endpoints", "service", "web.shop"); ok {
		t.Error("web.shop, bound by no residency rule, has a residency metric")
	}

	for _, tc := range []struct {
		service, from string
		code          codes.Code
		want          string
	}{
		{"web", "eks-use1", codes.InvalidArgument, `service: "web": want name.namespace`},
		{"nosuch.shop", "eks-use1", codes.NotFound, "service nosuch.shop not found"},
		{"web.shop", "", codes.InvalidArgument, "from: \"\": give a cluster or a locality"},
		{"web.shop", "mars", codes.NotFound, `cluster or region "mars" (clusters: eks-euw1, eks-use1, onprem-dc1; regions: eu-west-1, onprem-east, us-east-1)`},
		{"web.shop", "us-east-1//x", codes.InvalidArgument, `from: "us-east-1//x"`},
	} {
		_, err := e.explain(tc.service, tc.from)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("explain %q from %q: %v; want %v with %q", tc.service, tc.from, err, tc.code, tc.want)
		}
	}
}

func TestPlanDrill(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.mustApply(paymentsInEU)
	e.inForce(1)
	resp, err := e.locality.PlanDrill(context.Background(), &policyapipb.PlanDrillRequest{Target: &policyapipb.Target{Kind: "region", Name: "eu-west-1"}})
	if err != nil {
		t.Fatal(err)
	}
	var rep locality.DrillReport
	b, _ := resp.GetReport().MarshalJSON()
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Stranded) != 1 || rep.Stranded[0] != payments || len(rep.Services) != 2 {
		t.Fatalf("report: stranded %v, %d services", rep.Stranded, len(rep.Services))
	}
	for _, si := range rep.Services {
		if si.Service == payments && (!si.ResidencyOutage || si.CapacityLeft != 0) {
			t.Errorf("payments: %+v", si)
		}
		if si.Service == web && (si.Stranded || si.CapacityLeft != 100*8/12.0) {
			t.Errorf("web: capacity left %v", si.CapacityLeft)
		}
	}

	for _, tc := range []struct {
		kind, name string
		code       codes.Code
		want       string
	}{
		{"region", "mars-1", codes.NotFound, `region "mars-1" (known: eu-west-1, onprem-east, us-east-1)`},
		{"zone", "us-east-1/use1-az9", codes.NotFound, `zone "us-east-1/use1-az9" (known: eu-west-1/euw1-az1`},
		{"zone", "us-east-1", codes.InvalidArgument, "a zone is written region/zone"},
		{"cluster", "eks-mars", codes.NotFound, `cluster "eks-mars" (known: eks-euw1, eks-use1, onprem-dc1)`},
		{"planet", "earth", codes.InvalidArgument, `drill target kind "planet": want region, zone or cluster`},
		{"region", "", codes.InvalidArgument, "a region is required"},
	} {
		_, err := e.locality.PlanDrill(context.Background(), &policyapipb.PlanDrillRequest{Target: &policyapipb.Target{Kind: tc.kind, Name: tc.name}})
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("plan %s %q: %v; want %v with %q", tc.kind, tc.name, err, tc.code, tc.want)
		}
	}
}

// drillClient drives RunDrill by hand.
type drillClient struct {
	t      *testing.T
	stream policyapipb.LocalityService_RunDrillClient
	cancel context.CancelFunc
}

func (e *env) startDrill(kind, name string, d time.Duration) (*drillClient, *policyapipb.DrillStarted, error) {
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	st, err := e.locality.RunDrill(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := st.Send(&policyapipb.RunDrillRequest{Msg: &policyapipb.RunDrillRequest_Start{Start: &policyapipb.StartDrill{
		Target: &policyapipb.Target{Kind: kind, Name: name}, Duration: durationpb.New(d)}}}); err != nil {
		e.t.Fatal(err)
	}
	ev, err := st.Recv()
	if err != nil {
		return nil, nil, err
	}
	return &drillClient{t: e.t, stream: st, cancel: cancel}, ev.GetStarted(), nil
}

// until reads events until one satisfies ok; it returns the reason the
// drill ended, if it did.
func (c *drillClient) until(ok func(*policyapipb.RunDrillEvent) bool) *policyapipb.RunDrillEvent {
	c.t.Helper()
	for {
		ev, err := c.stream.Recv()
		if err != nil {
			c.t.Fatalf("drill stream: %v", err)
		}
		if ok(ev) {
			return ev
		}
	}
}

func drains(e *env) []locality.Target { return e.srv.Engine().Config().Drains }

func drained(es ...*env) error {
	for _, e := range es {
		if len(drains(e)) != 1 {
			return fmt.Errorf("drains %v, want one", drains(e))
		}
	}
	return nil
}

func restored(es ...*env) error {
	for _, e := range es {
		if len(drains(e)) != 0 {
			return fmt.Errorf("still drained: %v", drains(e))
		}
	}
	return nil
}

// A live drill drains its target in every control plane that shares the
// policy store, and ends when stopped, when its time is up, and when its
// client dies (the lease runs out).
func TestLiveDrill(t *testing.T) {
	t.Parallel()
	use1 := newEnv(t, envOpts{})
	euw1 := newEnv(t, envOpts{cluster: meshtest.EUW1.Name, pol: use1.pol, reg: use1.reg})
	use1.inForce(0)

	// Stopped by the client.
	c, started, err := use1.startDrill("region", "us-east-1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if started.GetDrill().GetCluster() != "eks-use1" || started.GetLeaseTtl().AsDuration() != 2*time.Second || started.GetPlan() == nil {
		t.Fatalf("started: %v", started)
	}
	ev := c.until(func(ev *policyapipb.RunDrillEvent) bool { return ev.GetProgress().GetApplied() })
	for _, s := range ev.GetProgress().GetShares() {
		if s.GetService() == "web.shop" && s.GetClient() == "us-east-1/use1-az1" && (len(s.GetShares()) == 0 || strings.HasPrefix(s.GetShares()[0].GetLocality(), "us-east-1")) {
			t.Fatalf("drained region still gets traffic: %v", s)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() error { return drained(use1, euw1) })
	list, err := euw1.locality.ListDrills(context.Background(), &policyapipb.ListDrillsRequest{})
	if err != nil || len(list.GetDrills()) != 1 || list.GetDrills()[0].GetTarget().GetName() != "us-east-1" {
		t.Fatalf("drills seen from eks-euw1: %v %v", list, err)
	}
	if err := c.stream.Send(&policyapipb.RunDrillRequest{Msg: &policyapipb.RunDrillRequest_Stop{Stop: &policyapipb.Stop{}}}); err != nil {
		t.Fatal(err)
	}
	var last *policyapipb.DrillProgress
	ev = c.until(func(ev *policyapipb.RunDrillEvent) bool {
		if p := ev.GetProgress(); p != nil {
			last = p
		}
		return ev.GetEnded() != nil
	})
	if ev.GetEnded().GetReason() != "stopped" || last.GetApplied() {
		t.Fatalf("ended %v, last progress applied %v", ev.GetEnded(), last.GetApplied())
	}
	testutil.Eventually(t, 5*time.Second, func() error { return restored(use1, euw1) })

	// The client dies: nobody stops the drill, the lease runs out.
	c, _, err = use1.startDrill("zone", "eu-west-1/euw1-az1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error { return drained(use1, euw1) })
	died := time.Now()
	c.cancel()
	testutil.Eventually(t, 10*time.Second, func() error { return restored(use1, euw1) })
	if d := time.Since(died); d < time.Second {
		t.Errorf("restored %v after the client died; the lease should hold for its TTL", d)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := len(use1.pol.Snapshot().List("Drill")); n != 0 {
			return fmt.Errorf("%d drill records left", n)
		}
		return nil
	})

	// The time is up.
	c, _, err = use1.startDrill("cluster", "onprem-dc1", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ev = c.until(func(ev *policyapipb.RunDrillEvent) bool { return ev.GetEnded() != nil })
	if ev.GetEnded().GetReason() != "duration reached" {
		t.Fatalf("ended: %v", ev.GetEnded())
	}
	testutil.Eventually(t, 5*time.Second, func() error { return restored(use1, euw1) })
}

func TestLiveDrillRefusesBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	for _, tc := range []struct {
		kind, name string
		d          time.Duration
		code       codes.Code
		want       string
	}{
		{"region", "mars-1", time.Minute, codes.NotFound, `region "mars-1"`},
		{"region", "us-east-1", 0, codes.InvalidArgument, "duration: 0s: must be between 1s and 1h0m0s"},
		{"region", "us-east-1", 2 * time.Hour, codes.InvalidArgument, "must be between 1s and 1h0m0s"},
		{"galaxy", "x", time.Minute, codes.InvalidArgument, "want region, zone or cluster"},
	} {
		_, _, err := e.startDrill(tc.kind, tc.name, tc.d)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("drill %s %q for %v: %v; want %v with %q", tc.kind, tc.name, tc.d, err, tc.code, tc.want)
		}
	}
	st, err := e.locality.RunDrill(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&policyapipb.RunDrillRequest{Msg: &policyapipb.RunDrillRequest_Heartbeat{Heartbeat: &policyapipb.Heartbeat{}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "the first message must start the drill") {
		t.Fatalf("heartbeat first: %v", err)
	}
	if n := len(e.pol.Snapshot().List("Drill")); n != 0 {
		t.Fatalf("refused drills left %d records", n)
	}
}

// A drill whose holder died with its lease (no one deletes its record) is
// dropped everywhere once its renewal is overdue.
func TestDrillOfADeadHolderExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	now := time.Now()
	rec, _ := json.Marshal(map[string]any{
		"target": locality.Target{Kind: locality.TargetRegion, Name: "us-east-1"}, "cluster": "gone",
		"started": now, "ends": now.Add(time.Hour), "renewBy": now.Add(time.Second),
	})
	if _, err := e.pol.Put(context.Background(), policy.Key{Kind: "Drill", Name: "region-us-east-1-dead"}, rec); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() error { return drained(e) })
	testutil.Eventually(t, 5*time.Second, func() error { return restored(e) })
	if time.Since(now) < time.Second {
		t.Fatal("dropped before its renewal was due")
	}
}
