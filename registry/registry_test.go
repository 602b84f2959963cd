package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/registry"
)

var (
	east = registry.Cluster{Name: "eks-use1", Region: "us-east-1", Network: "net-us", Labels: map[string]string{"provider": "eks"}}
	eu   = registry.Cluster{Name: "eks-euw1", Region: "eu-west-1", Network: "net-eu", Labels: map[string]string{"jurisdiction": "eu"}}
	web  = registry.ServiceKey{Namespace: "shop", Name: "web"}
)

func ep(id string, ip string, zone string) *registry.Endpoint {
	return &registry.Endpoint{
		Service: web, ID: id, Addresses: []string{ip}, Port: 8080,
		Locality: registry.Locality{Region: "us-east-1", Zone: zone},
	}
}

func newRegistry(t *testing.T, clusters ...registry.Cluster) *registry.Registry {
	t.Helper()
	r := registry.New(registry.Options{})
	for _, c := range clusters {
		if err := r.SetCluster(c); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestApplyVersionsAndNoops(t *testing.T) {
	r := newRegistry(t, east)
	v, err := r.Apply(east.Name, registry.PutService(&registry.Service{Namespace: "shop", Name: "web", Ports: []registry.ServicePort{{Port: 80, Protocol: registry.ProtocolHTTP}}}),
		registry.PutEndpoint(ep("a", "10.0.0.1", "use1-az1")))
	if err != nil || v != 1 {
		t.Fatalf("first apply: version %d, err %v; want 1, nil", v, err)
	}
	// The same values again change nothing and keep the version.
	v, err = r.Apply(east.Name, registry.PutEndpoint(ep("a", "10.0.0.1", "use1-az1")))
	if err != nil || v != 1 {
		t.Fatalf("no-op apply: version %d, err %v; want 1, nil", v, err)
	}
	// A delete of a missing key is a no-op too.
	v, _ = r.Apply(east.Name, registry.DeleteEndpoint(registry.EndpointKey{Service: web, ID: "nope"}))
	if v != 1 {
		t.Fatalf("delete of missing key bumped the version to %d", v)
	}
	v, _ = r.Apply(east.Name, registry.PutEndpoint(ep("b", "10.0.0.2", "use1-az2")))
	if v != 2 {
		t.Fatalf("version %d, want 2", v)
	}
	seg := r.View().Segment(east.Name)
	if seg.EndpointCount() != 2 || seg.ServiceCount() != 1 {
		t.Fatalf("counts: %d endpoints, %d services; want 2, 1", seg.EndpointCount(), seg.ServiceCount())
	}
	got := r.View().Endpoints(web)
	if len(got) != 2 || got[0].ID != "a" || got[1].ID != "b" || got[0].Cluster != east.Name {
		t.Fatalf("endpoints: %+v", got)
	}
	v, _ = r.Apply(east.Name, registry.DeleteEndpoint(registry.EndpointKey{Service: web, ID: "a"}))
	if v != 3 || r.View().Segment(east.Name).EndpointCount() != 1 {
		t.Fatalf("after delete: version %d, %d endpoints", v, r.View().Segment(east.Name).EndpointCount())
	}
}

func TestSnapshotsAreImmutable(t *testing.T) {
	r := newRegistry(t, east)
	if _, err := r.Apply(east.Name, registry.PutEndpoint(ep("a", "10.0.0.1", "z1"))); err != nil {
		t.Fatal(err)
	}
	before := r.View()
	if _, err := r.Apply(east.Name, registry.PutEndpoint(ep("a", "10.0.0.9", "z1")), registry.PutEndpoint(ep("b", "10.0.0.2", "z1"))); err != nil {
		t.Fatal(err)
	}
	old := before.Endpoints(web)
	if len(old) != 1 || old[0].Address() != "10.0.0.1" {
		t.Fatalf("old snapshot changed: %+v", old)
	}
	now := r.View().Endpoints(web)
	if len(now) != 2 || now[0].Address() != "10.0.0.9" {
		t.Fatalf("new snapshot: %+v", now)
	}
	if r.View().Version() <= before.Version() {
		t.Fatalf("view version did not grow: %d then %d", before.Version(), r.View().Version())
	}
}

func TestInvalidBatchChangesNothing(t *testing.T) {
	r := newRegistry(t, east)
	bad := ep("b", "not-an-ip", "z1")
	bad.Port = 0
	_, err := r.Apply(east.Name, registry.PutEndpoint(ep("a", "10.0.0.1", "z1")), registry.PutEndpoint(bad))
	if err == nil {
		t.Fatal("invalid batch accepted")
	}
	for _, want := range []string{"changes[1].endpoint.addresses[0]", "changes[1].endpoint.port"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if n := r.View().Segment(east.Name).EndpointCount(); n != 0 {
		t.Fatalf("a rejected batch left %d endpoints", n)
	}
	if _, err := r.Apply("nowhere", registry.PutEndpoint(ep("a", "10.0.0.1", "z1"))); !errors.Is(err, registry.ErrUnknownCluster) {
		t.Fatalf("unknown cluster: %v", err)
	}
}

func TestValidation(t *testing.T) {
	long := strings.Repeat("a", 64)
	cases := []struct {
		name   string
		change registry.Change
		field  string
	}{
		{"bad ip", registry.PutEndpoint(&registry.Endpoint{Service: web, ID: "a", Addresses: []string{"300.1.1.1"}, Port: 80, Locality: registry.Locality{Region: "r"}}), "endpoint.addresses[0]"},
		{"port zero", registry.PutEndpoint(&registry.Endpoint{Service: web, ID: "a", Addresses: []string{"10.0.0.1"}, Port: 0, Locality: registry.Locality{Region: "r"}}), "endpoint.port"},
		{"port too big", registry.PutEndpoint(&registry.Endpoint{Service: web, ID: "a", Addresses: []string{"10.0.0.1"}, Port: 70000, Locality: registry.Locality{Region: "r"}}), "endpoint.port"},
		{"no region", registry.PutEndpoint(&registry.Endpoint{Service: web, ID: "a", Addresses: []string{"10.0.0.1"}, Port: 80}), "endpoint.locality.region"},
		{"subzone without zone", registry.PutEndpoint(&registry.Endpoint{Service: web, ID: "a", Addresses: []string{"10.0.0.1"}, Port: 80, Locality: registry.Locality{Region: "r", Subzone: "s"}}), "endpoint.locality.zone"},
		{"long name", registry.PutService(&registry.Service{Namespace: "shop", Name: long}), "service.name"},
		{"bad namespace", registry.PutService(&registry.Service{Namespace: "Shop_1", Name: "web"}), "service.namespace"},
		{"port name missing", registry.PutService(&registry.Service{Namespace: "shop", Name: "web", Ports: []registry.ServicePort{{Port: 80}, {Name: "b", Port: 81}}}), "service.ports[0].name"},
		{"duplicate port", registry.PutService(&registry.Service{Namespace: "shop", Name: "web", Ports: []registry.ServicePort{{Name: "a", Port: 80}, {Name: "b", Port: 80}}}), "service.ports[1].port"},
		{"bad protocol", registry.PutService(&registry.Service{Namespace: "shop", Name: "web", Ports: []registry.ServicePort{{Port: 80, Protocol: "SMTP"}}}), "service.ports[0].protocol"},
		{"bad label", registry.PutService(&registry.Service{Namespace: "shop", Name: "web", Labels: map[string]string{"bad key!": "v"}}), "service.labels"},
		{"empty change", registry.Change{}, "changes[0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRegistry(t, east)
			_, err := r.Apply(east.Name, tc.change)
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %v does not name %q", err, tc.field)
			}
		})
	}
}

func TestParseLocality(t *testing.T) {
	cases := []struct {
		in   string
		want registry.Locality
		err  string
	}{
		{"us-east-1", registry.Locality{Region: "us-east-1"}, ""},
		{"us-east-1/use1-az1", registry.Locality{Region: "us-east-1", Zone: "use1-az1"}, ""},
		{"us-east-1/use1-az1/rack-7", registry.Locality{Region: "us-east-1", Zone: "use1-az1", Subzone: "rack-7"}, ""},
		{"", registry.Locality{}, "locality: Required"},
		{"a/b/c/d", registry.Locality{}, "at most three parts"},
		{"us east", registry.Locality{}, "locality.region"},
		{"r//s", registry.Locality{}, "locality.zone"},
		{"/z", registry.Locality{}, "locality.region"},
	}
	for _, tc := range cases {
		got, err := registry.ParseLocality(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseLocality(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseLocality(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
}

func TestParseAddrPort(t *testing.T) {
	for in, ok := range map[string]bool{
		"10.0.0.1:80": true, "[fd00::1]:8443": true, "10.0.0.1:0": false, "10.0.0.1:65536": false,
		"10.0.0.1": false, "web:80": false, "10.0.0.1:-1": false, ":80": false,
	} {
		_, _, err := registry.ParseAddrPort(in)
		if (err == nil) != ok {
			t.Errorf("ParseAddrPort(%q) err = %v, want ok=%v", in, err, ok)
		}
	}
}

func TestSubscriptionCoalescesAndNamesChanges(t *testing.T) {
	r := newRegistry(t, east)
	sub := r.Subscribe()
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, d, err := sub.Next(ctx)
	if err != nil || !d.Full {
		t.Fatalf("first delivery: %+v, %v; want Full", d, err)
	}
	// Three writes before the consumer looks: one delivery, every key named.
	for _, id := range []string{"a", "b", "a"} {
		if _, err := r.Apply(east.Name, registry.PutEndpoint(ep(id, "10.0.0."+map[string]string{"a": "1", "b": "2"}[id], "z"+id))); err != nil {
			t.Fatal(err)
		}
	}
	v, d, err := sub.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Full || len(d.Services) != 1 || len(d.Endpoints) != 2 {
		t.Fatalf("delta %+v, want one service and two endpoints", d)
	}
	if _, ok := d.Endpoints[registry.EndpointRef{Cluster: east.Name, EndpointKey: registry.EndpointKey{Service: web, ID: "b"}}]; !ok {
		t.Fatalf("delta misses endpoint b: %+v", d.Endpoints)
	}
	if len(v.Endpoints(web)) != 2 {
		t.Fatalf("view with the delta has %d endpoints", len(v.Endpoints(web)))
	}
	// A no-op write wakes nobody.
	if _, err := r.Apply(east.Name, registry.PutEndpoint(ep("b", "10.0.0.2", "zb"))); err != nil {
		t.Fatal(err)
	}
	if _, d := sub.Take(); !d.Empty() {
		t.Fatalf("no-op produced a delta: %+v", d)
	}
	if err := r.SetStatus(east.Name, registry.ClusterStatus{State: registry.Suspect}); err != nil {
		t.Fatal(err)
	}
	_, d, _ = sub.Next(ctx)
	if _, ok := d.Clusters[east.Name]; !ok || len(d.Services) != 0 {
		t.Fatalf("status change delta: %+v", d)
	}
}

func TestSlowSubscriberNeverBlocksWriters(t *testing.T) {
	r := newRegistry(t, east)
	sub := r.Subscribe() // never read
	defer sub.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			if _, err := r.Apply(east.Name, registry.PutEndpoint(ep(fmt.Sprint("e", i%50), fmt.Sprintf("10.0.%d.%d", i/250, i%250), "z"))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("writers blocked by a subscriber that never reads")
	}
	_, d := sub.Take()
	if len(d.Endpoints) != 50 {
		t.Fatalf("pending set holds %d endpoint keys, want the 50 distinct ones", len(d.Endpoints))
	}
}

func TestConcurrentReadersAndWriters(t *testing.T) {
	r := newRegistry(t, east, eu)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				v := r.View()
				for _, e := range v.Endpoints(web) {
					if e.Cluster == "" {
						t.Error("endpoint without cluster")
					}
				}
			}
		})
	}
	for i := range 500 {
		c := []registry.Cluster{east, eu}[i%2]
		if _, err := r.Apply(c.Name, registry.PutEndpoint(ep(fmt.Sprint(i%40), fmt.Sprintf("10.1.%d.%d", i/200, i%200), "z"))); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	if n := len(r.View().Endpoints(web)); n != 40 {
		t.Fatalf("%d endpoints, want 40", n)
	}
}

func TestChangesSinceAndReplicas(t *testing.T) {
	owner := newRegistry(t, east)
	replica := newRegistry(t, east)
	for i := range 5 {
		if _, err := owner.Apply(east.Name, registry.PutEndpoint(ep(fmt.Sprint(i), fmt.Sprintf("10.0.0.%d", i+1), "z"))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := owner.Apply(east.Name, registry.DeleteEndpoint(registry.EndpointKey{Service: web, ID: "2"})); err != nil {
		t.Fatal(err)
	}
	batches, ok := owner.ChangesSince(east.Name, 0, 0)
	if !ok || len(batches) != 6 {
		t.Fatalf("ChangesSince(0) = %d batches, %v", len(batches), ok)
	}
	// Out of order: refused, nothing changes.
	if err := replica.ApplyBatch(east.Name, batches[1]); !errors.Is(err, registry.ErrVersionGap) {
		t.Fatalf("gap accepted: %v", err)
	}
	for _, b := range batches {
		if err := replica.ApplyBatch(east.Name, b); err != nil {
			t.Fatal(err)
		}
	}
	want, got := owner.View().Segment(east.Name).Data(), replica.View().Segment(east.Name).Data()
	if got.Version != want.Version || len(got.Endpoints) != 4 {
		t.Fatalf("replica at v%d with %d endpoints; owner at v%d with %d", got.Version, len(got.Endpoints), want.Version, len(want.Endpoints))
	}
	// The replica can serve the same batches to a third member.
	if b, ok := replica.ChangesSince(east.Name, 0, 3); !ok || len(b) != 3 || b[0].Version != 4 {
		t.Fatalf("replica ChangesSince(3) = %+v, %v", b, ok)
	}
	// Another epoch cannot be answered from the log.
	if _, ok := owner.ChangesSince(east.Name, 7, 3); ok {
		t.Fatal("ChangesSince answered for another epoch")
	}
	// Replace with a new epoch: the replica holds exactly the copy.
	d := owner.View().Segment(east.Name).Data()
	d.Epoch, d.Version = 2, 0
	d.Endpoints = d.Endpoints[:1]
	sub := replica.Subscribe()
	defer sub.Close()
	sub.Take()
	if err := replica.Replace(d); err != nil {
		t.Fatal(err)
	}
	seg := replica.View().Segment(east.Name)
	if seg.Epoch() != 2 || seg.EndpointCount() != 1 {
		t.Fatalf("after replace: epoch %d, %d endpoints", seg.Epoch(), seg.EndpointCount())
	}
	_, delta := sub.Take()
	if len(delta.Endpoints) != 3 {
		t.Fatalf("replace delta names %d endpoints, want the 3 removed", len(delta.Endpoints))
	}
}

func TestLogIsBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	r := registry.New(registry.Options{LogChanges: 10, TombstoneTTL: time.Minute, Now: func() time.Time { return now }})
	if err := r.SetCluster(east); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if _, err := r.Apply(east.Name, registry.PutEndpoint(ep("a", fmt.Sprintf("10.0.0.%d", i+1), "z"))); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := r.ChangesSince(east.Name, 0, 5); ok {
		t.Fatal("log kept more than its bound")
	}
	if b, ok := r.ChangesSince(east.Name, 0, 25); !ok || len(b) != 5 {
		t.Fatalf("recent batches: %d, %v", len(b), ok)
	}
	now = now.Add(2 * time.Minute)
	if _, err := r.Apply(east.Name, registry.DeleteEndpoint(registry.EndpointKey{Service: web, ID: "a"})); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.ChangesSince(east.Name, 0, 29); ok {
		t.Fatal("batches older than the tombstone TTL were kept")
	}
	if b, ok := r.ChangesSince(east.Name, 0, 30); !ok || len(b) != 1 {
		t.Fatalf("newest batch: %d, %v", len(b), ok)
	}
}

func TestEffectiveHealthAndMerge(t *testing.T) {
	r := newRegistry(t, east, eu)
	seen := time.Unix(500, 0)
	if _, err := r.Apply(east.Name, registry.PutEndpoint(ep("a", "10.0.0.1", "z")), registry.PutService(&registry.Service{Namespace: "shop", Name: "web", Ports: []registry.ServicePort{{Name: "http", Port: 80}}})); err != nil {
		t.Fatal(err)
	}
	drain := ep("b", "10.0.0.2", "z")
	drain.Health = registry.Draining
	if _, err := r.Apply(eu.Name, registry.PutEndpoint(drain), registry.PutService(&registry.Service{Namespace: "shop", Name: "web", Ports: []registry.ServicePort{{Name: "http", Port: 80}, {Name: "grpc", Port: 9090}}})); err != nil {
		t.Fatal(err)
	}
	svc, ok := r.View().Service(web)
	if !ok || len(svc.Ports) != 2 {
		t.Fatalf("merged service %+v", svc)
	}
	if s, _ := r.View().Segment(eu.Name).Service(web); len(s.Ports) != 2 {
		t.Fatal("merge modified a segment's service")
	}
	a := r.View().Endpoints(web)
	cases := []struct {
		state registry.ClusterState
		want  [2]registry.Health
	}{
		{registry.Alive, [2]registry.Health{registry.Draining, registry.Healthy}},
		{registry.Suspect, [2]registry.Health{registry.Draining, registry.Stale}},
		{registry.Unreachable, [2]registry.Health{registry.Draining, registry.Stale}},
		{registry.Dead, [2]registry.Health{registry.Draining, registry.Unhealthy}},
	}
	for _, tc := range cases {
		if err := r.SetStatus(east.Name, registry.ClusterStatus{State: tc.state, LastSeen: seen}); err != nil {
			t.Fatal(err)
		}
		v := r.View()
		// a[0] is eu's draining endpoint (clusters sort by name), a[1] east's.
		for i, e := range a {
			h, since := v.EffectiveHealth(e)
			if h != tc.want[i] {
				t.Errorf("%s: endpoint %s health %s, want %s", tc.state, e.ID, h, tc.want[i])
			}
			if h == registry.Stale && !since.Equal(seen) {
				t.Errorf("stale since %v, want %v", since, seen)
			}
		}
	}
	r.RemoveCluster(east.Name)
	if got := r.View().Endpoints(web); len(got) != 1 || got[0].Cluster != eu.Name {
		t.Fatalf("after removal: %+v", got)
	}
}

func TestHealthText(t *testing.T) {
	for _, h := range []registry.Health{registry.Healthy, registry.Draining, registry.Unhealthy, registry.Stale} {
		b, _ := h.MarshalText()
		var back registry.Health
		if err := back.UnmarshalText(b); err != nil || back != h {
			t.Errorf("round trip of %s: %s, %v", h, back, err)
		}
	}
	var h registry.Health
	if err := h.UnmarshalText([]byte("sick")); err == nil {
		t.Error("unknown health accepted")
	}
}

func TestClusterStatusJSONRoundTrip(t *testing.T) {
	in := registry.ClusterStatus{State: registry.Unreachable, Since: time.Unix(10, 0).UTC(), LastSeen: time.Unix(5, 0).UTC()}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out registry.ClusterStatus
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Fatalf("round trip: %+v, %v (json %s)", out, err, b)
	}
	if err := json.Unmarshal([]byte(`{"state":"gone"}`), &out); err == nil {
		t.Fatal("unknown state accepted")
	}
}
