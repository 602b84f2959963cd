package kube

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/registry"
)

// Node labels that give an endpoint its locality. Region and zone are the
// standard Kubernetes labels. Kubernetes has no subzone label: Meridian
// reads its own, and Istio's for clusters already labelled for Istio.
const (
	LabelRegion       = corev1.LabelTopologyRegion // topology.kubernetes.io/region
	LabelZone         = corev1.LabelTopologyZone   // topology.kubernetes.io/zone
	LabelSubzone      = "topology.meridian.io/subzone"
	LabelIstioSubzone = "topology.istio.io/subzone"
)

// serviceInput is everything the conversion of one Service reads, taken
// from the informers' caches. Pod and Node return nil for objects the
// caches do not hold (yet).
type serviceInput struct {
	Service *corev1.Service // nil: no such Service
	Slices  []*discoveryv1.EndpointSlice
	Pod     func(namespace, name string) *corev1.Pod
	Node    func(name string) *corev1.Node
}

// target is the cluster the endpoints belong to. Region is the fallback for
// endpoints whose node carries no region label.
type target struct {
	Cluster string
	Region  string
}

// converted is what one Service becomes in the registry: its definition
// (nil when the Service does not exist or cannot be represented) and its
// endpoints.
type converted struct {
	Service   *registry.Service
	Endpoints []*registry.Endpoint
}

// convert turns one Service, its EndpointSlices and the Pods and Nodes they
// point at into registry values. It is a pure function of its input. Parts
// that cannot be represented are left out and reported, each error naming
// the object and field; the rest of the Service still converts.
//
// Endpoints are keyed by the Pod of their targetRef, else by address, so
// that one Pod listed in an IPv4 and an IPv6 slice becomes one dual-stack
// endpoint; there is one endpoint per Service port the slices carry, named
// after the Service port (slice ports map to Service ports by name).
func convert(t target, in serviceInput) (converted, field.ErrorList) {
	svc := in.Service
	if svc == nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return converted{}, nil
	}
	var errs field.ErrorList
	svcPath := field.NewPath("Service").Key(svc.Namespace + "/" + svc.Name)
	def := &registry.Service{
		Namespace: svc.Namespace, Name: svc.Name, Labels: svc.Labels,
		Headless: svc.Spec.ClusterIP == corev1.ClusterIPNone,
	}
	ports := map[string]registry.ServicePort{}
	for i, p := range svc.Spec.Ports {
		proto, ok := protocolOf(p)
		if !ok {
			errs = append(errs, field.NotSupported(svcPath.Child("spec", "ports").Index(i).Child("protocol"), p.Protocol, supportedProtocols))
			continue
		}
		sp := registry.ServicePort{Name: p.Name, Port: uint32(p.Port), Protocol: proto}
		def.Ports = append(def.Ports, sp)
		ports[p.Name] = sp
	}
	if verrs := registry.ValidateService(def, svcPath); len(verrs) > 0 {
		return converted{}, append(errs, verrs...)
	}

	primary := discoveryv1.AddressTypeIPv4
	if len(svc.Spec.IPFamilies) > 0 {
		primary = discoveryv1.AddressType(svc.Spec.IPFamilies[0])
	}
	b := endpointBuilder{t: t, in: in, svc: def.Key(), byKey: map[registry.EndpointKey]*registry.Endpoint{}}
	// Slice order decides which address wins when a Pod shows up twice in
	// one family (a controller mid-way through moving it): first by name.
	sorted := slices.SortedFunc(slices.Values(in.Slices), func(a, b *discoveryv1.EndpointSlice) int {
		return strings.Compare(a.Name, b.Name)
	})
	for _, sl := range sorted {
		errs = append(errs, b.addSlice(sl, ports)...)
	}

	out := converted{Service: def}
	for _, e := range b.byKey {
		slices.SortFunc(e.Addresses, func(x, y string) int { return cmpAddr(x, y, primary) })
		epPath := field.NewPath("Endpoint").Key(e.ID + "/" + e.PortName)
		if verrs := registry.ValidateEndpoint(e, epPath); len(verrs) > 0 {
			errs = append(errs, verrs...)
			continue
		}
		out.Endpoints = append(out.Endpoints, e)
	}
	slices.SortFunc(out.Endpoints, func(a, b *registry.Endpoint) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), strings.Compare(a.PortName, b.PortName))
	})
	return out, errs
}

type endpointBuilder struct {
	t     target
	in    serviceInput
	svc   registry.ServiceKey
	byKey map[registry.EndpointKey]*registry.Endpoint
}

func (b *endpointBuilder) addSlice(sl *discoveryv1.EndpointSlice, ports map[string]registry.ServicePort) field.ErrorList {
	var errs field.ErrorList
	path := field.NewPath("EndpointSlice").Key(sl.Namespace + "/" + sl.Name)
	var family discoveryv1.AddressType
	switch sl.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
		family = sl.AddressType
	default:
		// FQDN slices name hosts, not workloads Meridian can address.
		return nil
	}
	type portMap struct {
		name   string
		number uint32
	}
	var pms []portMap
	for i, p := range sl.Ports {
		name := deref(p.Name)
		if _, ok := ports[name]; !ok {
			continue // a port the Service no longer has
		}
		if p.Port == nil || *p.Port < 1 || *p.Port > 65535 {
			// A nil port means "all ports", which has no endpoint form.
			errs = append(errs, field.Invalid(path.Child("ports").Index(i).Child("port"), p.Port, "want a port number between 1 and 65535"))
			continue
		}
		pms = append(pms, portMap{name, uint32(*p.Port)})
	}
	for i, ep := range sl.Endpoints {
		if len(ep.Addresses) == 0 {
			continue
		}
		// Consumers use the first address only: the others are fungible.
		addr, err := netip.ParseAddr(ep.Addresses[0])
		if err != nil || addr.Zone() != "" || addr.Is4() != (family == discoveryv1.AddressTypeIPv4) {
			errs = append(errs, field.Invalid(path.Child("endpoints").Index(i).Child("addresses").Index(0), ep.Addresses[0], "not an address of the slice's type "+string(family)))
			continue
		}
		id := addr.String()
		var pod *corev1.Pod
		if r := ep.TargetRef; r != nil && r.Kind == "Pod" && r.Name != "" {
			id = r.Name
			pod = b.in.Pod(sl.Namespace, r.Name)
		}
		health := healthOf(ep.Conditions)
		for _, pm := range pms {
			key := registry.EndpointKey{Service: b.svc, ID: id, PortName: pm.name}
			if e, ok := b.byKey[key]; ok {
				e.Health = min(e.Health, health) // the most serving state wins
				if !slices.ContainsFunc(e.Addresses, func(a string) bool { return sameFamily(a, addr) }) {
					e.Addresses = append(e.Addresses, addr.String())
				}
				continue
			}
			b.byKey[key] = b.endpoint(key, addr, pm.number, health, ep, pod)
		}
	}
	return errs
}

func (b *endpointBuilder) endpoint(key registry.EndpointKey, addr netip.Addr, port uint32, h registry.Health, ep discoveryv1.Endpoint, pod *corev1.Pod) *registry.Endpoint {
	e := &registry.Endpoint{
		Service: key.Service, Cluster: b.t.Cluster, ID: key.ID, PortName: key.PortName,
		Addresses: []string{addr.String()}, Port: port, Health: h,
	}
	nodeName := deref(ep.NodeName)
	if pod != nil {
		e.Labels = pod.Labels
		// An empty service account is "default": what the Pod runs as.
		e.ServiceAccount = cmp.Or(pod.Spec.ServiceAccountName, "default")
		nodeName = cmp.Or(nodeName, pod.Spec.NodeName)
	}
	var nodeLabels map[string]string
	if nodeName != "" {
		if n := b.in.Node(nodeName); n != nil {
			nodeLabels = n.Labels
		}
	}
	e.Locality = localityOf(nodeLabels, deref(ep.Zone), b.t.Region)
	return e
}

// healthOf maps EndpointSlice conditions to registry health:
//
//	terminating  serving  ready   health
//	no           -        yes     Healthy
//	no           -        no      Unhealthy
//	yes          yes      -       Draining   (finishing, no new traffic)
//	yes          no       -       Unhealthy
//
// As the API says, a nil ready means true. A nil serving takes ready's
// value: controllers that predate the serving condition leave it unset, and
// for them a not-ready terminating endpoint is not serving.
func healthOf(c discoveryv1.EndpointConditions) registry.Health {
	ready := c.Ready == nil || *c.Ready
	serving := ready
	if c.Serving != nil {
		serving = *c.Serving
	}
	switch {
	case c.Terminating != nil && *c.Terminating:
		if serving {
			return registry.Draining
		}
		return registry.Unhealthy
	case ready:
		return registry.Healthy
	default:
		return registry.Unhealthy
	}
}

// localityOf derives an endpoint's locality from its Node's labels, falling
// back to the slice's zone and to the cluster's region. A part that is not
// a valid label value is dropped, and a subzone without a zone with it, so
// the result is always a valid locality when region is.
func localityOf(nodeLabels map[string]string, sliceZone, region string) registry.Locality {
	l := registry.Locality{
		Region:  cmp.Or(nodeLabels[LabelRegion], region),
		Zone:    cmp.Or(nodeLabels[LabelZone], sliceZone),
		Subzone: cmp.Or(nodeLabels[LabelSubzone], nodeLabels[LabelIstioSubzone]),
	}
	valid := func(s string) bool { return len(validation.IsValidLabelValue(s)) == 0 }
	if !valid(l.Region) {
		l.Region = region
	}
	if !valid(l.Zone) {
		l.Zone = ""
	}
	if l.Zone == "" || !valid(l.Subzone) {
		l.Subzone = ""
	}
	return l
}

var supportedProtocols = []string{string(corev1.ProtocolTCP), string(corev1.ProtocolUDP)}

// protocolOf reads a Service port's application protocol the way Istio
// users label it: appProtocol first ("http", "grpc", "kubernetes.io/h2c",
// ...), then the port name's prefix before the first "-" ("http-web",
// "grpc"), else the transport. ok is false for SCTP, which Meridian does
// not carry.
func protocolOf(p corev1.ServicePort) (proto registry.Protocol, ok bool) {
	switch p.Protocol {
	case corev1.ProtocolUDP:
		return registry.ProtocolUDP, true
	case corev1.ProtocolTCP, "":
	default:
		return "", false
	}
	if p.AppProtocol != nil {
		if proto, ok := appProtocols[strings.ToLower(*p.AppProtocol)]; ok {
			return proto, true
		}
	}
	prefix, _, _ := strings.Cut(strings.ToLower(p.Name), "-")
	if proto, ok := appProtocols[prefix]; ok {
		return proto, true
	}
	return registry.ProtocolTCP, true
}

var appProtocols = map[string]registry.Protocol{
	"http":              registry.ProtocolHTTP,
	"kubernetes.io/ws":  registry.ProtocolHTTP,
	"http2":             registry.ProtocolHTTP2,
	"h2c":               registry.ProtocolHTTP2,
	"kubernetes.io/h2c": registry.ProtocolHTTP2,
	"grpc":              registry.ProtocolGRPC,
	"https":             registry.ProtocolTLS,
	"tls":               registry.ProtocolTLS,
	"kubernetes.io/wss": registry.ProtocolTLS,
	"tcp":               registry.ProtocolTCP,
}

// cmpAddr orders a dual-stack endpoint's addresses: the Service's primary
// family first.
func cmpAddr(x, y string, primary discoveryv1.AddressType) int {
	rank := func(s string) int {
		a, _ := netip.ParseAddr(s)
		if a.Is4() == (primary == discoveryv1.AddressTypeIPv4) {
			return 0
		}
		return 1
	}
	return cmp.Or(cmp.Compare(rank(x), rank(y)), strings.Compare(x, y))
}

func sameFamily(s string, a netip.Addr) bool {
	b, err := netip.ParseAddr(s)
	return err == nil && b.Is4() == a.Is4()
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
