package v1alpha1

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Context is what the cross-object checks know of the mesh. A nil field is
// not checked against: without Regions, regions are not checked, and so on.
type Context struct {
	// Regions known to the mesh.
	Regions []string
	// Clusters by name, with their labels and region.
	Clusters map[string]ClusterInfo
	// Services known to the mesh.
	Services []ServiceInfo
}

// ClusterInfo is what the checks need of a cluster.
type ClusterInfo struct {
	Region string
	Labels map[string]string
}

// ServiceInfo is what the checks need of a service.
type ServiceInfo struct {
	Namespace, Name string
	Labels          map[string]string
}

// Finding is one problem found across objects. Errors mean the set should
// be refused (unless forced); warnings are accepted and shown.
type Finding struct {
	// Object is the object concerned, as Describe names it.
	Object  string
	Err     *field.Error
	Warning bool
}

func (f Finding) String() string {
	sev := "error"
	if f.Warning {
		sev = "warning"
	}
	return fmt.Sprintf("%s: %s: %v", sev, f.Object, f.Err)
}

// Findings is a list of findings.
type Findings []Finding

// Errors returns the findings that are not warnings.
func (fs Findings) Errors() Findings {
	return slices.DeleteFunc(slices.Clone(fs), func(f Finding) bool { return f.Warning })
}

// ServiceHost resolves a route or policy host written in namespace ns to a
// mesh service: "name" is a service of ns, "name.namespace" and
// "name.namespace.svc[.domain]" name one explicitly. Other hosts are
// external (ServiceEntry hosts, gateway hosts).
func ServiceHost(host, ns string) (namespace, name string, ok bool) {
	if strings.HasPrefix(host, "*") {
		return "", "", false
	}
	parts := strings.Split(host, ".")
	switch {
	case len(parts) == 1:
		return ns, parts[0], true
	case len(parts) == 2:
		return parts[1], parts[0], true
	case parts[2] == "svc":
		return parts[1], parts[0], true
	}
	return "", "", false
}

// ValidateSet runs the checks that need several objects or the state of
// the mesh: unknown regions and clusters, selectors that match nothing,
// objects that conflict (two failover policies or destination policies on
// one service, outlier detection set twice, two routes claiming a host,
// residency rules whose allowed sets do not meet), references to subsets
// and gateways that do not exist, and failover or routes towards places a
// residency rule forbids (warnings: residency wins). Each object is assumed
// to have passed its own Validate. Whether a residency rule strands a
// service with no allowed endpoint needs the endpoints: see
// locality.CheckResidency.
func ValidateSet(objs []Object, ctx Context) Findings {
	s := newSetCheck(objs, ctx)
	s.regions()
	s.selectors()
	s.conflicts()
	s.references()
	sort.SliceStable(s.out, func(i, j int) bool { return s.out[i].Object < s.out[j].Object })
	return s.out
}

type setCheck struct {
	ctx       Context
	objs      []Object
	out       Findings
	entries   map[string]bool // ServiceEntry hosts
	gateways  map[string]bool // namespace/name
	regionSet map[string]bool
}

func newSetCheck(objs []Object, ctx Context) *setCheck {
	s := &setCheck{ctx: ctx, objs: objs, entries: map[string]bool{}, gateways: map[string]bool{}}
	for _, o := range objs {
		switch o := o.(type) {
		case *ServiceEntry:
			for _, h := range o.Spec.Hosts {
				s.entries[h] = true
			}
		case *Gateway:
			s.gateways[o.Namespace+"/"+o.Name] = true
		}
	}
	if ctx.Regions != nil {
		s.regionSet = map[string]bool{}
		for _, r := range ctx.Regions {
			s.regionSet[r] = true
		}
	}
	return s
}

func (s *setCheck) add(o Object, warning bool, err *field.Error) {
	s.out = append(s.out, Finding{Object: Describe(o), Err: err, Warning: warning})
}

func (s *setCheck) region(o Object, r string, path *field.Path) {
	if s.regionSet != nil && !s.regionSet[r] {
		s.add(o, false, field.NotFound(path, r))
	}
}

func (s *setCheck) pattern(o Object, p LocalityPattern, path *field.Path) {
	if r, _, _ := strings.Cut(string(p), "/"); r != "*" {
		s.region(o, r, path)
	}
}

// regions checks every region an object names against the known ones.
func (s *setCheck) regions() {
	for _, o := range s.objs {
		spec := field.NewPath("spec")
		switch o := o.(type) {
		case *FailoverPolicy:
			for i, f := range o.Spec.Failover {
				s.region(o, f.From, spec.Child("failover").Index(i).Child("from"))
				for j, r := range f.To {
					s.region(o, r, spec.Child("failover").Index(i).Child("to").Index(j))
				}
			}
			for i, d := range o.Spec.Distribute {
				s.pattern(o, d.From, spec.Child("distribute").Index(i).Child("from"))
				for j, t := range d.To {
					s.pattern(o, t.Locality, spec.Child("distribute").Index(i).Child("to").Index(j).Child("locality"))
				}
			}
		case *ResidencyRule:
			for i, r := range o.Spec.AllowedRegions {
				s.region(o, r, spec.Child("allowedRegions").Index(i))
			}
		}
	}
}

// services returns the known services a selector picks; nil when services
// are unknown.
func (s *setCheck) services(o Object, sel ServiceSelector) []ServiceInfo {
	if s.ctx.Services == nil {
		return nil
	}
	var out []ServiceInfo
	for _, svc := range s.ctx.Services {
		if svc.Namespace == o.GetNamespace() && sel.Matches(svc.Name, svc.Labels) {
			out = append(out, svc)
		}
	}
	return out
}

// selectors reports selectors that match nothing.
func (s *setCheck) selectors() {
	for _, o := range s.objs {
		spec := field.NewPath("spec")
		var sel *ServiceSelector
		switch o := o.(type) {
		case *FailoverPolicy:
			sel = &o.Spec.Selector
		case *ResidencyRule:
			sel = &o.Spec.Selector
			if cs := o.Spec.ClusterSelector; cs != nil && s.ctx.Clusters != nil {
				if len(s.clustersMatching(cs)) == 0 {
					s.add(o, false, field.Invalid(spec.Child("clusterSelector"), metav1.FormatLabelSelector(cs), "matches no cluster: no endpoint could ever be allowed"))
				}
			}
		}
		if sel != nil && s.ctx.Services != nil && len(s.services(o, *sel)) == 0 {
			s.add(o, false, field.Invalid(spec.Child("selector"), describeSelector(*sel), "matches no service in namespace "+o.GetNamespace()))
		}
	}
}

func describeSelector(sel ServiceSelector) string {
	var parts []string
	if len(sel.Services) > 0 {
		parts = append(parts, "services="+strings.Join(sel.Services, ","))
	}
	if sel.Labels != nil {
		parts = append(parts, "labels="+metav1.FormatLabelSelector(sel.Labels))
	}
	if len(parts) == 0 {
		return "every service"
	}
	return strings.Join(parts, " ")
}

func (s *setCheck) clustersMatching(cs *metav1.LabelSelector) []string {
	sel, err := metav1.LabelSelectorAsSelector(cs)
	if err != nil {
		return nil
	}
	var out []string
	for name, c := range s.ctx.Clusters {
		if sel.Matches(labels.Set(c.Labels)) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// overlap reports whether two selectors of one namespace may pick the same
// service: exactly when services are known, conservatively otherwise
// (shared names, or a selector that picks everything).
func (s *setCheck) overlap(a, b Object, sa, sb ServiceSelector) (string, bool) {
	if a.GetNamespace() != b.GetNamespace() {
		return "", false
	}
	if s.ctx.Services != nil {
		for _, x := range s.services(a, sa) {
			if sb.Matches(x.Name, x.Labels) {
				return x.Name, true
			}
		}
		return "", false
	}
	all := func(x ServiceSelector) bool { return len(x.Services) == 0 && x.Labels == nil }
	switch {
	case all(sa) && all(sb):
		return "every service", true
	case all(sa) && sb.Labels == nil:
		return sb.Services[0], true
	case all(sb) && sa.Labels == nil:
		return sa.Services[0], true
	}
	if sa.Labels == nil && sb.Labels == nil {
		for _, n := range sa.Services {
			if slices.Contains(sb.Services, n) {
				return n, true
			}
		}
	}
	return "", false
}

func (s *setCheck) conflicts() {
	var failovers []*FailoverPolicy
	var rules []*ResidencyRule
	dests := map[string]*DestinationPolicy{}
	routes := map[string]*TrafficRoute{}
	for _, o := range s.objs {
		switch o := o.(type) {
		case *FailoverPolicy:
			failovers = append(failovers, o)
		case *ResidencyRule:
			rules = append(rules, o)
		case *DestinationPolicy:
			key := s.hostKey(o.Spec.Host, o.Namespace)
			if first, ok := dests[key]; ok {
				s.add(o, false, field.Duplicate(field.NewPath("spec", "host"), o.Spec.Host+" (also "+Describe(first)+")"))
				continue
			}
			dests[key] = o
		case *TrafficRoute:
			gws := o.Spec.Gateways
			if len(gws) == 0 {
				gws = []string{MeshGateway}
			}
			for i, h := range o.Spec.Hosts {
				for _, g := range gws {
					key := s.hostKey(h, o.Namespace) + "@" + g
					if first, ok := routes[key]; ok && first != o {
						s.add(o, false, field.Duplicate(field.NewPath("spec", "hosts").Index(i), h+" is also routed by "+Describe(first)+" for gateway "+g))
						continue
					}
					routes[key] = o
				}
			}
		}
	}
	spec := field.NewPath("spec")
	for i, a := range failovers {
		for _, b := range failovers[i+1:] {
			if svc, ok := s.overlap(a, b, a.Spec.Selector, b.Spec.Selector); ok {
				s.add(b, false, field.Invalid(spec.Child("selector"), svc, "also selected by "+Describe(a)+": one failover policy per service"))
			}
		}
		if a.Spec.OutlierDetection == nil {
			continue
		}
		for _, d := range dests {
			ns, name, ok := ServiceHost(d.Spec.Host, d.Namespace)
			if !ok || d.Spec.OutlierDetection == nil || ns != a.Namespace {
				continue
			}
			if a.Spec.Selector.Matches(name, s.serviceLabels(ns, name)) {
				s.add(d, false, field.Forbidden(spec.Child("outlierDetection"), "already set for "+name+" by "+Describe(a)+": set it in one place"))
			}
		}
	}
	for i, a := range rules {
		for _, b := range rules[i+1:] {
			if !a.Spec.Enforced() || !b.Spec.Enforced() || len(a.Spec.AllowedRegions) == 0 || len(b.Spec.AllowedRegions) == 0 {
				continue
			}
			svc, ok := s.overlap(a, b, a.Spec.Selector, b.Spec.Selector)
			if ok && !slices.ContainsFunc(a.Spec.AllowedRegions, func(r string) bool { return slices.Contains(b.Spec.AllowedRegions, r) }) {
				s.add(b, false, field.Invalid(spec.Child("allowedRegions"), b.Spec.AllowedRegions, "no region is allowed by both this rule and "+Describe(a)+" for "+svc+": the service could run nowhere"))
			}
		}
		for _, f := range failovers {
			s.failoverAgainstResidency(f, a)
		}
	}
}

func (s *setCheck) serviceLabels(ns, name string) map[string]string {
	for _, svc := range s.ctx.Services {
		if svc.Namespace == ns && svc.Name == name {
			return svc.Labels
		}
	}
	return nil
}

// failoverAgainstResidency warns about failover targets a residency rule
// forbids for a service both select: residency wins, the target is skipped.
func (s *setCheck) failoverAgainstResidency(f *FailoverPolicy, r *ResidencyRule) {
	if !r.Spec.Enforced() || len(r.Spec.AllowedRegions) == 0 {
		return
	}
	svc, ok := s.overlap(f, r, f.Spec.Selector, r.Spec.Selector)
	if !ok {
		return
	}
	spec := field.NewPath("spec")
	for i, fo := range f.Spec.Failover {
		for j, to := range fo.To {
			if !slices.Contains(r.Spec.AllowedRegions, to) {
				s.add(f, true, field.Invalid(spec.Child("failover").Index(i).Child("to").Index(j), to,
					"residency rule "+Describe(r)+" keeps "+svc+" out of this region: it is skipped"))
			}
		}
	}
	for i, d := range f.Spec.Distribute {
		for j, t := range d.To {
			if reg, _, _ := strings.Cut(string(t.Locality), "/"); reg != "*" && !slices.Contains(r.Spec.AllowedRegions, reg) {
				s.add(f, true, field.Invalid(spec.Child("distribute").Index(i).Child("to").Index(j).Child("locality"), t.Locality,
					"residency rule "+Describe(r)+" keeps "+svc+" out of this region: its weight is dropped"))
			}
		}
	}
}

// hostKey canonicalizes a host: "name.namespace" for mesh services, the
// host itself for ServiceEntry and other external hosts.
func (s *setCheck) hostKey(host, ns string) string {
	if s.entries[host] {
		return host
	}
	if n, name, ok := ServiceHost(host, ns); ok {
		return name + "." + n
	}
	return host
}

// references checks that routes name existing subsets, gateways and
// clusters.
func (s *setCheck) references() {
	subsets := map[string][]string{}
	for _, o := range s.objs {
		if d, ok := o.(*DestinationPolicy); ok {
			for _, sub := range d.Spec.Subsets {
				key := s.hostKey(d.Spec.Host, d.Namespace)
				subsets[key] = append(subsets[key], sub.Name)
			}
		}
	}
	spec := field.NewPath("spec")
	for _, o := range s.objs {
		r, ok := o.(*TrafficRoute)
		if !ok {
			continue
		}
		for i, g := range r.Spec.Gateways {
			if g != MeshGateway && !s.gateways[r.Namespace+"/"+g] {
				s.add(r, false, field.NotFound(spec.Child("gateways").Index(i), g))
			}
		}
		check := func(d Destination, path *field.Path) {
			if d.Subset != "" && !slices.Contains(subsets[s.hostKey(d.Host, r.Namespace)], d.Subset) {
				s.add(r, false, field.NotFound(path.Child("subset"), d.Subset))
			}
			if d.Cluster != "" && s.ctx.Clusters != nil {
				if _, ok := s.ctx.Clusters[d.Cluster]; !ok {
					s.add(r, false, field.NotFound(path.Child("cluster"), d.Cluster))
				}
			}
		}
		for i, h := range r.Spec.HTTP {
			p := spec.Child("http").Index(i)
			for j, d := range h.Route {
				check(d.Destination, p.Child("route").Index(j))
			}
			if h.Mirror != nil {
				check(h.Mirror.Destination, p.Child("mirror"))
			}
		}
		for i, t := range r.Spec.TCP {
			for j, d := range t.Route {
				check(d.Destination, spec.Child("tcp").Index(i).Child("route").Index(j))
			}
		}
	}
}
