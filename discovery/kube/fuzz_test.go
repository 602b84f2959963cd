package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/registry"
)

// FuzzConvert feeds conversion objects as an API server might hold them,
// field by field from the fuzzer: whatever they hold, conversion must not
// panic, everything it returns must pass the registry's validation (so a
// batch is never refused), and endpoint keys must be unique.
func FuzzConvert(f *testing.F) {
	f.Add("10.0.0.1", true, "http", int32(8080), "", "web-1", "web", "n1", "eu-west-1", "eu-west-1a", "rack1", "z")
	f.Add("fd00::1", false, "grpc-api", int32(9090), "kubernetes.io/h2c", "web-2", "", "", "", "", "", "")
	f.Add("::ffff:10.0.0.1", false, "", int32(0), "", "", "Bad_SA", "n1", "Bad Region", "-zone", "s", "zone/x")
	f.Add("10.0.0.1%eth0", true, "UPPER", int32(70000), "grpc", "x", "sa", "n", "r", "", "s", "")
	f.Fuzz(func(t *testing.T, addr string, v4 bool, portName string, portNum int32, appProto, podName, sa, nodeName, region, zone, subzone, sliceZone string) {
		family := discoveryv1.AddressTypeIPv6
		if v4 {
			family = discoveryv1.AddressTypeIPv4
		}
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: portName, Port: 80, AppProtocol: &appProto}}},
		}
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "web-a"},
			AddressType: family,
			Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &portNum}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{addr}, NodeName: &nodeName, Zone: &sliceZone, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: podName}},
				{Addresses: []string{addr}, Zone: &sliceZone},
			},
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName, Labels: map[string]string{"version": subzone}}, Spec: corev1.PodSpec{ServiceAccountName: sa}}
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{LabelRegion: region, LabelZone: zone, LabelSubzone: subzone}}}
		in := serviceInput{
			Service: s, Slices: []*discoveryv1.EndpointSlice{sl},
			Pod:  func(string, string) *corev1.Pod { return pod },
			Node: func(string) *corev1.Node { return node },
		}
		got, _ := convert(target{Cluster: "c1", Region: "home"}, in)
		if got.Service != nil {
			if errs := registry.ValidateService(got.Service, field.NewPath("service")); len(errs) > 0 {
				t.Fatalf("invalid service: %v", errs)
			}
		}
		seen := map[registry.EndpointKey]bool{}
		for _, e := range got.Endpoints {
			if errs := registry.ValidateEndpoint(e, field.NewPath("endpoint")); len(errs) > 0 {
				t.Fatalf("invalid endpoint %+v: %v", e, errs)
			}
			if seen[e.Key()] {
				t.Fatalf("duplicate endpoint key %+v", e.Key())
			}
			seen[e.Key()] = true
		}
		if l := localityOf(node.Labels, sliceZone, "home"); len(registry.ValidateLocality(l, field.NewPath("locality"))) > 0 {
			t.Fatalf("invalid locality %+v", l)
		}
	})
}
