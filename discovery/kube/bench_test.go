package kube_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/meridian-mesh/meridian/discovery/kube"
	"github.com/meridian-mesh/meridian/internal/kubetest"
	"github.com/meridian-mesh/meridian/registry"
)

// BenchmarkSliceWriteToRegistry measures, on the real API server, the time
// from an EndpointSlice update (one Update call that moves one endpoint to
// a new address) to the registry publishing the change, for several batch
// windows. Beside it, in the same run and for the same writes, a plain
// client-go informer on EndpointSlices gives the baseline: when the event
// reaches any client-go consumer at all. The difference is what Meridian
// adds (its batch window plus conversion and apply). Writes are sequential:
// each waits for both observers, so this is latency, not throughput.
//
// Run with -benchtime=Nx for N writes (bench/discovery.sh uses 300).
func BenchmarkSliceWriteToRegistry(b *testing.B) {
	for _, w := range []struct {
		name   string
		window time.Duration
	}{{"20ms", 0}, {"100ms", 100 * time.Millisecond}, {"none", -1}} {
		b.Run("window="+w.name, func(b *testing.B) {
			e := newEnv(b, kubetest.Shared(b), func(c *kube.Config) {
				c.BatchWindow = w.window
				c.Logger = slog.New(slog.DiscardHandler)
			})
			measureSliceWrites(b, e, w.window)
		})
	}
}

type seen struct {
	addr string
	at   time.Time
}

func measureSliceWrites(b *testing.B, e *env, window time.Duration) {
	ctx := b.Context()
	n := e.node("n1", map[string]string{kube.LabelZone: "z1"})
	e.pod("web-0", "web", n, labelsV1)
	e.service(webService(svcPort("http", 80)))
	e.putSlice("web-a", "web", discoveryv1.AddressTypeIPv4, httpPort, up("web-0", "10.9.255.1"))
	e.expect(e.ep("web", "web-0", "http", 8080, registry.Healthy, "10.9.255.1"))

	informed := rawInformer(b, e.api.Clientset(), e.ns)
	published := watchRegistry(ctx, e.reg, registry.EndpointKey{
		Service: registry.ServiceKey{Namespace: e.ns, Name: "web"}, ID: "web-0", PortName: "http"})
	slice, err := e.cs.DiscoveryV1().EndpointSlices(e.ns).Get(ctx, "web-a", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}

	ours := make([]time.Duration, 0, b.N)
	base := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		addr := fmt.Sprintf("10.9.%d.%d", i/250, i%250+1)
		slice.Endpoints[0].Addresses = []string{addr}
		start := time.Now()
		if slice, err = e.cs.DiscoveryV1().EndpointSlices(e.ns).Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		base = append(base, waitSeen(b, informed, addr).Sub(start))
		ours = append(ours, waitSeen(b, published, addr).Sub(start))
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	if window == 0 {
		window = kube.DefaultBatchWindow
	}
	b.ReportMetric(ms(percentile(ours, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(ours, 99)), "p99-ms")
	b.ReportMetric(ms(percentile(base, 50)), "base-p50-ms")
	b.ReportMetric(ms(percentile(base, 99)), "base-p99-ms")
	if window == 0 {
		window = kube.DefaultBatchWindow
	}
	b.ReportMetric(ms(max(window, 0)), "window-ms")
}

// rawInformer is the baseline: a bare client-go informer whose handler only
// notes when each address arrives.
func rawInformer(b *testing.B, cs kubernetes.Interface, ns string) <-chan seen {
	out := make(chan seen, 16)
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	inf := f.Discovery().V1().EndpointSlices().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: func(_, obj any) {
		at := time.Now()
		if s, ok := obj.(*discoveryv1.EndpointSlice); ok && len(s.Endpoints) > 0 {
			out <- seen{s.Endpoints[0].Addresses[0], at}
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.Start(ctx.Done())
	b.Cleanup(func() { cancel(); f.Shutdown() })
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		b.Fatal("baseline informer did not sync")
	}
	return out
}

// watchRegistry notes when the registry publishes each new address of one
// endpoint.
func watchRegistry(ctx context.Context, reg *registry.Registry, key registry.EndpointKey) <-chan seen {
	out := make(chan seen, 16)
	sub := reg.Subscribe()
	go func() {
		defer sub.Close()
		for {
			v, d, err := sub.Next(ctx)
			if err != nil {
				return
			}
			at := time.Now()
			if _, ok := d.Endpoints[registry.EndpointRef{Cluster: cluster, EndpointKey: key}]; !ok {
				continue
			}
			if ep, ok := v.Segment(cluster).Endpoint(key); ok {
				select {
				case out <- seen{ep.Address(), at}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// waitSeen returns when addr was seen, skipping older notes.
func waitSeen(b *testing.B, ch <-chan seen, addr string) time.Time {
	timeout := time.After(waitFor)
	for {
		select {
		case s := <-ch:
			if s.addr == addr {
				return s.at
			}
		case <-timeout:
			b.Fatalf("address %s never arrived", addr)
		}
	}
}

// percentile is the nearest-rank percentile.
func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(i, 0)]
}
