package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/meridian-mesh/meridian/lab"
)

// nodeName is the one Node of each zone.
func nodeName(zone string) string { return zone + "-node" }

// podName names an instance's Pod: SERVICE-N, N its index in the cluster.
func podName(i int, in lab.Instance) string { return fmt.Sprintf("%s-%d", in.Service, i) }

// publish writes a cluster's instances to its API server as a cluster's
// controllers would have: a Node per zone (with the topology labels), the
// namespace, a Service per demo service (gRPC port 9090), a Pod per
// instance (labels app and version, on its zone's Node, running as the
// service account its sidecar has the SVID of) and an
// EndpointSlice per service listing the instances, ready.
func publish(ctx context.Context, kc kubernetes.Interface, c *lab.ClusterState) error {
	for _, z := range c.Zones {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName(z), Labels: map[string]string{
			corev1.LabelTopologyRegion: c.Region, corev1.LabelTopologyZone: z}}}
		if _, err := kc.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: lab.Namespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	slices := map[string]*discoveryv1.EndpointSlice{}
	var order []string
	for i, in := range c.Instances {
		host, _, err := net.SplitHostPort(in.Address)
		if err != nil {
			return err
		}
		labels := map[string]string{"app": in.Service}
		if in.Version != "" {
			labels["version"] = in.Version
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: podName(i, in), Namespace: lab.Namespace, Labels: labels},
			Spec: corev1.PodSpec{NodeName: nodeName(in.Zone), ServiceAccountName: in.ServiceAccount(), Containers: []corev1.Container{{
				Name: "app", Image: "meridian-demo", Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: lab.DemoPort}}}}},
		}
		if _, err := kc.CoreV1().Pods(lab.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return err
		}
		s := slices[in.Service]
		if s == nil {
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: in.Service, Namespace: lab.Namespace, Labels: map[string]string{"app": in.Service}},
				Spec: corev1.ServiceSpec{Selector: map[string]string{"app": in.Service}, Ports: []corev1.ServicePort{{
					Name: "grpc", Port: lab.DemoPort, AppProtocol: ptr.To("grpc")}}},
			}
			if _, err := kc.CoreV1().Services(lab.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				return err
			}
			s = &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{Name: in.Service + "-lab", Namespace: lab.Namespace,
					Labels: map[string]string{discoveryv1.LabelServiceName: in.Service}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To[int32](lab.DemoPort), AppProtocol: ptr.To("grpc")}},
			}
			slices[in.Service] = s
			order = append(order, in.Service)
		}
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{host},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			NodeName:   ptr.To(nodeName(in.Zone)),
			Zone:       ptr.To(in.Zone),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: lab.Namespace, Name: pod.Name},
		})
	}
	for _, svc := range order {
		if _, err := kc.DiscoveryV1().EndpointSlices(lab.Namespace).Create(ctx, slices[svc], metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// setReady marks the endpoints of one service in some zones ready or not,
// as a readiness probe would.
func setReady(ctx context.Context, kc kubernetes.Interface, service string, zones []string, ready bool) error {
	s, err := kc.DiscoveryV1().EndpointSlices(lab.Namespace).Get(ctx, service+"-lab", metav1.GetOptions{})
	if err != nil {
		return err
	}
	for i, e := range s.Endpoints {
		for _, z := range zones {
			if e.Zone != nil && *e.Zone == z {
				s.Endpoints[i].Conditions.Ready = ptr.To(ready)
			}
		}
	}
	_, err = kc.DiscoveryV1().EndpointSlices(lab.Namespace).Update(ctx, s, metav1.UpdateOptions{})
	return err
}

// reachableKubeconfig writes a copy of a kubeconfig whose server is
// addr (a forwarder a cluster's namespace can reach) while the TLS name
// checked stays the API server's own.
func reachableKubeconfig(src, dst, addr string) error {
	cfg, err := clientcmd.LoadFromFile(src)
	if err != nil {
		return err
	}
	for _, c := range cfg.Clusters {
		if !strings.HasPrefix(c.Server, "https://") {
			return fmt.Errorf("%s: server %q is not https", src, c.Server)
		}
		c.Server = "https://" + addr
		c.TLSServerName = "localhost"
	}
	return clientcmd.WriteToFile(*cfg, dst)
}
