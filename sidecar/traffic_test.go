package sidecar_test

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// trafficMesh is one HTTP service "web" with versioned endpoints behind a
// sidecar's explicit upstream port, served by xds/server with policies.
type trafficMesh struct {
	*mesh
	up       netip.AddrPort
	px       *proxy
	backends map[string]*backend
	c        *http.Client
}

func newTrafficMesh(t *testing.T, policies string, versions ...string) *trafficMesh {
	t.Helper()
	m := &trafficMesh{mesh: newMesh(t), backends: map[string]*backend{}, c: &http.Client{Timeout: 10 * time.Second}}
	m.service("web", 80, registry.ProtocolHTTP)
	for _, v := range versions {
		b := startBackend(t, v)
		m.backends[v] = b
		m.endpoint("web", v, b.addr, "z1", map[string]string{"version": label(v)})
	}
	if policies != "" {
		m.policies(policies)
	}
	m.up = testutil.FreeAddr(t)
	m.px = startProxy(t, m.xds.Addr, sidecar.Config{Upstreams: []sidecar.Upstream{{Listen: m.up, Host: host("web"), Port: 80}}})
	return m
}

// label is a backend name's version label: "v1" for "v1", "v2" for "v2-b".
func label(name string) string {
	v, _, _ := strings.Cut(name, "-")
	return v
}

func (m *trafficMesh) url(path string) string { return "http://" + m.up.String() + path }

// answers sends n requests and counts the answering backends (or the
// status code of failures).
func (m *trafficMesh) answers(n int, path string, hdr ...string) map[string]int {
	m.t.Helper()
	out := map[string]int{}
	for range n {
		code, _, h := get(m.t, m.c, m.url(path), hdr...)
		if code == 200 {
			out[h.Get("X-Backend")]++
		} else {
			out[fmt.Sprint(code)]++
		}
	}
	return out
}

// waitRouted waits until the proxy runs the policies: check passes.
func (m *trafficMesh) waitRouted(check func() error) {
	m.t.Helper()
	testutil.Eventually(m.t, 10*time.Second, check)
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
  - name: exact
    match: [{path: {exact: /exact}}]
    route: [{host: web, subset: v2}]
  - name: regex
    match: [{path: {regex: "/r/[0-9]+"}}]
    route: [{host: web, subset: v2}]
  - name: prefix
    match: [{path: {prefix: /v1/}}]
    route: [{host: web, subset: v1}]
  - name: split
    route:
    - {host: web, subset: v1, weight: 80}
    - {host: web, subset: v2, weight: 20}
`

// TestRouteMatchesAndSplit: header A/B, exact, regex and prefix path
// matches, and an 80/20 weighted split across versions, from a
// TrafficRoute through xds/server.
func TestRouteMatchesAndSplit(t *testing.T) {
	m := newTrafficMesh(t, canary, "v1", "v2")
	// Before the policies, v2 answers some requests anyway: wait for a
	// run only the route explains.
	m.waitRouted(func() error {
		if got := m.answers(10, "/", "X-Canary", "1"); got["v2"] != 10 {
			return fmt.Errorf("x-canary: %v", got)
		}
		return nil
	})
	for _, tc := range []struct {
		path string
		hdr  []string
		want string
	}{
		{"/anything", []string{"X-Canary", "1"}, "v2"},
		{"/exact", nil, "v2"},
		{"/r/123", nil, "v2"},
		{"/v1/page", nil, "v1"},
	} {
		if got := m.answers(20, tc.path, tc.hdr...); got[tc.want] != 20 {
			t.Errorf("%s %v: %v, want all on %s", tc.path, tc.hdr, got, tc.want)
		}
	}
	got := m.answers(1000, "/split")
	share := 100 * float64(got["v2"]) / 1000
	if math.Abs(share-20) > 4 {
		t.Fatalf("split: %v (v2 %.1f%%), want 20%% ± 4", got, share)
	}
}

// TestMirror: every request is mirrored to v2, whose answers are
// discarded; the client only ever sees v1.
func TestMirror(t *testing.T) {
	m := newTrafficMesh(t, `
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
  - route: [{host: web, subset: v1}]
    mirror: {host: web, subset: v2, percent: 100}
`, "v1", "v2")
	m.backends["v2"].status.Store(500) // a failing mirror must not matter
	m.waitRouted(func() error {
		if m.backends["v2"].hits.Load() == 0 {
			m.answers(1, "/")
			return fmt.Errorf("the mirror got nothing yet")
		}
		return nil
	})
	before := m.backends["v2"].hits.Load()
	if got := m.answers(50, "/m"); got["v1"] != 50 {
		t.Fatalf("answers: %v, want all from v1", got)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := m.backends["v2"].hits.Load() - before; n < 50 {
			return fmt.Errorf("mirror got %d of 50", n)
		}
		return nil
	})
}

// TestFaults: an abort for every request of one route, a delay for
// every request of another.
func TestFaults(t *testing.T) {
	m := newTrafficMesh(t, `
apiVersion: meridian.io/v1alpha1
kind: TrafficRoute
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http:
  - match: [{path: {prefix: /abort}}]
    route: [{host: web}]
    fault: {abort: {status: 418, percent: 100}}
  - match: [{path: {prefix: /slow}}]
    route: [{host: web}]
    fault: {delay: {delay: 200ms, percent: 100}}
  - match: [{path: {prefix: /half}}]
    route: [{host: web}]
    fault: {abort: {status: 503, percent: 50}}
  - route: [{host: web}]
`, "v1")
	m.waitRouted(func() error {
		if got := m.answers(1, "/abort"); got["418"] != 1 {
			return fmt.Errorf("abort: %v", got)
		}
		return nil
	})
	start := time.Now()
	if got := m.answers(3, "/slow"); got["v1"] != 3 || time.Since(start) < 600*time.Millisecond {
		t.Fatalf("delay: %v in %v, want 3 answers, each 200ms late", got, time.Since(start))
	}
	got := m.answers(400, "/half")
	if f := float64(got["503"]) / 4; math.Abs(f-50) > 10 {
		t.Fatalf("50%% abort: %v", got)
	}
	if v := m.px.metric(t, "meridian_requests_total", "response_flags", "FI"); v < 100 {
		t.Fatalf("fault-injected requests counted: %v", v)
	}
}

// TestRetriesAndTimeouts: retries on 5xx reach the good endpoint; a
// per-try timeout moves a slow attempt to another endpoint; the route
// timeout answers 504.
func TestRetriesAndTimeouts(t *testing.T) {
	m := newTrafficMesh(t, noEjection+`---
apiVersion: meridian.io/v1alpha1
kind: TrafficRoute
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http:
  - match: [{path: {prefix: /timeout}}]
    route: [{host: web}]
    timeout: 300ms
  - route: [{host: web}]
    timeout: 5s
    retries: {attempts: 3, perTryTimeout: 200ms, retryOn: [5xx, reset, connect-failure]}
`, "good", "bad")
	// The endpoint fails only once the policies are in the proxy: under a
	// configuration from before them, outlier detection ejects it (for
	// 30 s) and no request is ever retried.
	m.waitRouted(func() error {
		st := m.px.Client().State()
		retries := false
		st.Each(xdsclient.RouteType, func(_ string, r xdsclient.Resource) {
			for _, vh := range r.(*xdsconfig.RouteConfig).VirtualHosts {
				for _, rt := range vh.Routes {
					retries = retries || rt.Retry != nil
				}
			}
		})
		outlier := false // ejecting on 5xx or gateway errors
		st.Each(xdsclient.ClusterType, func(_ string, r xdsclient.Resource) {
			if c := r.(*xdsconfig.Cluster); strings.Contains(c.Name, host("web")) && c.Outlier != nil {
				outlier = outlier || c.Outlier.Enforcing5xx > 0 || c.Outlier.EnforcingGateway > 0
			}
		})
		if !retries || outlier {
			return fmt.Errorf("policies not in the proxy yet: a route with retries %v, outlier detection %v", retries, outlier)
		}
		return nil
	})
	m.backends["bad"].status.Store(503)
	m.waitRouted(func() error {
		if got := m.answers(20, "/r"); got["good"] != 20 {
			return fmt.Errorf("with retries: %v", got)
		}
		return nil
	})
	if v := m.px.metric(t, "meridian_proxy_upstream_retries_total"); v == 0 {
		t.Fatal("no retry counted")
	}
	// A slow endpoint: the per-try timeout moves on.
	m.backends["bad"].status.Store(0)
	m.backends["bad"].delay.Store(int64(3 * time.Second))
	start := time.Now()
	if got := m.answers(10, "/r"); got["good"] != 10 {
		t.Fatalf("per-try timeout: %v", got)
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Fatalf("10 requests took %v: the per-try timeout did not cut the slow attempts", el)
	}
	// The route timeout: every endpoint is slow.
	m.backends["good"].delay.Store(int64(3 * time.Second))
	start = time.Now()
	code, body, _ := get(t, m.c, m.url("/timeout"))
	if code != http.StatusGatewayTimeout || time.Since(start) > 2*time.Second {
		t.Fatalf("route timeout: %d %q after %v", code, body, time.Since(start))
	}
}

// TestCircuitBreakers: with one connection and one pending request
// allowed, a burst of slow requests overflows: 503 with
// x-envoy-overloaded, counted by breaker.
func TestCircuitBreakers(t *testing.T) {
	m := newTrafficMesh(t, `
apiVersion: meridian.io/v1alpha1
kind: DestinationPolicy
metadata: {name: web, namespace: shop}
spec:
  host: web
  connectionPool: {maxConnections: 1, maxPendingRequests: 1, maxRequests: 10}
`, "v1")
	m.waitRouted(func() error {
		c := m.px.Dataplane().Cluster("outbound|80||" + host("web"))
		if c == nil || c.Config().Breakers.MaxConnections != 1 {
			return fmt.Errorf("breakers not applied yet")
		}
		return nil
	})
	m.backends["v1"].delay.Store(int64(300 * time.Millisecond))
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	overloaded := 0
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, h := get(t, m.c, m.url("/burst"))
			mu.Lock()
			codes[code]++
			if h.Get("X-Envoy-Overloaded") == "true" {
				overloaded++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[503] == 0 || codes[200] == 0 || overloaded != codes[503] {
		t.Fatalf("codes %v, overloaded %d: want both answers and overflows", codes, overloaded)
	}
	if v := m.px.metric(t, "meridian_proxy_upstream_overflow_total", "breaker", "pending"); v == 0 {
		t.Fatal("pending overflow not counted")
	}
}

// TestOutlierEjection: an endpoint answering 500 is ejected after the
// configured consecutive errors; traffic then goes to the healthy one.
func TestOutlierEjection(t *testing.T) {
	m := newTrafficMesh(t, `
apiVersion: meridian.io/v1alpha1
kind: FailoverPolicy
metadata: {name: web, namespace: shop}
spec:
  selector: {services: [web]}
  outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50}
`, "good", "bad")
	m.backends["bad"].status.Store(500)
	m.waitRouted(func() error {
		m.answers(10, "/o")
		if v := m.px.metric(t, "meridian_proxy_outlier_ejections_total"); v < 1 {
			return fmt.Errorf("no ejection yet")
		}
		return nil
	})
	if got := m.answers(50, "/o"); got["good"] != 50 {
		t.Fatalf("after the ejection: %v", got)
	}
}

// TestForwardedHeaders: what a sidecar passes on of a request's and a
// response's headers, edited in place: hop-by-hop headers (the standard
// ones and those Connection names) dropped both ways, "TE: trailers"
// kept, the client's X-Forwarded-For kept as it came, X-Forwarded-Proto
// set when absent, Forwarded and X-Forwarded-Host dropped, a request id
// added; every value of a repeated response header returned.
func TestForwardedHeaders(t *testing.T) {
	m := newMesh(t)
	m.service("echo", 80, registry.ProtocolHTTP)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "Forwarded", "X-Forwarded-Host", "X-Hop", "Te", "X-Keep", "X-Request-Id"} {
			w.Header().Set("Got-"+k, strings.Join(r.Header.Values(k), "|"))
		}
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.Header().Set("Connection", "X-Back-Hop")
		w.Header().Set("X-Back-Hop", "1")
		io.WriteString(w, "ok")
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	m.endpoint("echo", "e1", netip.MustParseAddrPort(ln.Addr().String()), "z1", nil)
	up := testutil.FreeAddr(t)
	startProxy(t, m.xds.Addr, sidecar.Config{Upstreams: []sidecar.Upstream{{Listen: up, Host: host("echo"), Port: 80}}})
	eventually2xx(t, &http.Client{Timeout: 5 * time.Second}, "http://"+up.String()+"/")

	// Written by hand: net/http's client would not send all of these.
	c, err := net.Dial("tcp", up.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: echo\r\nConnection: X-Hop\r\nX-Hop: 1\r\nTE: trailers\r\n"+
		"X-Forwarded-For: 198.51.100.7\r\nForwarded: for=192.0.2.1\r\nX-Forwarded-Host: elsewhere\r\nX-Keep: v\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for k, want := range map[string]string{
		"Got-X-Forwarded-For":   "198.51.100.7",
		"Got-X-Forwarded-Proto": "http",
		"Got-Forwarded":         "",
		"Got-X-Forwarded-Host":  "",
		"Got-X-Hop":             "",
		"Got-Te":                "trailers",
		"Got-X-Keep":            "v",
		"X-Back-Hop":            "",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if resp.Header.Get("Got-X-Request-Id") == "" {
		t.Error("no request id sent upstream")
	}
	if got := resp.Header.Values("X-Multi"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("X-Multi = %q, want [a b]", got)
	}
}

// noEjection keeps outlier detection from ejecting the endpoints the
// retry and breaker tests make fail.
const noEjection = `
apiVersion: meridian.io/v1alpha1
kind: FailoverPolicy
metadata: {name: no-ejection, namespace: shop}
spec:
  selector: {services: [web]}
  outlierDetection: {consecutive5xxErrors: 0, consecutiveGatewayErrors: 0}
`

// TestRetryBreakers: the limits on requests and retries in flight, from
// xds/server to the proxy's cluster. Slow failing requests are sent at
// once (the backend answers 503 after a second, so they overlap however
// loaded the machine); each case counts the requests refused at once
// (503 x-envoy-overloaded), the retries made and those refused, by
// breaker. A retry holds its slot until its attempt answers.
func TestRetryBreakers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		policies string
		applied  func(xdsconfig.Breakers) bool
		requests int
		// overflows by breaker, answers marked overloaded, retries made.
		overflows  map[string]float64
		overloaded int
		retries    float64
	}{{
		// max_requests 2 and max_retries 1: of four, two are refused at
		// once; of the two admitted, one retries and one is refused.
		name: "max requests and retries",
		policies: `
apiVersion: meridian.io/v1alpha1
kind: DestinationPolicy
metadata: {name: web, namespace: shop}
spec:
  host: web
  connectionPool: {maxRequests: 2, maxRetries: 1}
---
apiVersion: meridian.io/v1alpha1
kind: TrafficRoute
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http:
  - route: [{host: web}]
    retries: {attempts: 1, retryOn: [5xx]}
`,
		applied:  func(b xdsconfig.Breakers) bool { return b.MaxRequests == 2 && b.MaxRetries == 1 },
		requests: 4, overflows: map[string]float64{"requests": 2, "retries": 1}, overloaded: 2, retries: 1,
	}, {
		// A route's retry budget, 10% of active requests and at least one:
		// three failing together get one retry where max_retries alone (3)
		// would let all three retry.
		name: "retry budget",
		policies: `
apiVersion: meridian.io/v1alpha1
kind: TrafficRoute
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http:
  - route: [{host: web}]
    retries: {attempts: 1, retryOn: [5xx], budget: {percent: 10, minRetryConcurrency: 1}}
`,
		applied: func(b xdsconfig.Breakers) bool {
			return b.Budget && b.BudgetPercent == 10 && b.BudgetMinConcurrency == 1
		},
		requests: 3, overflows: map[string]float64{"retries": 2}, retries: 1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTrafficMesh(t, noEjection+"---"+tc.policies, "v1")
			m.waitRouted(func() error {
				if c := m.px.Dataplane().Cluster("outbound|80||" + host("web")); c == nil || !tc.applied(c.Config().Breakers) {
					return fmt.Errorf("breakers not applied yet")
				}
				return nil
			})
			b := m.backends["v1"]
			b.status.Store(503)
			b.delay.Store(int64(time.Second))
			var wg sync.WaitGroup
			var mu sync.Mutex
			overloaded := 0
			for range tc.requests {
				wg.Add(1)
				go func() {
					defer wg.Done()
					code, _, h := get(t, m.c, m.url("/fail"))
					if code != 503 {
						t.Errorf("a failing request: %d, want 503", code)
					}
					if h.Get("X-Envoy-Overloaded") == "true" {
						mu.Lock()
						overloaded++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			if overloaded != tc.overloaded {
				t.Errorf("%d answers marked x-envoy-overloaded, want %d", overloaded, tc.overloaded)
			}
			for _, breaker := range []string{"requests", "retries"} {
				if v := m.px.metric(t, "meridian_proxy_upstream_overflow_total", "breaker", breaker); v != tc.overflows[breaker] {
					t.Errorf("overflows of %s: %v, want %v", breaker, v, tc.overflows[breaker])
				}
			}
			if v := m.px.metric(t, "meridian_proxy_upstream_retries_total"); v != tc.retries {
				t.Errorf("retries made: %v, want %v", v, tc.retries)
			}
		})
	}
}
