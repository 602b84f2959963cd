package locality

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/registry"
)

// CheckResidency reports every enforced residency rule that leaves a
// service with endpoints but none allowed anywhere, whatever their health:
// applying it would cut the service off everywhere. The API refuses such a
// rule unless forced. Services without endpoints are not reported: there
// is nothing to strand yet.
func (e *Engine) CheckResidency(v *registry.View) v1alpha1.Findings {
	if e == nil || len(e.residency) == 0 {
		return nil
	}
	var out v1alpha1.Findings
	for _, k := range v.ServiceKeys() {
		st := e.service(v, k)
		if st.total == 0 || len(st.groups) > 0 {
			continue
		}
		var regions []string
		rules := map[string]bool{}
		for _, b := range st.blocked {
			if !slices.Contains(regions, b.Locality.Region) {
				regions = append(regions, b.Locality.Region)
			}
			rules[b.Rule.Policy] = true
		}
		slices.Sort(regions)
		for _, r := range e.residency {
			name := v1alpha1.Describe(r.obj)
			if !rules[name] {
				continue
			}
			out = append(out, v1alpha1.Finding{Object: name, Err: field.Invalid(field.NewPath("spec"), k.String(),
				fmt.Sprintf("leaves %s with no allowed endpoint: its %d endpoints run in %s", k, st.total, strings.Join(regions, ", ")))})
		}
	}
	return out
}

// ResidencyStatus is what residency rules do to one service now.
type ResidencyStatus struct {
	Service registry.ServiceKey
	// Blocked are the endpoints enforced rules keep away from every
	// client; Audited those audit-mode rules would.
	Blocked, Audited []Blocked
	// Serving counts the allowed endpoints that get new traffic: with none
	// while some are blocked, every request fails rather than leave the
	// allowed places.
	Serving int
}

// Residency reports every service with endpoints that a residency rule
// selects, in the view's service order.
func (e *Engine) Residency(v *registry.View) []ResidencyStatus {
	if e == nil || len(e.residency) == 0 {
		return nil
	}
	var out []ResidencyStatus
	for _, k := range v.ServiceKeys() {
		st := e.service(v, k)
		if !st.resident || st.total == 0 {
			continue
		}
		a := e.arrange(st, Client{})
		out = append(out, ResidencyStatus{Service: k, Blocked: st.blocked, Audited: st.audited, Serving: a.Serving()})
	}
	return out
}

// ContextOf returns what v1alpha1.ValidateSet needs to know of the mesh:
// its regions, clusters and services.
func ContextOf(v *registry.View) v1alpha1.Context {
	ctx := v1alpha1.Context{Regions: []string{}, Clusters: map[string]v1alpha1.ClusterInfo{}, Services: []v1alpha1.ServiceInfo{}}
	addRegion := func(r string) {
		if r != "" && !slices.Contains(ctx.Regions, r) {
			ctx.Regions = append(ctx.Regions, r)
		}
	}
	for _, name := range v.Clusters() {
		cl := v.Segment(name).Cluster()
		ctx.Clusters[name] = v1alpha1.ClusterInfo{Region: cl.Region, Labels: cl.Labels}
		addRegion(cl.Region)
	}
	for _, k := range v.ServiceKeys() {
		si := v1alpha1.ServiceInfo{Namespace: k.Namespace, Name: k.Name}
		if def, ok := v.Service(k); ok {
			si.Labels = def.Labels
		}
		ctx.Services = append(ctx.Services, si)
		for _, e := range v.Endpoints(k) {
			addRegion(e.Locality.Region)
		}
	}
	slices.Sort(ctx.Regions)
	return ctx
}
