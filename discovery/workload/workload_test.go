package workload_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meridian-mesh/meridian/discovery/workload"
	"github.com/meridian-mesh/meridian/discovery/workload/workloadpb"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/store"
)

const cluster = "onprem-dc1"

// clock is a settable clock, so that TTLs and grace periods pass at once.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// harness is one meridiand's worth of Workload API: embedded etcd, a
// registry with the local cluster, the server and its sweeper, a real gRPC
// server on loopback and a client.
type harness struct {
	t       *testing.T
	store   *store.Store
	reg     *registry.Registry
	metrics *prometheus.Registry
	client  workloadpb.WorkloadServiceClient
	srv     *workload.Server
	close   func()

	wg   sync.WaitGroup
	ends []func() // of the terms started
}

const grace = 10 * time.Second

// start runs a harness whose server serves at once, as a replica that
// leads its cluster from the start.
func start(t *testing.T, dir string, clk *clock) *harness {
	t.Helper()
	h := startIdle(t, dir, clk, "")
	h.term()
	// Run serves once it has loaded the registrations.
	testutil.Eventually(t, 10*time.Second, func() error {
		_, err := h.client.List(context.Background(), &workloadpb.ListRequest{})
		return err
	})
	return h
}

// startIdle runs a harness whose server does not run yet: a replica that
// does not lead, whose leader serves at leader.
func startIdle(t *testing.T, dir string, clk *clock, leader string) *harness {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	st, err := store.Open(ctx, store.Config{DataDir: dir}, log)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Options{})
	if err := reg.SetCluster(registry.Cluster{Name: cluster, Region: "onprem-east", Network: "dc1"}); err != nil {
		t.Fatal(err)
	}
	metrics := prometheus.NewRegistry()
	srv, err := workload.New(workload.Config{
		Cluster: cluster, Registry: reg, Store: st, Metrics: metrics, Log: log,
		Grace: grace, SweepInterval: 5 * time.Millisecond, Now: clk.Now,
		Leader: func() string { return leader },
	})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	srv.Register(gs)
	h := &harness{t: t, store: st, reg: reg, metrics: metrics, srv: srv}
	h.wg.Go(func() { _ = gs.Serve(lis) })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h.client = workloadpb.NewWorkloadServiceClient(conn)
	var once sync.Once
	h.close = func() {
		once.Do(func() {
			for _, end := range h.ends {
				end()
			}
			conn.Close()
			gs.GracefulStop()
			h.wg.Wait()
			st.Close()
		})
	}
	t.Cleanup(h.close)
	return h
}

// term runs the server, as for one term of leading the cluster, until the
// returned func (or the harness's close) ends it. Not concurrently with
// close.
func (h *harness) term() (end func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	h.wg.Go(func() {
		defer close(done)
		if err := h.srv.Run(ctx); err != nil {
			h.t.Errorf("Run: %v", err)
		}
	})
	var once sync.Once
	end = func() { once.Do(func() { cancel(); <-done }) }
	h.ends = append(h.ends, end)
	return end
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func web(addr string) *workloadpb.RegisterRequest {
	return &workloadpb.RegisterRequest{
		Service: "web", Namespace: "shop", Address: addr, PortName: "http", Protocol: "http",
		Locality: "onprem-east/rack1/a", Labels: map[string]string{"version": "v1"},
		ServiceAccount: "web", Ttl: durationpb.New(30 * time.Second),
	}
}

func (h *harness) register(req *workloadpb.RegisterRequest) *workloadpb.RegisterResponse {
	h.t.Helper()
	resp, err := h.client.Register(context.Background(), req)
	if err != nil {
		h.t.Fatalf("register %s: %v", req.GetAddress(), err)
	}
	return resp
}

func (h *harness) segment() *registry.Segment { return h.reg.View().Segment(cluster) }

func (h *harness) endpoint(id, portName string) (*registry.Endpoint, bool) {
	return h.segment().Endpoint(registry.EndpointKey{Service: registry.ServiceKey{Namespace: "shop", Name: "web"}, ID: id, PortName: portName})
}

// health returns an endpoint's health, or "absent".
func (h *harness) health(id string) string {
	e, ok := h.endpoint(id, "http")
	if !ok {
		return "absent"
	}
	return e.Health.String()
}

func (h *harness) waitHealth(id, want string) {
	h.t.Helper()
	testutil.Eventually(h.t, 5*time.Second, func() error {
		if got := h.health(id); got != want {
			return fmt.Errorf("workload %s is %s, want %s", id, got, want)
		}
		return nil
	})
}

func (h *harness) storedKeys() []string {
	h.t.Helper()
	resp, err := h.store.Client.Get(context.Background(), "/meridian/workloads/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

func (h *harness) counter(name, label, value string) float64 {
	h.t.Helper()
	mfs, err := h.metrics.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	h.t.Fatalf("no metric %s{%s=%q}", name, label, value)
	return 0
}

func TestRegisterHeartbeatExpiry(t *testing.T) {
	clk := newClock()
	h := start(t, t.TempDir(), clk)

	a := h.register(web("10.0.0.1:8080"))
	b := h.register(web("10.0.0.2:8080"))
	if !a.Created || !b.Created || a.Workload.Id == b.Workload.Id || !strings.HasPrefix(a.Workload.Id, "web-") {
		t.Fatalf("registrations: %v / %v", a, b)
	}
	ep, ok := h.endpoint(a.Workload.Id, "http")
	if !ok {
		t.Fatal("endpoint not in the segment")
	}
	want := registry.Endpoint{
		Service: registry.ServiceKey{Namespace: "shop", Name: "web"}, Cluster: cluster, ID: a.Workload.Id, PortName: "http",
		Addresses: []string{"10.0.0.1"}, Port: 8080, Locality: registry.Locality{Region: "onprem-east", Zone: "rack1", Subzone: "a"},
		Network: "dc1", ServiceAccount: "web", Labels: map[string]string{"version": "v1"},
	}
	if !ep.Equal(&want) {
		t.Fatalf("endpoint %+v, want %+v", ep, want)
	}
	svc, ok := h.segment().Service(registry.ServiceKey{Namespace: "shop", Name: "web"})
	if !ok || len(svc.Ports) != 1 || svc.Ports[0] != (registry.ServicePort{Name: "http", Port: 8080, Protocol: registry.ProtocolHTTP}) {
		t.Fatalf("service definition %+v", svc)
	}
	if keys := h.storedKeys(); len(keys) != 2 || keys[0] != "/meridian/workloads/shop/web/"+min(a.Workload.Id, b.Workload.Id) {
		t.Fatalf("etcd keys %v", keys)
	}

	// a heartbeats halfway through its TTL; b does not. Once b is
	// unhealthy, a sweep has run past b's TTL, and a must still be healthy.
	clk.Advance(20 * time.Second)
	hb, err := h.client.Heartbeat(context.Background(), &workloadpb.HeartbeatRequest{Id: a.Workload.Id})
	if err != nil || hb.Ttl.AsDuration() != 30*time.Second || !hb.ExpiresAt.AsTime().Equal(clk.Now().Add(30*time.Second)) {
		t.Fatalf("heartbeat: %v, %v", hb, err)
	}
	clk.Advance(15 * time.Second)
	h.waitHealth(b.Workload.Id, "unhealthy")
	if got := h.health(a.Workload.Id); got != "healthy" {
		t.Fatalf("heartbeating workload is %s", got)
	}
	if got := h.counter("meridian_workload_expiries_total", "stage", "unhealthy"); got != 1 {
		t.Fatalf("unhealthy expiries %v", got)
	}
	list, err := h.client.List(context.Background(), &workloadpb.ListRequest{Namespace: "shop"})
	if err != nil || len(list.Workloads) != 2 {
		t.Fatalf("list: %v, %v", list, err)
	}
	for _, w := range list.Workloads {
		if wantH := map[string]workloadpb.Health{a.Workload.Id: workloadpb.Health_HEALTHY, b.Workload.Id: workloadpb.Health_UNHEALTHY}[w.Id]; w.Health != wantH {
			t.Fatalf("list: %s is %v, want %v", w.Id, w.Health, wantH)
		}
	}

	// The grace period runs out for b: it leaves the segment and etcd.
	clk.Advance(grace)
	h.waitHealth(b.Workload.Id, "absent")
	if keys := h.storedKeys(); len(keys) != 1 || !strings.HasSuffix(keys[0], a.Workload.Id) {
		t.Fatalf("etcd keys after removal %v", keys)
	}
	if got := h.counter("meridian_workload_expiries_total", "stage", "removed"); got != 1 {
		t.Fatalf("removed expiries %v", got)
	}
	if _, err := h.client.Heartbeat(context.Background(), &workloadpb.HeartbeatRequest{Id: b.Workload.Id}); status.Code(err) != codes.NotFound {
		t.Fatalf("heartbeat of a removed workload: %v", err)
	}

	// a expires too (its last heartbeat was at 20s, now is 45s), then a
	// heartbeat brings it back before the grace ends.
	clk.Advance(6 * time.Second)
	h.waitHealth(a.Workload.Id, "unhealthy")
	if _, err := h.client.Heartbeat(context.Background(), &workloadpb.HeartbeatRequest{Id: a.Workload.Id}); err != nil {
		t.Fatal(err)
	}
	if got := h.health(a.Workload.Id); got != "healthy" {
		t.Fatalf("after a late heartbeat: %s", got)
	}
	if got := h.counter("meridian_workload_heartbeats_total", "outcome", "ok"); got != 2 {
		t.Fatalf("heartbeats %v", got)
	}
	if got := h.counter("meridian_workload_registrations_total", "outcome", "created"); got != 2 {
		t.Fatalf("registrations %v", got)
	}
}

func TestRestartKeepsRegistrations(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	h := start(t, dir, clk)
	v4 := h.register(web("10.0.0.1:8080"))
	v6req := web("[fd00::0:1]:8080")
	v6req.Labels = map[string]string{"version": "v2", "team": "payments"}
	v6 := h.register(v6req)
	if v6.Workload.Address != "[fd00::1]:8080" {
		t.Fatalf("canonical address %q", v6.Workload.Address)
	}
	before := h.segment()
	h.close()

	h = start(t, dir, clk)
	list, err := h.client.List(context.Background(), &workloadpb.ListRequest{})
	if err != nil || len(list.Workloads) != 2 {
		t.Fatalf("after restart: %v, %v", list, err)
	}
	after := h.segment()
	if after.EndpointCount() != 2 || after.ServiceCount() != 1 {
		t.Fatalf("segment after restart: %d endpoints, %d services", after.EndpointCount(), after.ServiceCount())
	}
	for _, id := range []string{v4.Workload.Id, v6.Workload.Id} {
		k := registry.EndpointKey{Service: registry.ServiceKey{Namespace: "shop", Name: "web"}, ID: id, PortName: "http"}
		old, _ := before.Endpoint(k)
		now, ok := after.Endpoint(k)
		if !ok || !old.Equal(now) {
			t.Fatalf("endpoint %s before %+v, after %+v", id, old, now)
		}
	}
	// Registering again after the restart finds the same workload.
	again := h.register(v6req)
	if again.Created || again.Workload.Id != v6.Workload.Id || !again.Workload.RegisteredAt.AsTime().Equal(v6.Workload.RegisteredAt.AsTime()) {
		t.Fatalf("re-registration after restart: %v", again)
	}
	// Loaded workloads get a fresh TTL from the restart, then expire.
	clk.Advance(31 * time.Second)
	h.waitHealth(v4.Workload.Id, "unhealthy")
}

func TestConcurrentRegistrationsAreIdempotent(t *testing.T) {
	h := start(t, t.TempDir(), newClock())
	// Four spellings of one address: one workload.
	addrs := []string{"10.0.0.7:9000", "[::ffff:10.0.0.7]:9000", "10.0.0.7:09000", "[::ffff:a00:7]:9000"}
	const n = 16
	var wg sync.WaitGroup
	ids := make([]string, n)
	created := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := h.client.Register(context.Background(), web(addrs[i%len(addrs)]))
			errs[i] = err
			if err == nil {
				ids[i], created[i] = resp.Workload.Id, resp.Created
			}
		}()
	}
	wg.Wait()
	nCreated := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("IDs differ: %s, %s", ids[i], ids[0])
		}
		if created[i] {
			nCreated++
		}
	}
	if nCreated != 1 {
		t.Fatalf("%d registrations report created, want 1", nCreated)
	}
	if got := h.segment().EndpointCount(); got != 1 {
		t.Fatalf("%d endpoints, want 1", got)
	}
	if keys := h.storedKeys(); len(keys) != 1 {
		t.Fatalf("etcd keys %v", keys)
	}
	if got := h.counter("meridian_workload_registrations_total", "outcome", "updated"); got != n-1 {
		t.Fatalf("updated registrations %v", got)
	}
}

func TestDeregister(t *testing.T) {
	h := start(t, t.TempDir(), newClock())
	a := h.register(web("10.0.0.1:8080"))
	if _, err := h.client.Deregister(context.Background(), &workloadpb.DeregisterRequest{Id: a.Workload.Id}); err != nil {
		t.Fatal(err)
	}
	if got := h.health(a.Workload.Id); got != "absent" {
		t.Fatalf("after deregister: %s", got)
	}
	if _, ok := h.segment().Service(registry.ServiceKey{Namespace: "shop", Name: "web"}); ok {
		t.Fatal("the service definition outlived its last workload")
	}
	if keys := h.storedKeys(); len(keys) != 0 {
		t.Fatalf("etcd keys %v", keys)
	}
	_, err := h.client.Deregister(context.Background(), &workloadpb.DeregisterRequest{Id: a.Workload.Id})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("second deregister: %v", err)
	}
	_, err = h.client.Deregister(context.Background(), &workloadpb.DeregisterRequest{})
	if field := violation(t, err); field != "id" {
		t.Fatalf("empty ID: %v", err)
	}
}

func TestRegisterAgainUpdates(t *testing.T) {
	h := start(t, t.TempDir(), newClock())
	a := h.register(web("10.0.0.1:8080"))
	req := web("10.0.0.1:8080")
	req.PortName, req.Labels = "web", map[string]string{"version": "v2"}
	b := h.register(req)
	if b.Created || b.Workload.Id != a.Workload.Id {
		t.Fatalf("update: %v", b)
	}
	if _, ok := h.endpoint(a.Workload.Id, "http"); ok {
		t.Fatal("the endpoint under the old port name remains")
	}
	ep, ok := h.endpoint(a.Workload.Id, "web")
	if !ok || ep.Labels["version"] != "v2" {
		t.Fatalf("updated endpoint %+v", ep)
	}
	svc, _ := h.segment().Service(registry.ServiceKey{Namespace: "shop", Name: "web"})
	if len(svc.Ports) != 1 || svc.Ports[0].Name != "web" {
		t.Fatalf("service after a port rename %+v", svc)
	}
}

func TestKubernetesDefinitionWins(t *testing.T) {
	h := start(t, t.TempDir(), newClock())
	kube := &registry.Service{Namespace: "shop", Name: "web", Ports: []registry.ServicePort{{Name: "http", Port: 80, Protocol: registry.ProtocolHTTP}}}
	if _, err := h.reg.Apply(cluster, registry.PutService(kube)); err != nil {
		t.Fatal(err)
	}
	a := h.register(web("10.0.0.1:8080"))
	svc, _ := h.segment().Service(kube.Key())
	if !svc.Equal(kube) {
		t.Fatalf("the workload API replaced the Kubernetes definition: %+v", svc)
	}
	if _, err := h.client.Deregister(context.Background(), &workloadpb.DeregisterRequest{Id: a.Workload.Id}); err != nil {
		t.Fatal(err)
	}
	if svc, ok := h.segment().Service(kube.Key()); !ok || !svc.Equal(kube) {
		t.Fatal("deregistering removed the Kubernetes definition")
	}
}

func TestMultiPortService(t *testing.T) {
	h := start(t, t.TempDir(), newClock())
	h.register(web("10.0.0.1:8080"))
	grpcReq := web("10.0.0.1:9090")
	grpcReq.PortName, grpcReq.Protocol = "grpc", "GRPC"
	h.register(grpcReq)
	// Another instance listens on another number for the named port.
	h.register(web("10.0.0.2:8081"))
	svc, _ := h.segment().Service(registry.ServiceKey{Namespace: "shop", Name: "web"})
	want := []registry.ServicePort{{Name: "http", Port: 8080, Protocol: registry.ProtocolHTTP}, {Name: "grpc", Port: 9090, Protocol: registry.ProtocolGRPC}}
	if len(svc.Ports) != 2 || svc.Ports[0] != want[0] || svc.Ports[1] != want[1] {
		t.Fatalf("ports %+v, want %+v", svc.Ports, want)
	}
}

// violation returns the field an InvalidArgument error names, checking that
// the message names it too.
func violation(t *testing.T, err error) string {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		t.Fatalf("want InvalidArgument, got %v", err)
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
			f := br.FieldViolations[0].Field
			if !strings.Contains(st.Message(), f+": ") {
				t.Fatalf("message %q does not name %s", st.Message(), f)
			}
			return f
		}
	}
	t.Fatalf("no BadRequest details in %v", err)
	return ""
}

func TestBadInputChangesNothing(t *testing.T) {
	h := start(t, t.TempDir(), newClock())
	good := h.register(web("10.0.0.1:8080"))
	h.register(web("10.0.0.3:8080"))
	version := h.segment().Version()
	long := strings.Repeat("a", 64)
	for _, tc := range []struct {
		name  string
		edit  func(*workloadpb.RegisterRequest)
		field string
	}{
		{"bad IP", func(r *workloadpb.RegisterRequest) { r.Address = "10.0.0.256:80" }, "address"},
		{"host name", func(r *workloadpb.RegisterRequest) { r.Address = "web.example.com:80" }, "address"},
		{"no port", func(r *workloadpb.RegisterRequest) { r.Address = "10.0.0.1" }, "address"},
		{"port 0", func(r *workloadpb.RegisterRequest) { r.Address = "10.0.0.1:0" }, "address"},
		{"port 65536", func(r *workloadpb.RegisterRequest) { r.Address = "10.0.0.1:65536" }, "address"},
		{"IPv6 zone", func(r *workloadpb.RegisterRequest) { r.Address = "[fe80::1%eth0]:80" }, "address"},
		{"unspecified", func(r *workloadpb.RegisterRequest) { r.Address = "0.0.0.0:80" }, "address"},
		{"no address", func(r *workloadpb.RegisterRequest) { r.Address = "" }, "address"},
		{"no locality", func(r *workloadpb.RegisterRequest) { r.Locality = "" }, "locality"},
		{"four-part locality", func(r *workloadpb.RegisterRequest) { r.Locality = "a/b/c/d" }, "locality"},
		{"subzone without zone", func(r *workloadpb.RegisterRequest) { r.Locality = "a//c" }, "locality.zone"},
		{"bad region", func(r *workloadpb.RegisterRequest) { r.Locality = "us east/1" }, "locality.region"},
		{"service name too long", func(r *workloadpb.RegisterRequest) { r.Service = long }, "service"},
		{"service name with a dot", func(r *workloadpb.RegisterRequest) { r.Service = "web.v1" }, "service"},
		{"no service", func(r *workloadpb.RegisterRequest) { r.Service = "" }, "service"},
		{"namespace too long", func(r *workloadpb.RegisterRequest) { r.Namespace = long }, "namespace"},
		{"namespace format", func(r *workloadpb.RegisterRequest) { r.Namespace = "Shop_NS" }, "namespace"},
		{"port name too long", func(r *workloadpb.RegisterRequest) { r.PortName = "http-port-name-x" }, "port_name"},
		{"unknown protocol", func(r *workloadpb.RegisterRequest) { r.Protocol = "smtp" }, "protocol"},
		{"bad label key", func(r *workloadpb.RegisterRequest) { r.Labels = map[string]string{"-x": "1"} }, "labels"},
		{"label value too long", func(r *workloadpb.RegisterRequest) { r.Labels = map[string]string{"x": long} }, "labels"},
		{"service account", func(r *workloadpb.RegisterRequest) { r.ServiceAccount = "Web_SA" }, "service_account"},
		{"TTL too short", func(r *workloadpb.RegisterRequest) { r.Ttl = durationpb.New(time.Millisecond) }, "ttl"},
		{"negative TTL", func(r *workloadpb.RegisterRequest) { r.Ttl = durationpb.New(-time.Second) }, "ttl"},
		{"TTL too long", func(r *workloadpb.RegisterRequest) { r.Ttl = durationpb.New(25 * time.Hour) }, "ttl"},
		// Disagreeing with the service's other registrations.
		{"second protocol for a port", func(r *workloadpb.RegisterRequest) { r.Address, r.Protocol = "10.0.0.2:8080", "grpc" }, "protocol"},
		{"second name for a number", func(r *workloadpb.RegisterRequest) { r.Address, r.PortName = "10.0.0.2:8080", "web" }, "port_name"},
		{"unnamed beside named", func(r *workloadpb.RegisterRequest) { r.Address, r.PortName = "10.0.0.2:9090", "" }, "port_name"},
		{"update to a second protocol", func(r *workloadpb.RegisterRequest) { r.Address, r.Protocol = "10.0.0.3:8080", "tcp" }, "protocol"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keysBefore := h.storedKeys()
			req := web("10.0.0.9:8080")
			tc.edit(req)
			_, err := h.client.Register(context.Background(), req)
			if got := violation(t, err); got != tc.field {
				t.Fatalf("field %q, want %q (%v)", got, tc.field, err)
			}
			if v := h.segment().Version(); v != version {
				t.Fatalf("the segment changed: version %d, want %d", v, version)
			}
			if keys := h.storedKeys(); fmt.Sprint(keys) != fmt.Sprint(keysBefore) {
				t.Fatalf("etcd changed: %v, want %v", keys, keysBefore)
			}
		})
	}
	if ep, ok := h.endpoint(good.Workload.Id, "http"); !ok || ep.Health != registry.Healthy {
		t.Fatal("the good registration was disturbed")
	}
	if got := h.counter("meridian_workload_registrations_total", "outcome", "rejected"); got < 29 {
		t.Fatalf("rejected registrations %v", got)
	}
}

func TestNewNeedsTheCluster(t *testing.T) {
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = workload.New(workload.Config{Cluster: "nope", Registry: registry.New(registry.Options{}), Store: st})
	if err == nil || !strings.Contains(err.Error(), `cluster "nope"`) {
		t.Fatalf("unknown cluster: %v", err)
	}
	if _, err := workload.New(workload.Config{}); err == nil {
		t.Fatalf("empty config: %v", err)
	}
}
