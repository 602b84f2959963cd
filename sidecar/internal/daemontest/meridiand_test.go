package daemontest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/cmd/meridianctl/cli"
	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/internal/proxytest"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar/internal/cptest"
)

func ctl(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := cli.Execute(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("meridianctl %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	}
	return out.String()
}

// startMeridiand runs meridiand in-process on free loopback ports and
// waits until it is ready.
func startMeridiand(t *testing.T, opts ...func(*daemon.Config)) *daemon.Daemon {
	cfg := daemon.DefaultConfig()
	cfg.Cluster = registry.Cluster{Name: "onprem-dc1", Region: "onprem-east", Network: "dc1"}
	cfg.DataDir = t.TempDir()
	cfg.GRPCAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	for _, o := range opts {
		o(&cfg)
	}
	d, err := daemon.New(context.Background(), cfg, daemon.WithLogger(cptest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("meridiand: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("meridiand did not stop within 30s")
		}
	})
	testutil.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Get("http://" + d.AdminAddr() + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("/readyz: %d", resp.StatusCode)
		}
		return nil
	})
	return d
}

const canary = `
apiVersion: meridian.io/v1alpha1
kind: DestinationPolicy
metadata: {name: web, namespace: shop}
spec:
  host: web
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: meridian.io/v1alpha1
kind: TrafficRoute
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http:
  - name: header-ab
    match:
    - headers: [{name: x-canary, exact: "1"}]
    route: [{host: web, subset: v2}]
  - name: split
    route:
    - {host: web, subset: v1, weight: 80}
    - {host: web, subset: v2, weight: 20}
`

// TestThroughMeridiand: two versions of a service registered with a real
// meridiand through meridianctl's Workload API commands, a TrafficRoute
// applied with meridianctl apply, and a meridian-proxy started from its
// flags: the proxy follows the header A/B rule and the 80/20 split, and
// meridiand's XDSAdmin reports every resource type ACKed.
func TestThroughMeridiand(t *testing.T) {
	d := startMeridiand(t)
	srv := d.GRPCAddr()
	for _, v := range []string{"v1", "v2"} {
		ctl(t, "workload", "register", "--server", srv, "--service", "web", "--namespace", "shop",
			"--address", proxytest.App(t, v), "--locality", "onprem-east/rack1", "--protocol", "http", "--label", "version="+v, "--ttl", "1h")
	}
	policies := filepath.Join(t.TempDir(), "canary.yaml")
	if err := os.WriteFile(policies, []byte(canary), 0o600); err != nil {
		t.Fatal(err)
	}
	ctl(t, "apply", "-f", policies, "--server", srv)

	// The service's port is its lowest registered one; the proxy is told
	// the host only and finds the port from the registry's answer.
	port := registeredPort(t, d)
	up := testutil.FreeAddr(t).String()
	proxytest.Start(t, cptest.Logger(t), "--xds-address", srv, "--id", "client-1.shop", "--cluster", "onprem-dc1", "--namespace", "shop",
		"--service-account", "client", "--locality", "onprem-east/rack1",
		"--upstream", fmt.Sprintf("%s=web.shop.svc.cluster.local:%d", up, port),
		"--admin-address=", "--metrics-address=", "--health-address=", "--access-log", "off")

	// meridiand may first answer from the registry as it was before the
	// registrations (its pushes are debounced): until the service's port
	// is known, a connection to it is passed through to its original
	// destination (here, the app on that port), and a kept-alive one
	// would stay there. So: fresh connections until the route answers,
	// then kept-alive ones.
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	c := &http.Client{Timeout: 5 * time.Second}
	answer := func(c *http.Client, hdr ...string) string {
		req, _ := http.NewRequest("GET", "http://"+up+"/", nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Sprint(resp.StatusCode)
		}
		return resp.Header.Get("X-Backend")
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		for range 10 {
			if got := answer(fresh, "X-Canary", "1"); got != "v2" {
				return fmt.Errorf("x-canary: 1 answered by %s, want v2", got)
			}
		}
		return nil
	})
	got := map[string]int{}
	for range 1000 {
		got[answer(c)]++
	}
	if share := float64(got["v2"]) / 10; math.Abs(share-20) > 4 {
		t.Fatalf("split: %v (v2 %.1f%%), want 20%% ± 4", got, share)
	}

	out := ctl(t, "proxy-config", "client-1.shop", "--server", srv)
	for _, typ := range []string{"LDS", "CDS", "RDS", "EDS"} {
		if !strings.Contains(out, typ+" ") {
			t.Errorf("proxy-config lacks %s:\n%s", typ, out)
		}
	}
	if strings.Contains(out, "NACK") || strings.Contains(out, "awaiting") || !strings.Contains(out, "ACKed version") {
		t.Errorf("meridiand does not see every type ACKed:\n%s", out)
	}
}

func registeredPort(t *testing.T, d *daemon.Daemon) uint32 {
	var port uint32
	testutil.Eventually(t, 10*time.Second, func() error {
		v := d.Registry.View()
		k := registry.ServiceKey{Namespace: "shop", Name: "web"}
		if s, ok := v.Service(k); ok && len(s.Ports) == 1 && len(v.Endpoints(k)) == 2 {
			port = s.Ports[0].Port
			return nil
		}
		return fmt.Errorf("web.shop and its two workloads not in the registry")
	})
	return port
}
