package authz

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/trust"
)

// Workload is what decides which policies apply: the namespace and labels
// of the workload receiving the request.
type Workload struct {
	Namespace string
	Labels    map[string]string
}

// Applies reports whether an object with this metadata and selector applies
// to w: a selector-less object in v1alpha1.MeshNamespace applies to every
// workload, a selector-less one elsewhere to its namespace, and one with a
// selector to the workloads of its namespace it matches.
func Applies(meta metav1.ObjectMeta, sel *metav1.LabelSelector, w Workload) bool {
	if sel == nil {
		return meta.Namespace == v1alpha1.MeshNamespace || meta.Namespace == w.Namespace
	}
	if meta.Namespace != w.Namespace {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(labels.Set(w.Labels))
}

// Peer is the authenticated other end of a connection.
type Peer struct {
	// ID from the peer's verified certificate; zero for a plaintext peer
	// (PERMISSIVE mode).
	ID spiffeid.ID
	// Cluster whose intermediate issued the peer's certificate; "" when
	// unknown.
	Cluster string
}

// PeerFromChain reads a peer from what go-spiffe's tlsconfig hands an
// authorizer: its ID and the verified chains. The cluster is the one named
// by the issuing intermediate's URI SAN (spiffe://TD/meridian/cluster/NAME):
// only the root can put it there, unlike the leaf's subject.
func PeerFromChain(id spiffeid.ID, chains [][]*x509.Certificate) Peer {
	p := Peer{ID: id}
	for _, chain := range chains {
		if len(chain) > 1 && len(chain[1].URIs) == 1 {
			if cid, err := spiffeid.FromURI(chain[1].URIs[0]); err == nil && cid.MemberOf(id.TrustDomain()) {
				if c, ok := trust.ParseClusterID(cid); ok {
					p.Cluster = c
					return p
				}
			}
		}
	}
	return p
}

// Request is what a policy looks at.
type Request struct {
	Peer Peer
	// RequestPrincipal is ISSUER/SUBJECT of a validated end-user JWT
	// (package jwt), "" without one.
	RequestPrincipal string
	Method           string
	// Path may carry a query string; it is ignored.
	Path    string
	Headers http.Header
}

// Decision is the verdict and why.
type Decision struct {
	Allow bool
	// Policy is NAMESPACE/NAME[rule N] of the policy that decided, "" when
	// no policy did.
	Policy string
	Reason string
}

// Policies are the AuthorizationPolicies that apply to one workload,
// compiled. A nil or empty Policies allows everything.
type Policies struct {
	deny, allow []policy
}

type policy struct {
	name  string // namespace/name
	rules []rule
}

type rule struct {
	from []source
	to   []operation
	when []condition
}

type source struct{ principals, namespaces, clusters, requestPrincipals field }

type operation struct{ methods, paths field }

type condition struct {
	header string
	values field
}

// Compile selects the AuthorizationPolicies among objs that apply to w and
// compiles them. Other kinds are ignored. An invalid policy is an error
// naming it: a policy set is applied whole or not at all.
func Compile(objs []v1alpha1.Object, w Workload) (*Policies, error) {
	ps := &Policies{}
	for _, o := range objs {
		ap, ok := o.(*v1alpha1.AuthorizationPolicy)
		if !ok || !Applies(ap.ObjectMeta, ap.Spec.Selector, w) {
			continue
		}
		if errs := ap.Validate(); len(errs) > 0 {
			return nil, fmt.Errorf("authz: %s: %w", v1alpha1.Describe(ap), errs.ToAggregate())
		}
		p := policy{name: ap.Namespace + "/" + ap.Name}
		for _, r := range ap.Spec.Rules {
			p.rules = append(p.rules, compileRule(r))
		}
		if ap.Spec.Action == v1alpha1.ActionDeny {
			ps.deny = append(ps.deny, p)
		} else {
			ps.allow = append(ps.allow, p)
		}
	}
	return ps, nil
}

func compileRule(r v1alpha1.AuthorizationRule) rule {
	var out rule
	for _, s := range r.From {
		out.from = append(out.from, source{
			principals:        newField(s.Principals, s.NotPrincipals),
			namespaces:        newField(s.Namespaces, s.NotNamespaces),
			clusters:          newField(s.Clusters, s.NotClusters),
			requestPrincipals: newField(s.RequestPrincipals, s.NotRequestPrincipals),
		})
	}
	for _, o := range r.To {
		out.to = append(out.to, operation{methods: newField(o.Methods, o.NotMethods), paths: newField(o.Paths, o.NotPaths)})
	}
	for _, c := range r.When {
		out.when = append(out.when, condition{header: http.CanonicalHeaderKey(c.Header), values: newField(c.Values, c.NotValues)})
	}
	return out
}

// Authorize decides a request: a matching DENY rule denies; then, if there
// are ALLOW policies, a matching ALLOW rule allows and anything else is
// denied; with no ALLOW policy the request is allowed.
func (ps *Policies) Authorize(r Request) Decision {
	if ps == nil {
		return Decision{Allow: true, Reason: "no authorization policy"}
	}
	if name, ok := firstMatch(ps.deny, r); ok {
		return Decision{Allow: false, Policy: name, Reason: "denied by " + name}
	}
	if len(ps.allow) == 0 {
		return Decision{Allow: true, Reason: "no ALLOW policy applies"}
	}
	if name, ok := firstMatch(ps.allow, r); ok {
		return Decision{Allow: true, Policy: name, Reason: "allowed by " + name}
	}
	return Decision{Allow: false, Reason: "no ALLOW rule matched"}
}

func firstMatch(ps []policy, r Request) (string, bool) {
	for _, p := range ps {
		for i, ru := range p.rules {
			if ru.match(r) {
				return fmt.Sprintf("%s[rule %d]", p.name, i), true
			}
		}
	}
	return "", false
}

func (ru rule) match(r Request) bool {
	if len(ru.from) > 0 && !anyOf(ru.from, func(s source) bool { return s.match(r) }) {
		return false
	}
	if len(ru.to) > 0 && !anyOf(ru.to, func(o operation) bool { return o.match(r) }) {
		return false
	}
	for _, c := range ru.when {
		// Several values of one header are matched joined by commas, as
		// Envoy's header matcher sees them.
		if !c.values.match(strings.Join(r.Headers.Values(c.header), ",")) {
			return false
		}
	}
	return true
}

func anyOf[T any](xs []T, f func(T) bool) bool {
	for _, x := range xs {
		if f(x) {
			return true
		}
	}
	return false
}

func (s source) match(r Request) bool {
	id := ""
	if !r.Peer.ID.IsZero() {
		id = r.Peer.ID.String()
	}
	ns, _, _ := trust.ParseWorkloadID(r.Peer.ID)
	return s.principals.match(id) && s.namespaces.match(ns) && s.clusters.match(r.Peer.Cluster) &&
		s.requestPrincipals.match(r.RequestPrincipal)
}

func (o operation) match(r Request) bool {
	path, _, _ := strings.Cut(r.Path, "?")
	return o.methods.match(r.Method) && o.paths.match(path)
}
