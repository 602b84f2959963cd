package kube

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meridian-mesh/meridian/registry"
)

// Builders for the objects a conversion reads. They keep the tables below
// to what each case is about.

func svc(name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.ServiceSpec{Ports: ports, ClusterIP: "10.96.0.10"},
	}
}

func port(name string, number int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: number, Protocol: corev1.ProtocolTCP}
}

type sliceEp struct {
	addr, pod, node, zone string
	cond                  discoveryv1.EndpointConditions
}

func slice(name string, family discoveryv1.AddressType, ports map[string]int32, eps ...sliceEp) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: family,
	}
	for n, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr(n), Port: ptr(p)})
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: e.cond}
		if e.pod != "" {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: e.pod}
		}
		if e.node != "" {
			ep.NodeName = ptr(e.node)
		}
		if e.zone != "" {
			ep.Zone = ptr(e.zone)
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

func ptr[T any](v T) *T { return &v }

var (
	pods = map[string]*corev1.Pod{
		"web-1": {ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{"app": "web", "version": "v1"}},
			Spec: corev1.PodSpec{ServiceAccountName: "web", NodeName: "n1"}},
		"web-2": {ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-2", Labels: map[string]string{"app": "web", "version": "v2"}},
			Spec: corev1.PodSpec{NodeName: "n2"}},
	}
	nodes = map[string]*corev1.Node{
		"n1":   {ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{LabelRegion: "eu-west-1", LabelZone: "eu-west-1a", LabelSubzone: "rack1"}}},
		"n2":   {ObjectMeta: metav1.ObjectMeta{Name: "n2", Labels: map[string]string{LabelRegion: "eu-west-1", LabelZone: "eu-west-1b", LabelIstioSubzone: "rack7"}}},
		"bare": {ObjectMeta: metav1.ObjectMeta{Name: "bare"}},
	}
	tgt = target{Cluster: "c1", Region: "home"}
)

func input(s *corev1.Service, slices ...*discoveryv1.EndpointSlice) serviceInput {
	return serviceInput{
		Service: s, Slices: slices,
		Pod:  func(ns, name string) *corev1.Pod { return pods[name] },
		Node: func(name string) *corev1.Node { return nodes[name] },
	}
}

var webKey = registry.ServiceKey{Namespace: "shop", Name: "web"}

// ep builds an expected endpoint with the defaults of web-1 on n1.
func ep(id, portName string, port uint32, addrs ...string) *registry.Endpoint {
	return &registry.Endpoint{Service: webKey, Cluster: "c1", ID: id, PortName: portName, Addresses: addrs, Port: port}
}

func with(e *registry.Endpoint, f func(*registry.Endpoint)) *registry.Endpoint { f(e); return e }

var (
	v1Pod = func(e *registry.Endpoint) {
		e.ServiceAccount, e.Labels = "web", pods["web-1"].Labels
		e.Locality = registry.Locality{Region: "eu-west-1", Zone: "eu-west-1a", Subzone: "rack1"}
	}
	v2Pod = func(e *registry.Endpoint) {
		e.ServiceAccount, e.Labels = "default", pods["web-2"].Labels
		e.Locality = registry.Locality{Region: "eu-west-1", Zone: "eu-west-1b", Subzone: "rack7"}
	}
	homeRegion = func(e *registry.Endpoint) { e.Locality = registry.Locality{Region: "home"} }
)

func TestConvert(t *testing.T) {
	notReady := discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(false)}
	terminating := discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}
	http := map[string]int32{"http": 8080}
	cases := []struct {
		name    string
		in      serviceInput
		svc     *registry.Service
		eps     []*registry.Endpoint
		problem string // a substring of the reported errors; "" for none
	}{
		{
			name: "pods on labelled nodes",
			in: input(svc("web", port("http", 80)), slice("web-a", discoveryv1.AddressTypeIPv4, http,
				sliceEp{addr: "10.0.0.1", pod: "web-1", node: "n1"}, sliceEp{addr: "10.0.0.2", pod: "web-2"})),
			svc: &registry.Service{Namespace: "shop", Name: "web", Labels: map[string]string{"app": "web"},
				Ports: []registry.ServicePort{{Name: "http", Port: 80, Protocol: registry.ProtocolHTTP}}},
			eps: []*registry.Endpoint{
				with(ep("web-1", "http", 8080, "10.0.0.1"), v1Pod),
				// No nodeName in the slice: the Pod's node; no service account: "default".
				with(ep("web-2", "http", 8080, "10.0.0.2"), v2Pod),
			},
		},
		{
			name: "multiple named ports map by name; unknown slice ports are ignored",
			in: input(svc("web", port("http", 80), port("grpc-api", 9090)), slice("web-a", discoveryv1.AddressTypeIPv4,
				map[string]int32{"http": 8080, "grpc-api": 9091, "metrics": 9100}, sliceEp{addr: "10.0.0.1", pod: "web-1", node: "n1"})),
			svc: &registry.Service{Namespace: "shop", Name: "web", Labels: map[string]string{"app": "web"}, Ports: []registry.ServicePort{
				{Name: "http", Port: 80, Protocol: registry.ProtocolHTTP}, {Name: "grpc-api", Port: 9090, Protocol: registry.ProtocolGRPC}}},
			eps: []*registry.Endpoint{
				with(ep("web-1", "grpc-api", 9091, "10.0.0.1"), v1Pod),
				with(ep("web-1", "http", 8080, "10.0.0.1"), v1Pod),
			},
		},
		{
			name: "conditions: not ready, terminating",
			in: input(svc("web", port("http", 80)), slice("web-a", discoveryv1.AddressTypeIPv4, http,
				sliceEp{addr: "10.0.0.1", pod: "web-1", node: "n1", cond: notReady},
				sliceEp{addr: "10.0.0.2", pod: "web-2", cond: terminating})),
			eps: []*registry.Endpoint{
				with(ep("web-1", "http", 8080, "10.0.0.1"), func(e *registry.Endpoint) { v1Pod(e); e.Health = registry.Unhealthy }),
				with(ep("web-2", "http", 8080, "10.0.0.2"), func(e *registry.Endpoint) { v2Pod(e); e.Health = registry.Draining }),
			},
		},
		{
			name: "dual-stack: one pod in two slices is one endpoint, primary family first",
			in: input(func() *corev1.Service {
				s := svc("web", port("http", 80))
				s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
				return s
			}(),
				slice("web-v4", discoveryv1.AddressTypeIPv4, http, sliceEp{addr: "10.0.0.1", pod: "web-1", node: "n1"}),
				slice("web-v6", discoveryv1.AddressTypeIPv6, http, sliceEp{addr: "fd00:0:0:0::1", pod: "web-1", node: "n1", cond: notReady})),
			eps: []*registry.Endpoint{
				// The address is canonical; the most serving state of the two wins.
				with(ep("web-1", "http", 8080, "fd00::1", "10.0.0.1"), v1Pod),
			},
		},
		{
			name: "no targetRef: keyed by address, locality from the slice zone and the cluster region",
			in: input(svc("web", port("http", 80)),
				slice("web-v4", discoveryv1.AddressTypeIPv4, http, sliceEp{addr: "10.0.0.9", zone: "z9"}),
				slice("web-v6", discoveryv1.AddressTypeIPv6, http, sliceEp{addr: "fd00::9", node: "bare"})),
			eps: []*registry.Endpoint{
				with(ep("10.0.0.9", "http", 8080, "10.0.0.9"), func(e *registry.Endpoint) { e.Locality = registry.Locality{Region: "home", Zone: "z9"} }),
				with(ep("fd00::9", "http", 8080, "fd00::9"), homeRegion),
			},
		},
		{
			name: "unknown pod and node: no identity, cluster region",
			in: input(svc("web", port("", 80)), slice("web-a", discoveryv1.AddressTypeIPv4, map[string]int32{"": 80},
				sliceEp{addr: "10.0.0.3", pod: "web-9", node: "gone"})),
			eps: []*registry.Endpoint{with(ep("web-9", "", 80, "10.0.0.3"), homeRegion)},
		},
		{
			name: "headless",
			in: input(func() *corev1.Service {
				s := svc("web", port("tcp-db", 5432))
				s.Spec.ClusterIP = corev1.ClusterIPNone
				return s
			}(), slice("web-a", discoveryv1.AddressTypeIPv4, map[string]int32{"tcp-db": 5432}, sliceEp{addr: "10.0.0.1", pod: "web-1", node: "n1"})),
			svc: &registry.Service{Namespace: "shop", Name: "web", Labels: map[string]string{"app": "web"}, Headless: true,
				Ports: []registry.ServicePort{{Name: "tcp-db", Port: 5432, Protocol: registry.ProtocolTCP}}},
			eps: []*registry.Endpoint{with(ep("web-1", "tcp-db", 5432, "10.0.0.1"), v1Pod)},
		},
		{
			name: "the same pod twice in one family: the first slice by name gives the address",
			in: input(svc("web", port("http", 80)),
				slice("web-b", discoveryv1.AddressTypeIPv4, http, sliceEp{addr: "10.0.0.8", pod: "web-1", node: "n1"}),
				slice("web-a", discoveryv1.AddressTypeIPv4, http, sliceEp{addr: "10.0.0.1", pod: "web-1", node: "n1", cond: notReady})),
			eps: []*registry.Endpoint{with(ep("web-1", "http", 8080, "10.0.0.1"), v1Pod)},
		},
		{
			name:    "address of the wrong family is left out and reported",
			in:      input(svc("web", port("http", 80)), slice("web-a", discoveryv1.AddressTypeIPv4, http, sliceEp{addr: "fd00::1", pod: "web-1"}, sliceEp{addr: "10.0.0.2", pod: "web-2"})),
			eps:     []*registry.Endpoint{with(ep("web-2", "http", 8080, "10.0.0.2"), v2Pod)},
			problem: "EndpointSlice[shop/web-a].endpoints[0].addresses[0]",
		},
		{
			name: "SCTP port is left out and reported",
			in: input(svc("web", port("http", 80), corev1.ServicePort{Name: "sig", Port: 3868, Protocol: corev1.ProtocolSCTP}),
				slice("web-a", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8080, "sig": 3868}, sliceEp{addr: "10.0.0.1", pod: "web-1", node: "n1"})),
			eps:     []*registry.Endpoint{with(ep("web-1", "http", 8080, "10.0.0.1"), v1Pod)},
			problem: "Service[shop/web].spec.ports[1].protocol",
		},
		{
			name: "a slice port without a number is reported",
			in: input(svc("web", port("http", 80)), func() *discoveryv1.EndpointSlice {
				s := slice("web-a", discoveryv1.AddressTypeIPv4, nil, sliceEp{addr: "10.0.0.1", pod: "web-1"})
				s.Ports = []discoveryv1.EndpointPort{{Name: ptr("http")}}
				return s
			}()),
			problem: "EndpointSlice[shop/web-a].ports[0].port",
		},
		{
			name: "FQDN slices are ignored",
			in:   input(svc("web", port("http", 80)), slice("web-a", discoveryv1.AddressTypeFQDN, http, sliceEp{addr: "db.example.com"})),
		},
		{name: "no Service: nothing", in: input(nil, slice("web-a", discoveryv1.AddressTypeIPv4, http, sliceEp{addr: "10.0.0.1"}))},
		{
			name: "ExternalName: nothing",
			in: input(func() *corev1.Service {
				s := svc("web")
				s.Spec.Type, s.Spec.ExternalName, s.Spec.ClusterIP = corev1.ServiceTypeExternalName, "db.example.com", ""
				return s
			}()),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := convert(tgt, tc.in)
			if tc.svc != nil {
				if diff := cmp.Diff(tc.svc, got.Service); diff != "" {
					t.Errorf("service (-want +got):\n%s", diff)
				}
			}
			if tc.in.Service == nil || tc.in.Service.Spec.Type == corev1.ServiceTypeExternalName {
				if got.Service != nil {
					t.Errorf("service = %+v, want none", got.Service)
				}
			}
			if diff := cmp.Diff(tc.eps, got.Endpoints); diff != "" {
				t.Errorf("endpoints (-want +got):\n%s", diff)
			}
			msg := ""
			if len(errs) > 0 {
				msg = errs.ToAggregate().Error()
			}
			if (tc.problem == "") != (msg == "") || !strings.Contains(msg, tc.problem) {
				t.Errorf("problems = %q, want one naming %q", msg, tc.problem)
			}
		})
	}
}

func TestHealthOf(t *testing.T) {
	yes, no := ptr(true), ptr(false)
	cases := []struct {
		ready, serving, terminating *bool
		want                        registry.Health
	}{
		{nil, nil, nil, registry.Healthy}, // nil ready means true
		{yes, yes, no, registry.Healthy},
		{no, no, no, registry.Unhealthy},
		{no, nil, nil, registry.Unhealthy},
		{no, yes, yes, registry.Draining},
		{no, no, yes, registry.Unhealthy},
		{no, nil, yes, registry.Unhealthy}, // nil serving takes ready's value
		{yes, nil, yes, registry.Draining}, // publishNotReadyAddresses: ready stays true
	}
	s := func(b *bool) string {
		if b == nil {
			return "nil"
		}
		return map[bool]string{true: "true", false: "false"}[*b]
	}
	for _, tc := range cases {
		got := healthOf(discoveryv1.EndpointConditions{Ready: tc.ready, Serving: tc.serving, Terminating: tc.terminating})
		if got != tc.want {
			t.Errorf("ready=%s serving=%s terminating=%s: %v, want %v", s(tc.ready), s(tc.serving), s(tc.terminating), got, tc.want)
		}
	}
}

func TestProtocolOf(t *testing.T) {
	cases := []struct {
		name, appProtocol string
		proto             corev1.Protocol
		want              registry.Protocol
		ok                bool
	}{
		{"http", "", corev1.ProtocolTCP, registry.ProtocolHTTP, true},
		{"http-web", "", "", registry.ProtocolHTTP, true},
		{"HTTP2-x", "", corev1.ProtocolTCP, registry.ProtocolHTTP2, true},
		{"grpc", "", corev1.ProtocolTCP, registry.ProtocolGRPC, true},
		{"https", "", corev1.ProtocolTCP, registry.ProtocolTLS, true},
		{"web", "kubernetes.io/h2c", corev1.ProtocolTCP, registry.ProtocolHTTP2, true},
		{"http", "tcp", corev1.ProtocolTCP, registry.ProtocolTCP, true}, // appProtocol wins
		{"web", "example.com/custom", corev1.ProtocolTCP, registry.ProtocolTCP, true},
		{"dns", "", corev1.ProtocolUDP, registry.ProtocolUDP, true},
		{"sig", "", corev1.ProtocolSCTP, "", false},
	}
	for _, tc := range cases {
		p := corev1.ServicePort{Name: tc.name, Protocol: tc.proto}
		if tc.appProtocol != "" {
			p.AppProtocol = &tc.appProtocol
		}
		got, ok := protocolOf(p)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s/%s/%s: %q %v, want %q %v", tc.name, tc.appProtocol, tc.proto, got, ok, tc.want, tc.ok)
		}
	}
}

func TestLocalityOf(t *testing.T) {
	cases := []struct {
		labels    map[string]string
		sliceZone string
		want      registry.Locality
	}{
		{map[string]string{LabelRegion: "r", LabelZone: "z", LabelSubzone: "s", LabelIstioSubzone: "i"}, "", registry.Locality{Region: "r", Zone: "z", Subzone: "s"}},
		{map[string]string{LabelZone: "z", LabelIstioSubzone: "i"}, "other", registry.Locality{Region: "home", Zone: "z", Subzone: "i"}},
		{nil, "z", registry.Locality{Region: "home", Zone: "z"}},
		{map[string]string{LabelSubzone: "s"}, "", registry.Locality{Region: "home"}}, // a subzone needs a zone
		{nil, "not a/label value", registry.Locality{Region: "home"}},
	}
	for _, tc := range cases {
		if got := localityOf(tc.labels, tc.sliceZone, "home"); got != tc.want {
			t.Errorf("localityOf(%v, %q) = %v, want %v", tc.labels, tc.sliceZone, got, tc.want)
		}
	}
}
