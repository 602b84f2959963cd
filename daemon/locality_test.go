package daemon_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meridian-mesh/meridian/cmd/meridianctl/cli"
	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/internal/xdstest"
	"github.com/meridian-mesh/meridian/registry"
)

// TestMeridianctlProcess is not a test: it is meridianctl, run as a
// process of its own by tests (this test binary again, with
// MERIDIANCTL_ARGS), so that killing it kills the CLI and nothing else. As
// a test it does nothing.
func TestMeridianctlProcess(t *testing.T) {
	args := os.Getenv("MERIDIANCTL_ARGS")
	if args == "" {
		return
	}
	var a []string
	if err := json.Unmarshal([]byte(args), &a); err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, a, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// testLog is where a test's meridiands log: the test's output, until the
// test's cleanups run. memberlist's probe and suspicion timers can still
// log a moment after a member stopped, and the test's output refuses
// writes once the test is over.
func testLog(t *testing.T) io.Writer {
	w := &detachable{out: t.Output()}
	t.Cleanup(w.detach)
	return w
}

type detachable struct {
	mu  sync.Mutex
	out io.Writer
}

func (w *detachable) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.out == nil {
		return len(p), nil
	}
	return w.out.Write(p)
}

func (w *detachable) detach() {
	w.mu.Lock()
	w.out = nil
	w.mu.Unlock()
}

// mesh is the lab of DESIGN.md in one process: three meridiands, each
// with its embedded etcd, federated over loopback.
type mesh struct {
	t        *testing.T
	clusters map[string]*running
}

var labClusters = []registry.Cluster{
	{Name: "onprem-dc1", Region: "onprem-east", Labels: map[string]string{"jurisdiction": "us"}},
	{Name: "eks-use1", Region: "us-east-1", Labels: map[string]string{"jurisdiction": "us"}},
	{Name: "eks-euw1", Region: "eu-west-1", Labels: map[string]string{"jurisdiction": "eu"}},
}

func startMesh(t *testing.T) *mesh {
	t.Helper()
	m := &mesh{t: t, clusters: map[string]*running{}}
	var seed string
	for _, c := range labClusters {
		r := startDaemon(t, t.TempDir(), func(cfg *daemon.Config) {
			cfg.Cluster = c
			cfg.Federation = daemon.Federation{Enabled: true, Replica: "r0", GossipAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0",
				Insecure: true, Preset: "local"}
			if seed != "" {
				cfg.Federation.Seeds = []string{seed}
			}
			// Short, so that a killed meridianctl's drill ends soon; not
			// the shortest (2s): a loaded machine stalls etcd that long.
			cfg.Policy.DrillLeaseTTL.Duration = 4 * time.Second
		})
		if seed == "" {
			seed = r.d.Federation.GossipAddr()
		}
		m.clusters[c.Name] = r
	}
	return m
}

func (m *mesh) server(cluster string) string { return m.clusters[cluster].d.GRPCAddr() }

// backend starts a gRPC backend and registers it with a cluster's
// meridiand.
func (m *mesh) backend(cluster, service, name, locality string) *xdstest.Backend {
	m.t.Helper()
	b := xdstest.StartBackend(m.t, name)
	register(m.t, m.server(cluster), service, b.Addr, locality)
	return b
}

// everywhere waits until every meridiand sees n endpoints of a service.
func (m *mesh) everywhere(service string, n int) {
	m.t.Helper()
	k := registry.ServiceKey{Namespace: "shop", Name: service}
	testutil.Eventually(m.t, 30*time.Second, func() error {
		for name, r := range m.clusters {
			if got := len(r.d.Registry.View().Endpoints(k)); got != n {
				return fmt.Errorf("%s sees %d endpoints of %s, want %d", name, got, k, n)
			}
		}
		return nil
	})
}

// client is a grpc-go xDS client in us-east-1/use1-az1, bootstrapped at
// eks-use1's meridiand.
func (m *mesh) client(service string) testgrpc.TestServiceClient {
	m.t.Helper()
	def, ok := m.clusters["eks-use1"].d.Registry.View().Service(registry.ServiceKey{Namespace: "shop", Name: service})
	if !ok {
		m.t.Fatalf("no definition of %s", service)
	}
	target := fmt.Sprintf("xds:///%s.shop.svc.cluster.local:%d", service, def.Ports[0].Port)
	return xdstest.Client(m.t, m.server("eks-use1"), target, map[string]any{
		"id":       "client-" + service,
		"locality": map[string]any{"region": "us-east-1", "zone": "use1-az1"},
		"metadata": map[string]any{"cluster": "eks-use1", "namespace": "shop"},
	})
}

// only waits until 200 RPCs in a row are all answered by want: the
// control plane's push may take a moment to reach the client.
func only(t *testing.T, c testgrpc.TestServiceClient, want string) map[string]int {
	t.Helper()
	var got map[string]int
	testutil.Eventually(t, 30*time.Second, func() error {
		if got = xdstest.Answers(c, 200, true); got[want] != 200 {
			return fmt.Errorf("200 RPCs: %v, want all from %s", got, want)
		}
		return nil
	})
	return got
}

func (m *mesh) apply(server, policies string) {
	m.t.Helper()
	code, out, errOut := ctl("apply", "-f", writePolicies(m.t, "policies.yaml", policies), "--server", server)
	if code != 0 {
		m.t.Fatalf("apply: %s%s", out, errOut)
	}
}

// Locality through three federated meridiands and grpc-go's own xDS
// client: a zone failure moves traffic to the next zone of the region, a
// region failure follows the FailoverPolicy's order (and a new order,
// applied through another cluster, takes over), an EU-resident service
// with every EU endpoint down fails every call and never reaches its US
// endpoint, and live drills drain a region and restore it when they end —
// also when the meridianctl running them is killed.
func TestLocalityThroughXDS(t *testing.T) {
	m := startMesh(t)
	web := map[string]*xdstest.Backend{
		"u1": m.backend("eks-use1", "web", "u1", "us-east-1/use1-az1"),
		"u2": m.backend("eks-use1", "web", "u2", "us-east-1/use1-az2"),
		"o1": m.backend("onprem-dc1", "web", "o1", "onprem-east/dc1-a"),
		"e1": m.backend("eks-euw1", "web", "e1", "eu-west-1/euw1-az1"),
	}
	records := map[string]*xdstest.Backend{
		"cr-e1": m.backend("eks-euw1", "customer-records", "cr-e1", "eu-west-1/euw1-az1"),
		"cr-e2": m.backend("eks-euw1", "customer-records", "cr-e2", "eu-west-1/euw1-az2"),
	}
	m.backend("eks-use1", "catalog", "c-u1", "us-east-1/use1-az1")
	m.backend("onprem-dc1", "catalog", "c-o1", "onprem-east/dc1-a")
	m.backend("eks-euw1", "catalog", "c-e1", "eu-west-1/euw1-az1")
	m.everywhere("web", 4)
	m.everywhere("customer-records", 2)
	m.everywhere("catalog", 3)
	// Applied through the EU cluster; the US cluster's xDS serves it.
	m.apply(m.server("eks-euw1"), labPolicies)
	testutil.Eventually(t, 30*time.Second, func() error {
		code, out, _ := ctl("explain", "web.shop", "--from", "eks-use1", "--server", m.server("eks-use1"))
		if code != 0 || !strings.Contains(out, "FailoverPolicy shop/shop") {
			return fmt.Errorf("the policies have not reached eks-use1: %s", out)
		}
		return nil
	})
	// The US endpoint of the EU-resident service comes after its rule is
	// in force here (explain sees the engine only once the xDS server was
	// handed it): it must never be offered to anyone.
	records["cr-u1"] = m.backend("eks-use1", "customer-records", "cr-u1", "us-east-1/use1-az1")
	m.everywhere("customer-records", 3)

	t.Run("zone failure", func(t *testing.T) {
		c := m.client("web")
		only(t, c, "u1")
		web["u1"].Stop()
		got := only(t, c, "u2")
		t.Logf("use1-az1 down: %v", got)
	})
	t.Run("region failure follows the failover order", func(t *testing.T) {
		c := m.client("web")
		web["u2"].Stop()
		before := web["e1"].Calls()
		got := only(t, c, "o1") // choice 1 for clients in us-east-1
		t.Logf("us-east-1 down: %v (eu-west-1, choice 2, got %d RPCs while the push reached the client)", got, web["e1"].Calls()-before)
		m.apply(m.server("onprem-dc1"), strings.Replace(labPolicies, "[onprem-east, eu-west-1]", "[eu-west-1, onprem-east]", 1))
		got = only(t, c, "e1")
		t.Logf("order changed to eu-west-1 first: %v", got)
	})
	t.Run("residency holds when every EU endpoint is down", func(t *testing.T) {
		c := m.client("customer-records")
		testutil.Eventually(t, 30*time.Second, func() error {
			if got := xdstest.Answers(c, 20, true); got["cr-e1"]+got["cr-e2"] != 20 {
				return fmt.Errorf("answers %v, want all from the EU", got)
			}
			return nil
		})
		got := xdstest.Answers(c, 200, true)
		t.Logf("EU up: %v", got)
		records["cr-e1"].Stop()
		records["cr-e2"].Stop()
		// The proxies find the EU endpoints unreachable...
		testutil.Eventually(t, 30*time.Second, func() error {
			if got := xdstest.Answers(c, 20, false); got["Unavailable"] != 20 {
				return fmt.Errorf("answers %v, want every RPC UNAVAILABLE", got)
			}
			return nil
		})
		got = xdstest.Answers(c, 200, false)
		t.Logf("EU endpoints down: %v", got)
		if got["Unavailable"] != 200 {
			t.Fatalf("200 RPCs with every EU endpoint down: %v, want all UNAVAILABLE", got)
		}
		// ...and then the control plane forgets them too.
		for _, b := range []string{"cr-e1", "cr-e2"} {
			code, _, errOut := ctl("workload", "deregister", "--server", m.server("eks-euw1"), "--service", "customer-records",
				"--namespace", "shop", "--address", records[b].Addr)
			if code != 0 {
				t.Fatal(errOut)
			}
		}
		m.everywhere("customer-records", 1)
		got = xdstest.Answers(c, 200, false)
		t.Logf("EU endpoints gone: %v", got)
		if got["Unavailable"] != 200 {
			t.Fatalf("200 RPCs with no EU endpoint left: %v, want all UNAVAILABLE", got)
		}
		if n := records["cr-u1"].Calls(); n != 0 {
			t.Fatalf("the US endpoint of an EU-resident service got %d RPCs", n)
		}
	})
	t.Run("live drill", func(t *testing.T) {
		c := m.client("catalog")
		only(t, c, "c-u1")
		// Started through the EU cluster: the drill replicates to eks-use1,
		// whose client moves.
		var out, errOut strings.Builder
		var wg sync.WaitGroup
		wg.Add(1)
		code := -1
		go func() {
			defer wg.Done()
			code = cli.Execute(context.Background(), []string{"drill", "region", "us-east-1", "--live", "--duration", "6s", "--server", m.server("eks-euw1")},
				&out, &errOut)
		}()
		got := only(t, c, "c-e1") // choice 1 since the order changed
		t.Logf("during the drill: %v", got)
		wg.Wait()
		t.Logf("meridianctl drill --live:\n%s", out.String())
		if code != 0 || !strings.Contains(out.String(), "drain in force") || !strings.Contains(out.String(), "drill ended: duration reached") ||
			!strings.Contains(out.String(), "drain lifted: target restored") || !strings.Contains(out.String(), "catalog.shop from us-east-1/use1-az1: eu-west-1/euw1-az1 100%") {
			t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
		}
		got = only(t, c, "c-u1")
		t.Logf("after the drill: %v", got)
	})
	t.Run("live drill ends when meridianctl is killed", func(t *testing.T) {
		c := m.client("catalog")
		args, _ := json.Marshal([]string{"drill", "region", "us-east-1", "--live", "--duration", "10m", "--server", m.server("eks-euw1")})
		cmd := exec.Command(os.Args[0], "-test.run=^TestMeridianctlProcess$")
		cmd.Env = append(os.Environ(), "MERIDIANCTL_ARGS="+string(args))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = t.Output()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		lines := bufio.NewScanner(stdout)
		for lines.Scan() && !strings.Contains(lines.Text(), "drain in force") {
			t.Log(lines.Text())
		}
		go func() { // keep the pipe drained
			for lines.Scan() {
			}
		}()
		only(t, c, "c-e1")
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		only(t, c, "c-u1")
		t.Logf("traffic back in us-east-1 %v after meridianctl was killed (lease TTL 4s)", time.Since(killed).Round(100*time.Millisecond))
		code, out, _ := ctl("drill", "list", "--server", m.server("eks-use1"))
		if code != 0 || out != "" {
			t.Fatalf("drill list after the lease ran out: %d %q", code, out)
		}
	})
}
