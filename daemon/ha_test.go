package daemon_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/discovery/workload"
	"github.com/meridian-mesh/meridian/discovery/workload/workloadpb"
	"github.com/meridian-mesh/meridian/internal/kubetest"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/store"
)

// TestMeridiandProcess is not a test: it is meridiand, run as a process
// of its own by tests (this test binary again, with MERIDIAND_CONFIG
// naming its configuration file), so that a test can kill it as a crash
// would — no goodbye, no resignation. It prints its addresses on stdout
// once it listens. As a test it does nothing.
func TestMeridiandProcess(t *testing.T) {
	path := os.Getenv("MERIDIAND_CONFIG")
	if path == "" {
		return
	}
	cfg, err := daemon.LoadConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := daemon.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("meridiand grpc=%s admin=%s gossip=%s\n", d.GRPCAddr(), d.AdminAddr(), d.Federation.GossipAddr())
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
	os.Exit(0)
}

// process is a meridiand in a process of its own.
type process struct {
	cmd                 *exec.Cmd
	grpc, admin, gossip string
}

func startProcess(t *testing.T, cfg daemon.Config) *process {
	t.Helper()
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "meridiand.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMeridiandProcess$")
	cmd.Env = append(os.Environ(), "MERIDIAND_CONFIG="+path)
	cmd.Stderr = testLog(t)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	p := &process{cmd: cmd}
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if _, err := fmt.Sscanf(lines.Text(), "meridiand grpc=%s admin=%s gossip=%s", &p.grpc, &p.admin, &p.gossip); err == nil {
			break
		}
	}
	if p.gossip == "" {
		t.Fatal("meridiand did not start")
	}
	go func() { // keep the pipe drained
		for lines.Scan() {
		}
	}()
	return p
}

// metric sums every series of a metric family.
func metric(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// Two replicas of one cluster share one etcd and one Kubernetes API
// server. The leader (a process of its own) runs Kubernetes discovery and
// the Workload API; the follower serves the same segment, pulled from the
// leader, and sends Workload API clients to the leader. Killed like a
// crash, the leader is replaced within seconds, and the new one keeps
// every endpoint — Kubernetes' and the registered workloads' — from the
// moment it leads, then runs discovery and the Workload API itself.
func TestHighAvailabilityWithinACluster(t *testing.T) {
	// Opened first, so that it closes after both replicas stopped.
	etcd, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Close() })
	api := kubetest.Start(t)
	kc := api.Clientset()
	kubeObjects(t, kc)

	replica := func(name string, seeds ...string) daemon.Config {
		c := daemon.DefaultConfig()
		c.Cluster = registry.Cluster{Name: "dc1", Region: "east"}
		c.DataDir = t.TempDir()
		c.GRPCAddr, c.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
		c.Etcd.Endpoints = []string{etcd.ClientURL()}
		c.Kube.Enabled, c.Kube.Kubeconfig = true, api.Kubeconfig()
		c.Federation = daemon.Federation{Enabled: true, Replica: name, GossipAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0",
			Seeds: seeds, Insecure: true, Preset: "local"}
		return c
	}
	a := startProcess(t, replica("a"))
	testutil.Eventually(t, 60*time.Second, func() error {
		if code, body := get(t, "http://"+a.admin+"/readyz?verbose"); code != 200 {
			return fmt.Errorf("replica a /readyz: %d %s", code, body)
		}
		return nil
	})
	bCfg := replica("b", a.gossip)
	b := startDaemon(t, bCfg.DataDir, func(c *daemon.Config) { *c = bCfg })
	testutil.Eventually(t, 30*time.Second, func() error {
		if node, addr, ok := b.d.Federation.Leader(); !ok || node != "dc1/a" || addr != a.grpc {
			return fmt.Errorf("b names leader %q at %q", node, addr)
		}
		return nil
	})

	// The follower answers the Workload API with the leader's address;
	// meridianctl follows it.
	conn, err := grpc.NewClient(b.d.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = workloadpb.NewWorkloadServiceClient(conn).List(context.Background(), &workloadpb.ListRequest{})
	if leader := notLeaderAnswer(err); leader != a.grpc {
		t.Fatalf("the follower answered %v, want Unavailable naming %s", err, a.grpc)
	}
	vm := func(server, addr string) {
		t.Helper()
		code, out, errOut := ctl("workload", "register", "--server", server, "--service", "web", "--namespace", "shop",
			"--address", addr, "--locality", "east/z1", "--port-name", "http", "--ttl", "1m")
		if code != 0 {
			t.Fatalf("register %s through %s: %s %s", addr, server, out, errOut)
		}
		if server != a.grpc && !strings.Contains(errOut, "sends this to "+a.grpc) {
			t.Fatalf("meridianctl did not say it used the leader: %q", errOut)
		}
	}
	vm(b.d.GRPCAddr(), "10.0.0.5:8080")
	vm(a.grpc, "10.0.0.6:8080")

	const want = 4 // two Kubernetes endpoints, two registered workloads
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := b.d.Registry.View().Segment("dc1").EndpointCount(); n != want {
			return fmt.Errorf("the follower holds %d endpoints of dc1, want %d", n, want)
		}
		return nil
	})
	for _, m := range []string{"meridian_federation_follower_segment_writes_total", "meridian_kube_discovery_batches_applied_total",
		"meridian_workload_registrations_total", "meridian_federation_leader"} {
		if v := metric(t, b.d.Metrics, m); v != 0 {
			t.Fatalf("the follower: %s = %v", m, v)
		}
	}
	epoch := b.d.Registry.View().Segment("dc1").Epoch()

	// From the crash on, the follower's view never loses an endpoint.
	fewest := make(chan int, 1)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	var watch sync.WaitGroup
	watch.Go(func() {
		sub := b.d.Registry.Subscribe()
		defer sub.Close()
		low := want
		for {
			v, _, err := sub.Next(watchCtx)
			if err != nil {
				fewest <- low
				return
			}
			low = min(low, v.Segment("dc1").EndpointCount())
		}
	})
	killed := time.Now()
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 60*time.Second, func() error {
		if !b.d.Federation.Leading() {
			return fmt.Errorf("b has not taken over")
		}
		return nil
	})
	took := time.Since(killed)
	testutil.Eventually(t, 60*time.Second, func() error {
		if code, body := get(t, "http://"+b.d.AdminAddr()+"/readyz?verbose"); code != 200 {
			return fmt.Errorf("b /readyz: %d %s", code, body)
		}
		return nil
	})
	list, err := workloadpb.NewWorkloadServiceClient(conn).List(context.Background(), &workloadpb.ListRequest{Namespace: "shop"})
	if err != nil || len(list.GetWorkloads()) != 2 {
		t.Fatalf("the new leader's Workload API: %v %v", list, err)
	}
	if _, err := workloadpb.NewWorkloadServiceClient(conn).Heartbeat(context.Background(), &workloadpb.HeartbeatRequest{Id: list.GetWorkloads()[0].GetId()}); err != nil {
		t.Fatalf("heartbeat to the new leader: %v", err)
	}
	// Kubernetes discovery runs on the new leader.
	putSlice(t, kc, "10.1.0.10", "10.1.0.11", "10.1.0.12")
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := b.d.Registry.View().Segment("dc1").EndpointCount(); n != want+1 {
			return fmt.Errorf("the new leader holds %d endpoints, want %d", n, want+1)
		}
		return nil
	})
	stopWatch()
	watch.Wait()
	seg := b.d.Registry.View().Segment("dc1")
	if low := <-fewest; low < want {
		t.Fatalf("the follower's view of dc1 fell to %d endpoints during the takeover", low)
	}
	if seg.Epoch() <= epoch {
		t.Fatalf("the new leader kept epoch %d", seg.Epoch())
	}
	if v := metric(t, b.d.Metrics, "meridian_federation_follower_segment_writes_total"); v != 0 {
		t.Fatalf("stray writes: %v", v)
	}
	t.Logf("leader killed; the follower led %v later, with every one of %d endpoints throughout", took.Round(time.Millisecond), want)
}

// notLeaderAnswer returns the leader an Unavailable answer names, "" for
// any other answer.
func notLeaderAnswer(err error) string {
	st, _ := status.FromError(err)
	if st.Code() != codes.Unavailable {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == workload.ReasonNotLeader {
			return info.GetMetadata()["leader"]
		}
	}
	return ""
}

// kubeObjects creates Service shop/web with two ready endpoints.
func kubeObjects(t *testing.T, kc kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	if _, err := kc.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	putSlice(t, kc, "10.1.0.10", "10.1.0.11")
}

// putSlice makes shop/web's one EndpointSlice list these ready addresses,
// as the EndpointSlice controller would (none runs here).
func putSlice(t *testing.T, kc kubernetes.Interface, addrs ...string) {
	t.Helper()
	ctx := context.Background()
	name, port, ready := "http", int32(8080), true
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	old, err := kc.DiscoveryV1().EndpointSlices("shop").Get(ctx, s.Name, metav1.GetOptions{})
	if err == nil {
		s.ResourceVersion = old.ResourceVersion
		_, err = kc.DiscoveryV1().EndpointSlices("shop").Update(ctx, s, metav1.UpdateOptions{})
	} else {
		_, err = kc.DiscoveryV1().EndpointSlices("shop").Create(ctx, s, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}
