package sidecar_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/sidecar/internal/cptest"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
)

// backend is a real HTTP server that says who it is.
type backend struct {
	name string
	addr netip.AddrPort
	hits atomic.Int64
	srv  *http.Server
	ln   net.Listener
	// status, when set, is answered instead of 200; delay holds every
	// answer back.
	status atomic.Int32
	delay  atomic.Int64
}

func startBackend(t testing.TB, name string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, ln: ln, addr: netip.MustParseAddrPort(ln.Addr().String())}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		if d := time.Duration(b.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("X-Backend", name)
		io.Copy(io.Discard, r.Body)
		if s := b.status.Load(); s != 0 {
			w.WriteHeader(int(s))
		}
		fmt.Fprintf(w, "%s %s %s host=%s", name, r.Method, r.URL.Path, r.Host)
	}), ReadHeaderTimeout: 10 * time.Second}
	go b.srv.Serve(ln)
	t.Cleanup(b.stop)
	return b
}

// stop kills the backend: its port refuses connections from now on.
func (b *backend) stop() { b.srv.Close() }

// mesh is a registry served by Meridian's xDS server.
type mesh struct {
	t   testing.TB
	reg *registry.Registry
	xds *cptest.Meridian
}

func newMesh(t testing.TB) *mesh {
	t.Helper()
	reg := registry.New(registry.Options{})
	for _, c := range []registry.Cluster{{Name: "c1", Region: "r1", Network: "n1"}} {
		if err := reg.SetCluster(c); err != nil {
			t.Fatal(err)
		}
	}
	m := &mesh{t: t, reg: reg}
	m.xds = cptest.StartMeridian(t, reg, "c1", "")
	return m
}

func (m *mesh) service(name string, port uint32, proto registry.Protocol) {
	m.t.Helper()
	if _, err := m.reg.Apply("c1", registry.PutService(&registry.Service{Namespace: "shop", Name: name,
		Ports: []registry.ServicePort{{Port: port, Protocol: proto}}})); err != nil {
		m.t.Fatal(err)
	}
}

func (m *mesh) endpoint(svc, id string, addr netip.AddrPort, zone string, labels map[string]string) {
	m.t.Helper()
	if _, err := m.reg.Apply("c1", registry.PutEndpoint(&registry.Endpoint{Service: registry.ServiceKey{Namespace: "shop", Name: svc},
		ID: id, Addresses: []string{addr.Addr().String()}, Port: uint32(addr.Port()),
		Locality: registry.Locality{Region: "r1", Zone: zone}, Labels: labels})); err != nil {
		m.t.Fatal(err)
	}
}

// policies applies policy objects (YAML) to the xDS server.
func (m *mesh) policies(doc string) {
	m.t.Helper()
	objs, err := v1alpha1.Load([]byte(doc), v1alpha1.LoadOptions{})
	if err != nil {
		m.t.Fatal(err)
	}
	if err := m.xds.Server.SetPolicies(objs); err != nil {
		m.t.Fatal(err)
	}
}

func host(svc string) string { return svc + ".shop.svc.cluster.local" }

type proxy struct {
	*sidecar.Proxy
	metrics *prometheus.Registry
	stop    func()
}

// startProxy runs a meridian-proxy until the test ends and waits for its
// first configuration.
func startProxy(t testing.TB, server string, cfg sidecar.Config) *proxy {
	t.Helper()
	cfg.Server = server
	if cfg.Node.ID == "" {
		cfg.Node = xdsclient.NodeConfig{ID: "p-" + strings.ReplaceAll(t.Name(), "/", "-"), Mode: xdsclient.ModeSidecar, Cluster: "c1", Namespace: "shop", Locality: "r1/z1"}
	}
	cfg.Logger = cptest.Logger(t)
	cfg.Metrics = prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := sidecar.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := p.Run(ctx); err != nil {
			t.Errorf("proxy: %v", err)
		}
	}()
	px := &proxy{Proxy: p, metrics: cfg.Metrics, stop: sync.OnceFunc(func() { cancel(); wg.Wait() })}
	t.Cleanup(px.stop)
	select {
	case <-p.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("proxy never got its configuration: %+v", p.Client().Status())
	}
	return px
}

// metric sums a metric's samples whose labels include the given pairs.
func (p *proxy) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	sum := 0.0
	for _, m := range p.series(t, name, labels...) {
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// series returns the series of a metric that carry every given label
// pair (name, value, name, value...).
func (p *proxy) series(t testing.TB, name string, labels ...string) []*dto.Metric {
	t.Helper()
	mfs, err := p.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []*dto.Metric
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !slices.ContainsFunc(m.GetLabel(), func(lp *dto.LabelPair) bool { return lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] }) {
					continue next
				}
			}
			out = append(out, m)
		}
	}
	return out
}

func get(t testing.TB, c *http.Client, url string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// eventually2xx waits until a URL answers 200 through the proxy.
func eventually2xx(t testing.TB, c *http.Client, url string, hdr ...string) string {
	t.Helper()
	var body string
	testutil.Eventually(t, 10*time.Second, func() error {
		code, b, _ := get(t, c, url, hdr...)
		if code != 200 {
			return fmt.Errorf("%s: %d %s", url, code, b)
		}
		body = b
		return nil
	})
	return body
}
