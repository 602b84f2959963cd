package kube_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meridian-mesh/meridian/discovery/kube"
	"github.com/meridian-mesh/meridian/internal/kubetest"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

const (
	cluster       = "c1"
	clusterRegion = "home"
	waitFor       = 60 * time.Second // the machine is shared; informers back off after a restart
)

// env is one test's world: a namespace on a real API server, a registry,
// and a running Source restricted to that namespace.
type env struct {
	t       testing.TB
	api     *kubetest.APIServer
	cs      kubernetes.Interface
	ns      string
	reg     *registry.Registry
	src     *kube.Source
	metrics *prometheus.Registry
	nodes   map[string]registry.Locality // node name → the locality its labels give
	pods    map[string]*corev1.Pod
	stop    func() // the current run
}

var rbacOnce sync.Map // *kubetest.APIServer → *sync.Once

// newEnv starts discovery as a user that holds exactly kube.PolicyRules,
// which proves they suffice; options change the configuration (for
// example viaKubeconfig).
func newEnv(t testing.TB, api *kubetest.APIServer, opts ...func(*kube.Config)) *env {
	t.Helper()
	ctx := t.Context()
	e := &env{t: t, api: api, cs: api.Clientset(), ns: uniqueName(t), reg: registry.New(registry.Options{}),
		metrics: prometheus.NewPedanticRegistry(), nodes: map[string]registry.Locality{}, pods: map[string]*corev1.Pod{}}
	if _, err := e.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.SetCluster(registry.Cluster{Name: cluster, Region: clusterRegion}); err != nil {
		t.Fatal(err)
	}
	cfg := kube.Config{Cluster: cluster, Namespace: e.ns, Metrics: e.metrics, Logger: testLogger(t), RESTConfig: discoveryUser(t, api)}
	for _, o := range opts {
		o(&cfg)
	}
	src, err := kube.New(cfg, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	e.src = src
	e.run()
	return e
}

// run starts one run of the source and waits until it is ready; the
// returned func (or the test's end) stops it.
func (e *env) run() (stop func()) {
	e.t.Helper()
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.src.Run(runCtx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("Run: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	e.stop = stop
	select {
	case <-e.src.Ready():
	case err := <-done:
		e.t.Fatalf("Run ended before it was ready: %v", err)
	case <-time.After(waitFor):
		e.t.Fatal("discovery not ready")
	}
	return stop
}

// viaKubeconfig connects through the admin kubeconfig file and a named
// context, as a kubectl user would.
func viaKubeconfig(api *kubetest.APIServer) func(*kube.Config) {
	return func(c *kube.Config) { c.RESTConfig, c.Kubeconfig, c.Context = nil, api.Kubeconfig(), "kubetest" }
}

func discoveryUser(t testing.TB, api *kubetest.APIServer) *rest.Config {
	t.Helper()
	const user = "meridian-discovery"
	once, _ := rbacOnce.LoadOrStore(api, new(sync.Once))
	var err error
	once.(*sync.Once).Do(func() {
		ctx := context.Background()
		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: kube.PolicyRules()}
		if _, err = api.Clientset().RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
			return
		}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: user},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: user},
			Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}},
		}
		_, err = api.Clientset().RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{})
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := api.RESTConfigAs(user)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func uniqueName(t testing.TB) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	return strings.Trim(name, "-") + "-" + strings.ToLower(rand.Text()[:5])
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// node creates a Node with topology labels; its name is unique to the test.
func (e *env) node(short string, labels map[string]string) string {
	e.t.Helper()
	name := e.ns + "-" + short
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := e.cs.CoreV1().Nodes().Create(e.t.Context(), n, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.nodes[name] = locality(labels)
	e.t.Cleanup(func() { _ = e.cs.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return name
}

func (e *env) relabelNode(name string, labels map[string]string) {
	e.t.Helper()
	n, err := e.cs.CoreV1().Nodes().Get(e.t.Context(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	n.Labels = labels
	if _, err := e.cs.CoreV1().Nodes().Update(e.t.Context(), n, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.nodes[name] = locality(labels)
}

func locality(labels map[string]string) registry.Locality {
	l := registry.Locality{Region: labels[kube.LabelRegion], Zone: labels[kube.LabelZone], Subzone: labels[kube.LabelSubzone]}
	if l.Subzone == "" {
		l.Subzone = labels[kube.LabelIstioSubzone]
	}
	if l.Region == "" {
		l.Region = clusterRegion
	}
	return l
}

func (e *env) pod(name, sa, node string, labels map[string]string) {
	e.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{ServiceAccountName: sa, NodeName: node,
			Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
	}
	p, err := e.cs.CoreV1().Pods(e.ns).Create(e.t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.pods[name] = p
}

func (e *env) deletePod(name string) {
	e.t.Helper()
	zero := int64(0)
	if err := e.cs.CoreV1().Pods(e.ns).Delete(e.t.Context(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		e.t.Fatal(err)
	}
	delete(e.pods, name)
}

func (e *env) relabelPod(name string, labels map[string]string) {
	e.t.Helper()
	p, err := e.cs.CoreV1().Pods(e.ns).Get(e.t.Context(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	p.Labels = labels
	if p, err = e.cs.CoreV1().Pods(e.ns).Update(e.t.Context(), p, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.pods[name] = p
}

func (e *env) service(s *corev1.Service) *corev1.Service {
	e.t.Helper()
	s.Namespace = e.ns
	s, err := e.cs.CoreV1().Services(e.ns).Create(e.t.Context(), s, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func webService(ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: corev1.ServiceSpec{Ports: ports, Selector: map[string]string{"app": "web"}}}
}

func svcPort(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, Protocol: corev1.ProtocolTCP}
}

// member is one endpoint of a slice as the test writes it.
type member struct {
	pod, addr                 string
	ready, serving, terminate bool
}

func up(pod, addr string) member { return member{pod: pod, addr: addr, ready: true, serving: true} }

type slicePort struct {
	name string
	port int32
}

// putSlice creates or replaces an EndpointSlice for a Service, as the
// EndpointSlice controller would (it does not run here).
func (e *env) putSlice(name, service string, family discoveryv1.AddressType, ports []slicePort, members ...member) {
	e.t.Helper()
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name, Labels: map[string]string{
			discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: "meridian-test"}},
		AddressType: family,
	}
	for _, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr(p.name), Port: ptr(p.port), Protocol: ptr(corev1.ProtocolTCP)})
	}
	for _, m := range members {
		ep := discoveryv1.Endpoint{
			Addresses:  []string{m.addr},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(m.ready), Serving: ptr(m.serving), Terminating: ptr(m.terminate)},
		}
		if p := e.pods[m.pod]; p != nil {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: e.ns, Name: m.pod, UID: p.UID}
			ep.NodeName = ptr(p.Spec.NodeName)
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	ctx := e.t.Context()
	old, err := e.cs.DiscoveryV1().EndpointSlices(e.ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = e.cs.DiscoveryV1().EndpointSlices(e.ns).Create(ctx, s, metav1.CreateOptions{})
	case err == nil:
		s.ResourceVersion = old.ResourceVersion
		_, err = e.cs.DiscoveryV1().EndpointSlices(e.ns).Update(ctx, s, metav1.UpdateOptions{})
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) deleteSlice(name string) {
	e.t.Helper()
	if err := e.cs.DiscoveryV1().EndpointSlices(e.ns).Delete(e.t.Context(), name, metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

// ep is the endpoint the test expects for a pod it created, from what it
// knows of the pod and its node.
func (e *env) ep(service, pod, portName string, port uint32, h registry.Health, addrs ...string) *registry.Endpoint {
	p := e.pods[pod]
	return &registry.Endpoint{
		Service: registry.ServiceKey{Namespace: e.ns, Name: service}, Cluster: cluster,
		ID: pod, PortName: portName, Port: port, Addresses: addrs, Health: h,
		Locality: e.nodes[p.Spec.NodeName], ServiceAccount: p.Spec.ServiceAccountName, Labels: p.Labels,
	}
}

// expect waits until the segment holds exactly these endpoints.
func (e *env) expect(want ...*registry.Endpoint) {
	e.t.Helper()
	slices.SortFunc(want, cmpKey)
	testutil.Eventually(e.t, waitFor, func() error {
		got := e.endpoints()
		if diff := cmp.Diff(want, got); diff != "" {
			return fmt.Errorf("segment endpoints (-want +got):\n%s", diff)
		}
		return nil
	})
}

func (e *env) endpoints() []*registry.Endpoint {
	var got []*registry.Endpoint
	e.reg.View().Segment(cluster).EachEndpoint(func(x *registry.Endpoint) bool { got = append(got, x); return true })
	slices.SortFunc(got, cmpKey)
	return got
}

func cmpKey(a, b *registry.Endpoint) int {
	return strings.Compare(a.Service.Name+"/"+a.ID+"/"+a.PortName, b.Service.Name+"/"+b.ID+"/"+b.PortName)
}

// expectServices waits until the segment defines exactly these Services.
func (e *env) expectServices(want ...*registry.Service) {
	e.t.Helper()
	testutil.Eventually(e.t, waitFor, func() error {
		var got []*registry.Service
		e.reg.View().Segment(cluster).EachService(func(s *registry.Service) bool { got = append(got, s); return true })
		if diff := cmp.Diff(want, got); diff != "" {
			return fmt.Errorf("segment services (-want +got):\n%s", diff)
		}
		return nil
	})
}

func (e *env) regService(name string, headless bool, ports ...registry.ServicePort) *registry.Service {
	return &registry.Service{Namespace: e.ns, Name: name, Labels: map[string]string{"app": name}, Headless: headless, Ports: ports}
}

var (
	labelsV1 = map[string]string{"app": "web", "version": "v1"}
	labelsV2 = map[string]string{"app": "web", "version": "v2"}
	httpPort = []slicePort{{"http", 8080}}
)

// TestLifecycle walks one Service through what a cluster does to it, and
// checks the whole segment after each step.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	api := kubetest.Shared(t)
	e := newEnv(t, api, viaKubeconfig(api))
	n1 := e.node("n1", map[string]string{kube.LabelRegion: "eu-west-1", kube.LabelZone: "eu-west-1a", kube.LabelSubzone: "rack1"})
	n2 := e.node("n2", map[string]string{kube.LabelRegion: "eu-west-1", kube.LabelZone: "eu-west-1b", kube.LabelIstioSubzone: "rack7"})
	e.pod("web-0", "web", n1, labelsV1)
	e.pod("web-1", "web", n2, labelsV1)
	e.service(webService(svcPort("http", 80)))
	e.putSlice("web-a", "web", discoveryv1.AddressTypeIPv4, httpPort, up("web-0", "10.1.0.10"), up("web-1", "10.1.0.11"))
	e.expectServices(e.regService("web", false, registry.ServicePort{Name: "http", Port: 80, Protocol: registry.ProtocolHTTP}))
	e.expect(
		e.ep("web", "web-0", "http", 8080, registry.Healthy, "10.1.0.10"),
		e.ep("web", "web-1", "http", 8080, registry.Healthy, "10.1.0.11"))

	t.Log("scale up")
	e.pod("web-2", "web", n2, labelsV1)
	e.putSlice("web-a", "web", discoveryv1.AddressTypeIPv4, httpPort, up("web-0", "10.1.0.10"), up("web-1", "10.1.0.11"), up("web-2", "10.1.0.12"))
	e.expect(
		e.ep("web", "web-0", "http", 8080, registry.Healthy, "10.1.0.10"),
		e.ep("web", "web-1", "http", 8080, registry.Healthy, "10.1.0.11"),
		e.ep("web", "web-2", "http", 8080, registry.Healthy, "10.1.0.12"))

	t.Log("scale down")
	e.putSlice("web-a", "web", discoveryv1.AddressTypeIPv4, httpPort, up("web-1", "10.1.0.11"), up("web-2", "10.1.0.12"))
	e.deletePod("web-0")
	e.expect(
		e.ep("web", "web-1", "http", 8080, registry.Healthy, "10.1.0.11"),
		e.ep("web", "web-2", "http", 8080, registry.Healthy, "10.1.0.12"))

	t.Log("readiness off, terminating while serving")
	e.putSlice("web-a", "web", discoveryv1.AddressTypeIPv4, httpPort,
		member{pod: "web-1", addr: "10.1.0.11"},
		member{pod: "web-2", addr: "10.1.0.12", serving: true, terminate: true})
	e.expect(
		e.ep("web", "web-1", "http", 8080, registry.Unhealthy, "10.1.0.11"),
		e.ep("web", "web-2", "http", 8080, registry.Draining, "10.1.0.12"))

	t.Log("readiness back; terminating and no longer serving")
	e.putSlice("web-a", "web", discoveryv1.AddressTypeIPv4, httpPort,
		up("web-1", "10.1.0.11"),
		member{pod: "web-2", addr: "10.1.0.12", terminate: true})
	e.expect(
		e.ep("web", "web-1", "http", 8080, registry.Healthy, "10.1.0.11"),
		e.ep("web", "web-2", "http", 8080, registry.Unhealthy, "10.1.0.12"))

	// Pod and Node changes alone, with no slice write, must show.
	t.Log("pod relabel")
	e.relabelPod("web-1", labelsV2)
	e.expect(
		e.ep("web", "web-1", "http", 8080, registry.Healthy, "10.1.0.11"),
		e.ep("web", "web-2", "http", 8080, registry.Unhealthy, "10.1.0.12"))

	t.Log("pod recreated under another service account (it is immutable in a Pod)")
	e.deletePod("web-2")
	e.pod("web-2", "web-canary", n2, labelsV2)
	e.expect(
		e.ep("web", "web-1", "http", 8080, registry.Healthy, "10.1.0.11"),
		e.ep("web", "web-2", "http", 8080, registry.Unhealthy, "10.1.0.12"))
	e.putSlice("web-a", "web", discoveryv1.AddressTypeIPv4, httpPort, up("web-1", "10.1.0.11"), up("web-2", "10.1.0.22"))
	e.expect(
		e.ep("web", "web-1", "http", 8080, registry.Healthy, "10.1.0.11"),
		e.ep("web", "web-2", "http", 8080, registry.Healthy, "10.1.0.22"))

	t.Log("node relabel moves its endpoints")
	e.relabelNode(n2, map[string]string{kube.LabelRegion: "eu-west-1", kube.LabelZone: "eu-west-1c", kube.LabelSubzone: "rack9"})
	e.expect(
		e.ep("web", "web-1", "http", 8080, registry.Healthy, "10.1.0.11"),
		e.ep("web", "web-2", "http", 8080, registry.Healthy, "10.1.0.22"))

	t.Log("delete the slice, then the service")
	e.deleteSlice("web-a")
	e.expect()
	if err := e.cs.CoreV1().Services(e.ns).Delete(t.Context(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.expectServices()
}

// TestPorts: named and multiple ports map to Service ports by name, one
// endpoint per address per port; a port removed from the Service goes.
func TestPorts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, kubetest.Shared(t))
	n := e.node("n1", map[string]string{kube.LabelRegion: "us-east-1", kube.LabelZone: "us-east-1a"})
	e.pod("web-0", "web", n, labelsV1)
	e.pod("web-1", "web", n, labelsV1)
	s := e.service(webService(svcPort("http", 80), svcPort("grpc-api", 9090)))
	ports := []slicePort{{"http", 8080}, {"grpc-api", 9091}, {"metrics", 9100}}
	e.putSlice("web-a", "web", discoveryv1.AddressTypeIPv4, ports, up("web-0", "10.2.0.10"), up("web-1", "10.2.0.11"))
	e.expectServices(e.regService("web", false,
		registry.ServicePort{Name: "http", Port: 80, Protocol: registry.ProtocolHTTP},
		registry.ServicePort{Name: "grpc-api", Port: 9090, Protocol: registry.ProtocolGRPC}))
	e.expect(
		e.ep("web", "web-0", "grpc-api", 9091, registry.Healthy, "10.2.0.10"),
		e.ep("web", "web-0", "http", 8080, registry.Healthy, "10.2.0.10"),
		e.ep("web", "web-1", "grpc-api", 9091, registry.Healthy, "10.2.0.11"),
		e.ep("web", "web-1", "http", 8080, registry.Healthy, "10.2.0.11"))

	t.Log("the Service drops its grpc port")
	s.Spec.Ports = s.Spec.Ports[:1]
	if _, err := e.cs.CoreV1().Services(e.ns).Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.expect(
		e.ep("web", "web-0", "http", 8080, registry.Healthy, "10.2.0.10"),
		e.ep("web", "web-1", "http", 8080, registry.Healthy, "10.2.0.11"))
}

// TestHeadlessDualStack: a headless dual-stack Service whose Pods appear in
// an IPv4 and an IPv6 slice; each Pod is one endpoint with both addresses.
func TestHeadlessDualStack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, kubetest.Shared(t))
	n := e.node("n1", map[string]string{kube.LabelZone: "z1"})
	e.pod("db-0", "db", n, map[string]string{"app": "db"})
	e.pod("db-1", "db", n, map[string]string{"app": "db"})
	e.service(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Labels: map[string]string{"app": "db"}},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{svcPort("tcp-pg", 5432)},
			IPFamilyPolicy: ptr(corev1.IPFamilyPolicyRequireDualStack), IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
		}})
	pg := []slicePort{{"tcp-pg", 5432}}
	e.putSlice("db-v4", "db", discoveryv1.AddressTypeIPv4, pg, up("db-0", "10.3.0.10"), up("db-1", "10.3.0.11"))
	e.putSlice("db-v6", "db", discoveryv1.AddressTypeIPv6, pg, up("db-0", "fd00:3::10"), up("db-1", "fd00:3::11"))
	e.expectServices(e.regService("db", true, registry.ServicePort{Name: "tcp-pg", Port: 5432, Protocol: registry.ProtocolTCP}))
	e.expect(
		e.ep("db", "db-0", "tcp-pg", 5432, registry.Healthy, "10.3.0.10", "fd00:3::10"),
		e.ep("db", "db-1", "tcp-pg", 5432, registry.Healthy, "10.3.0.11", "fd00:3::11"))

	t.Log("the IPv6 slice goes")
	e.deleteSlice("db-v6")
	e.expect(
		e.ep("db", "db-0", "tcp-pg", 5432, registry.Healthy, "10.3.0.10"),
		e.ep("db", "db-1", "tcp-pg", 5432, registry.Healthy, "10.3.0.11"))
}

// TestResyncRepairs: a resync converts every Service again and puts back
// what the segment lost, here an endpoint deleted behind the source's back.
func TestResyncRepairs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, kubetest.Shared(t), func(c *kube.Config) { c.ResyncPeriod = 500 * time.Millisecond })
	n := e.node("n1", map[string]string{kube.LabelZone: "z1"})
	e.pod("web-0", "web", n, labelsV1)
	e.service(webService(svcPort("http", 80)))
	e.putSlice("web-a", "web", discoveryv1.AddressTypeIPv4, httpPort, up("web-0", "10.5.0.10"))
	want := e.ep("web", "web-0", "http", 8080, registry.Healthy, "10.5.0.10")
	e.expect(want)
	if _, err := e.reg.Apply(cluster, registry.DeleteEndpoint(want.Key())); err != nil {
		t.Fatal(err)
	}
	e.expect(want)
}
