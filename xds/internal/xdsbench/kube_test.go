package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meridian-mesh/meridian/discovery/kube"
	"github.com/meridian-mesh/meridian/internal/kubetest"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/server"
)

// BenchmarkKubePath drives xDS from Kubernetes: one EndpointSlice write on
// a real kube-apiserver, through discovery (its batch window: the default
// 20ms, and Istio's 100ms debounce for comparison), the registry
// and the xDS server, until every one of 1,000 ADS clients has ACKed the
// load assignment with the new endpoint. The registry holds
// 1,000 services and 10,000 endpoints: 999 services from the bench fixture
// and the Kubernetes one. Clients subscribe to everything, so every change
// affects every client. Each write is isolated (250ms after the previous
// one converged). Reported: per-client p50 and p99, and the median time
// until all clients ACKed, in milliseconds.
//
//	go test -run '^$' -bench KubePath -benchtime 20x ./xds/internal/xdsbench
func BenchmarkKubePath(b *testing.B) {
	api := kubetest.Start(b)
	for _, window := range []time.Duration{kube.DefaultBatchWindow, 100 * time.Millisecond} {
		for _, p := range []struct {
			name  string
			delta bool
		}{{"sotw", false}, {"delta", true}} {
			b.Run(fmt.Sprintf("clients=1000/%s/batch=%v", p.name, window), func(b *testing.B) { kubePath(b, api, p.name, p.delta, window) })
		}
	}
}

func kubePath(b *testing.B, api *kubetest.APIServer, name string, delta bool, window time.Duration) {
	const clients = 1000
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	cs := api.Clientset()
	// The testing package calls a benchmark once with b.N = 1 before the
	// real run: each call gets its own namespace.
	runs++
	ns := fmt.Sprintf("bench-%s-%d", name, runs)
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	must(err)

	reg, err := fill(999, 10)
	must(err)
	must(reg.SetCluster(registry.Cluster{Name: "k1", Region: "r1"}))
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	src, err := kube.New(kube.Config{Cluster: "k1", RESTConfig: api.RESTConfig(), Namespace: ns, ResyncPeriod: -1, Logger: quiet, BatchWindow: window}, reg)
	must(err)
	wg.Add(1)
	go func() { defer wg.Done(); _ = src.Run(ctx) }()
	<-src.Ready()

	_, err = cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}, metav1.CreateOptions{})
	must(err)
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-a", Labels: map[string]string{discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "xdsbench"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for i := range 10 {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.77.0.%d", i+1)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
			Zone:       ptr(fmt.Sprintf("z%d", i%zones)),
		})
	}
	slice, err = cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{})
	must(err)
	web := registry.ServiceKey{Namespace: ns, Name: "web"}
	for len(reg.View().Endpoints(web)) < 10 {
		if ctx.Err() != nil {
			b.Fatal(ctx.Err())
		}
		time.Sleep(10 * time.Millisecond) // a benchmark's setup, not a test assertion
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	tr := newTracker()
	gs := grpc.NewServer(grpc.StreamInterceptor(tr.interceptor))
	srv, err := server.New(server.Config{Registry: reg, Cluster: benchCluster, Logger: quiet})
	must(err)
	srv.Register(gs)
	wg.Add(3)
	go func() { defer wg.Done(); _ = srv.Run(ctx) }()
	go func() { defer wg.Done(); _ = gs.Serve(lis) }()
	go func() { defer wg.Done(); _ = runClients(ctx, lis.Addr().String(), clients, delta) }()
	defer gs.Stop()
	if !tr.waitSynced(clients, 5*time.Minute) {
		b.Fatal("clients not in sync")
	}

	var all, allAcked []time.Duration
	b.ResetTimer()
	for i := range b.N {
		time.Sleep(250 * time.Millisecond) // an isolated change
		slice.Endpoints[0].Addresses = []string{fmt.Sprintf("10.78.%d.%d", i/250, i%250+1)}
		tr.startChange()
		slice, err = cs.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice, metav1.UpdateOptions{})
		must(err)
		lat, ok := tr.waitChange(clients, time.Minute)
		if !ok {
			b.Fatalf("write %d: only %d of %d clients ACKed", i, len(lat), clients)
		}
		all = append(all, lat...)
		allAcked = append(allAcked, lat[len(lat)-1])
	}
	b.StopTimer()
	slices.Sort(all)
	slices.Sort(allAcked)
	b.ReportMetric(millis(quantile(all, 0.50)), "p50-ms")
	b.ReportMetric(millis(quantile(all, 0.99)), "p99-ms")
	b.ReportMetric(millis(quantile(allAcked, 0.50)), "all-acked-ms")
}

var runs int

func ptr[T any](v T) *T { return &v }
