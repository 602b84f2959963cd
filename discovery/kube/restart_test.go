package kube_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/meridian-mesh/meridian/discovery/kube"
	"github.com/meridian-mesh/meridian/internal/kubetest"
	"github.com/meridian-mesh/meridian/registry"
)

// TestAPIServerRestart restarts the API server under a running Source:
// first a plain restart with writes while the informers reconnect, then a
// halt during which objects are deleted in etcd behind the server's back
// and etcd is compacted, so that the informers cannot resume their watches
// and must list again (the tombstone path). After each, the segment must be
// exact, and the registry must have seen changes only for what changed:
// nothing lost, nothing put twice, no endpoint removed and re-added.
func TestAPIServerRestart(t *testing.T) {
	t.Parallel()
	api := kubetest.Start(t)
	e := newEnv(t, api)
	ctx := t.Context()
	n := e.node("n1", map[string]string{kube.LabelRegion: "eu-west-1", kube.LabelZone: "eu-west-1a"})
	for _, p := range []string{"web-0", "web-1", "web-2", "web-3"} {
		e.pod(p, "web", n, labelsV1)
	}
	e.pod("api-0", "api", n, map[string]string{"app": "api"})
	e.service(webService(svcPort("http", 80)))
	apiSvc := webService(svcPort("http", 80))
	apiSvc.Name, apiSvc.Labels = "api", map[string]string{"app": "api"}
	e.service(apiSvc)
	e.putSlice("web-a", "web", discoveryv1.AddressTypeIPv4, httpPort, up("web-0", "10.4.0.10"), up("web-1", "10.4.0.11"), up("web-2", "10.4.0.12"))
	e.putSlice("web-b", "web", discoveryv1.AddressTypeIPv4, httpPort, up("web-3", "10.4.0.13"))
	e.putSlice("api-a", "api", discoveryv1.AddressTypeIPv4, httpPort, up("api-0", "10.4.1.10"))
	healthy := func(svc, pod, addr string) *registry.Endpoint {
		return e.ep(svc, pod, "http", 8080, registry.Healthy, addr)
	}
	e.expect(healthy("api", "api-0", "10.4.1.10"), healthy("web", "web-0", "10.4.0.10"), healthy("web", "web-1", "10.4.0.11"),
		healthy("web", "web-2", "10.4.0.12"), healthy("web", "web-3", "10.4.0.13"))

	sub := e.reg.Subscribe()
	defer sub.Close()
	sub.Take() // the initial full delivery

	t.Log("restart mid-watch, and write while the informers reconnect")
	if err := api.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	e.pod("web-4", "web", n, labelsV1)
	e.putSlice("web-a", "web", discoveryv1.AddressTypeIPv4, httpPort, up("web-0", "10.4.0.10"), up("web-1", "10.4.0.11"), up("web-2", "10.4.0.12"), up("web-4", "10.4.0.14"))
	e.expect(healthy("api", "api-0", "10.4.1.10"), healthy("web", "web-0", "10.4.0.10"), healthy("web", "web-1", "10.4.0.11"),
		healthy("web", "web-2", "10.4.0.12"), healthy("web", "web-3", "10.4.0.13"), healthy("web", "web-4", "10.4.0.14"))
	expectChanged(t, sub, "web/web-4")

	t.Log("halt; delete a slice and a Service in etcd; compact; resume and write at once")
	api.Halt()
	deleteInEtcd(t, api.Etcd(), "/"+e.ns+"/web-b", "/"+e.ns+"/api-a", "/"+e.ns+"/api")
	if err := api.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	e.putSlice("web-a", "web", discoveryv1.AddressTypeIPv4, httpPort, up("web-0", "10.4.0.10"), member{pod: "web-1", addr: "10.4.0.11"},
		up("web-2", "10.4.0.12"), up("web-4", "10.4.0.14"))
	e.expect(healthy("web", "web-0", "10.4.0.10"), e.ep("web", "web-1", "http", 8080, registry.Unhealthy, "10.4.0.11"),
		healthy("web", "web-2", "10.4.0.12"), healthy("web", "web-4", "10.4.0.14"))
	e.expectServices(e.regService("web", false, registry.ServicePort{Name: "http", Port: 80, Protocol: registry.ProtocolHTTP}))
	expectChanged(t, sub, "api/api-0", "web/web-1", "web/web-3")
	for _, kind := range []string{"EndpointSlice", "Service"} {
		if n := counter(t, e.metrics, "meridian_kube_discovery_events_total", "kind", kind, "event", "tombstone"); n < 1 {
			t.Errorf("%s tombstones: %v, want at least one (the relist must find the objects deleted behind its back)", kind, n)
		}
	}
}

// expectChanged checks that exactly these endpoints ("service/id") changed
// since the subscription was last taken.
func expectChanged(t *testing.T, sub *registry.Subscription, want ...string) {
	t.Helper()
	_, d := sub.Take()
	var got []string
	for r := range maps.Keys(d.Endpoints) {
		got = append(got, r.Service.Name+"/"+r.ID)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("endpoints changed in the registry: %v, want exactly %v", got, want)
	}
}

// deleteInEtcd deletes the API server's keys that end with the suffixes,
// then compacts etcd to its current revision so that no watch can resume
// from before it.
func deleteInEtcd(t *testing.T, c *clientv3.Client, suffixes ...string) {
	t.Helper()
	ctx := t.Context()
	resp, err := c.Get(ctx, "/registry/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	deleted := 0
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		if slices.ContainsFunc(suffixes, func(s string) bool { return strings.HasSuffix(k, s) }) {
			if _, err := c.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
			t.Logf("deleted %s in etcd", k)
			deleted++
		}
	}
	if deleted != len(suffixes) {
		t.Fatalf("deleted %d keys in etcd, want %d", deleted, len(suffixes))
	}
	cur, err := c.Get(ctx, "/registry/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compact(context.WithoutCancel(ctx), cur.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
}

// counter reads one counter from a registry by name and label pairs.
func counter(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
