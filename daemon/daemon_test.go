package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/cmd/meridianctl/cli"
	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
)

type running struct {
	d    *daemon.Daemon
	stop func() error
}

// startDaemon runs a meridiand in-process on free loopback ports.
func startDaemon(t *testing.T, dataDir string, edits ...func(*daemon.Config)) *running {
	t.Helper()
	cfg := daemon.DefaultConfig()
	cfg.Cluster = registry.Cluster{Name: "onprem-dc1", Region: "onprem-east", Network: "dc1", Labels: map[string]string{"provider": "onprem"}}
	cfg.DataDir = dataDir
	cfg.GRPCAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	for _, edit := range edits {
		edit(&cfg)
	}
	d, err := daemon.New(context.Background(), cfg, daemon.WithLogger(slog.New(slog.NewTextHandler(testLog(t), nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	r := &running{d: d}
	var once sync.Once
	var stopErr error
	r.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(30 * time.Second):
				stopErr = fmt.Errorf("Run did not return 30s after its context ended")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { _ = r.stop() })
	return r
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func ctl(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = cli.Execute(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// ours returns the stacks of goroutines, other than the caller's, that run
// code whose path contains one of marks (default: this project's code or an
// etcd server): after a clean stop there are none.
func ours(marks ...string) []string {
	if len(marks) == 0 {
		marks = []string{"meridian-mesh/meridian/", "go.etcd.io/etcd/server"}
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 { // the caller
			continue
		}
		for _, m := range marks {
			if strings.Contains(g, m) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

func TestMeridiand(t *testing.T) {
	dataDir := t.TempDir()
	m := startDaemon(t, dataDir)
	admin, server := "http://"+m.d.AdminAddr(), m.d.GRPCAddr()

	if code, body := get(t, admin+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if code, body := get(t, admin+"/readyz?verbose"); code != 200 || !strings.Contains(body, "[+]etcd ok") {
			return fmt.Errorf("/readyz: %d %q", code, body)
		}
		return nil
	})

	// Register through meridianctl's own code path.
	code, out, errOut := ctl("workload", "register", "--server", server, "--service", "web", "--namespace", "shop",
		"--address", "10.0.0.5:8080", "--locality", "onprem-east/rack1", "--port-name", "http", "--protocol", "http",
		"--label", "version=v2")
	if code != 0 {
		t.Fatalf("register: exit %d: %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	if !strings.HasPrefix(id, "web-") {
		t.Fatalf("register printed %q, want the ID", out)
	}

	var dump daemon.RegistryDump
	code, body := get(t, admin+"/debug/registry?service=web.shop")
	if err := json.Unmarshal([]byte(body), &dump); code != 200 || err != nil {
		t.Fatalf("/debug/registry: %d %v %s", code, err, body)
	}
	if len(dump.Clusters) != 1 || dump.Clusters[0].Name != "onprem-dc1" || dump.Clusters[0].Labels["provider"] != "onprem" || dump.Clusters[0].EndpointCount != 1 {
		t.Fatalf("clusters: %+v", dump.Clusters)
	}
	if len(dump.Services) != 1 || len(dump.Services[0].Endpoints) != 1 {
		t.Fatalf("services: %+v", dump.Services)
	}
	svc, ep := dump.Services[0], dump.Services[0].Endpoints[0]
	if svc.Name != "web" || svc.DefinedIn[0] != "onprem-dc1" || svc.Ports[0].Protocol != registry.ProtocolHTTP ||
		ep.ID != id || ep.Cluster != "onprem-dc1" || ep.Address() != "10.0.0.5" || ep.Labels["version"] != "v2" ||
		ep.EffectiveHealth != registry.Healthy || ep.Locality.Zone != "rack1" {
		t.Fatalf("service %+v, endpoint %+v", svc, ep.Endpoint)
	}
	// Filters narrow the dump, and bad ones are refused naming the parameter.
	get(t, admin+"/debug/registry?service=other.shop")
	if _, body := get(t, admin+"/debug/registry?namespace=other"); !strings.Contains(body, `"services": []`) {
		t.Fatalf("namespace filter: %s", body)
	}
	if code, body := get(t, admin+"/debug/registry?service=web"); code != 400 || !strings.Contains(body, "service: Invalid value") {
		t.Fatalf("bad filter: %d %s", code, body)
	}
	if code, body := get(t, admin+"/debug/registry?colour=red"); code != 400 || !strings.Contains(body, "colour") {
		t.Fatalf("unknown filter: %d %s", code, body)
	}

	code, body = get(t, admin+"/metrics")
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total", `meridian_workload_registrations_total{outcome="created"} 1`, `meridian_workloads{health="healthy"} 1`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}

	// Bad input through the CLI: one line naming the field, and a hint.
	code, _, errOut = ctl("workload", "register", "--server", server, "--service", "web", "--namespace", "shop",
		"--address", "10.0.0.5:0", "--locality", "onprem-east")
	if code == 0 || !strings.HasPrefix(errOut, "Error: rejected: address: ") || !strings.Contains(errOut, "\nHint: fix --address\n") || strings.Count(errOut, "\n") != 2 {
		t.Fatalf("bad address: exit %d, %q", code, errOut)
	}
	code, out, _ = ctl("workload", "list", "--server", server, "-o", "json")
	if code != 0 || !strings.Contains(out, `"id": "`+id+`"`) || !strings.Contains(out, `"health": "HEALTHY"`) {
		t.Fatalf("list -o json: exit %d, %s", code, out)
	}

	// SIGTERM: Run returns nil and leaves nothing behind.
	if len(ours()) == 0 {
		t.Fatal("the leak check sees no goroutine of the running daemon")
	}
	if err := m.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := http.Get(admin + "/healthz"); err == nil {
		t.Fatal("the admin server still answers after the stop")
	}
	http.DefaultClient.CloseIdleConnections()
	testutil.Eventually(t, 10*time.Second, func() error {
		if g := ours(); len(g) > 0 {
			return fmt.Errorf("%d goroutines left, the first:\n%s", len(g), g[0])
		}
		return nil
	})

	// A restart on the same data dir keeps the registration.
	m = startDaemon(t, dataDir)
	testutil.Eventually(t, 10*time.Second, func() error {
		if code, body := get(t, "http://"+m.d.AdminAddr()+"/readyz"); code != 200 {
			return fmt.Errorf("/readyz: %d %s", code, body)
		}
		return nil
	})
	code, body = get(t, "http://"+m.d.AdminAddr()+"/debug/registry?service=web.shop")
	if code != 200 || !strings.Contains(body, `"id": "`+id+`"`) {
		t.Fatalf("after a restart: %d %s", code, body)
	}
	code, out, errOut = ctl("workload", "deregister", "--server", m.d.GRPCAddr(), "--service", "web", "--namespace", "shop", "--address", "10.0.0.5:8080")
	if code != 0 || !strings.Contains(out, id) {
		t.Fatalf("deregister by address: exit %d, %s%s", code, out, errOut)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := daemon.DefaultConfig()
	cfg.Cluster = registry.Cluster{Name: "c1"}
	_, err := daemon.New(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "cluster.region (--region): Required value") {
		t.Fatalf("no region: %v", err)
	}
}

func TestPortInUse(t *testing.T) {
	m := startDaemon(t, t.TempDir())
	cfg := daemon.DefaultConfig()
	cfg.Cluster = registry.Cluster{Name: "c2", Region: "r"}
	cfg.DataDir, cfg.GRPCAddr, cfg.AdminAddr = t.TempDir(), m.d.GRPCAddr(), "127.0.0.1:0"
	_, err := daemon.New(context.Background(), cfg, daemon.WithLogger(slog.New(slog.DiscardHandler)))
	if err == nil || !strings.Contains(err.Error(), "grpcAddr") {
		t.Fatalf("port in use: %v", err)
	}
}
