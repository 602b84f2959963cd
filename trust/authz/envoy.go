package authz

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	expr "google.golang.org/genproto/googleapis/api/expr/v1alpha1"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/trust/jwt"
)

// RBACFilterName is Envoy's RBAC HTTP filter.
const RBACFilterName = "envoy.filters.http.rbac"

// HTTPFilters is what a workload's inbound HTTP connection manager needs
// before its router, in order: the JWT filter (when RequestAuthentications
// apply), the DENY RBAC filter (when DENY policies apply) and the ALLOW
// RBAC filter (when ALLOW policies apply). It also returns the clusters
// remote JWKS need. ras and ps are the objects that apply to the workload
// (SelectRequestAuthentications, Compile).
func HTTPFilters(ps *Policies, ras []*v1alpha1.RequestAuthentication) ([]*hcm.HttpFilter, []jwt.JWKSCluster, error) {
	var out []*hcm.HttpFilter
	rules := JWTRules(ras)
	jf, clusters, err := jwt.EnvoyFilter(rules)
	if err != nil {
		return nil, nil, err
	}
	if jf != nil {
		out = append(out, jf)
	}
	rbac, err := RBAC(ps, jwt.Issuers(rules))
	if err != nil {
		return nil, nil, err
	}
	return append(out, rbac...), clusters, nil
}

// JWTRules converts RequestAuthentications (validated: see
// RequestAuthentication.Validate) to package jwt's rules, each named
// NAMESPACE/NAME[INDEX] after its object and place.
func JWTRules(ras []*v1alpha1.RequestAuthentication) []jwt.Rule {
	var out []jwt.Rule
	for _, ra := range ras {
		for i, jr := range ra.Spec.JWTRules {
			r := jwt.Rule{
				Name:   fmt.Sprintf("%s/%s[%d]", ra.Namespace, ra.Name, i),
				Issuer: jr.Issuer, Audiences: jr.Audiences, JWKS: jr.JWKS, JWKSURI: jr.JWKSURI,
				PrincipalClaim: jr.PrincipalClaim,
			}
			if jr.JWKSCacheDuration != nil {
				r.CacheDuration = jr.JWKSCacheDuration.Duration
			}
			for _, h := range jr.FromHeaders {
				r.FromHeaders = append(r.FromHeaders, jwt.Header{Name: h.Name, Prefix: h.Prefix})
			}
			out = append(out, r)
		}
	}
	return out
}

// SelectRequestAuthentications returns the RequestAuthentications among
// objs that apply to w.
func SelectRequestAuthentications(objs []v1alpha1.Object, w Workload) []*v1alpha1.RequestAuthentication {
	var out []*v1alpha1.RequestAuthentication
	for _, o := range objs {
		if ra, ok := o.(*v1alpha1.RequestAuthentication); ok && Applies(ra.ObjectMeta, ra.Spec.Selector, w) {
			out = append(out, ra)
		}
	}
	return out
}

// RBAC translates compiled policies to Envoy RBAC filters with the meaning
// of Authorize: a DENY filter, then an ALLOW filter (empty, hence denying
// everything, when ALLOW policies exist but none has a rule). issuers maps
// each accepted JWT issuer to its principal claim (jwt.Issuers of
// JWTRules), for
// requestPrincipals.
//
// What Envoy sees differs in two places, both documented in the package:
// a peer's cluster is read from the OU of its certificate's subject (a CEL
// condition), not from its intermediate; and a requestPrincipals suffix
// pattern ("*x") is matched against the principal claim only.
func RBAC(ps *Policies, issuers map[string]string) ([]*hcm.HttpFilter, error) {
	if ps == nil {
		return nil, nil
	}
	var out []*hcm.HttpFilter
	for _, set := range []struct {
		action rbacv3.RBAC_Action
		ps     []policy
	}{{rbacv3.RBAC_DENY, ps.deny}, {rbacv3.RBAC_ALLOW, ps.allow}} {
		if len(set.ps) == 0 {
			continue
		}
		rules := &rbacv3.RBAC{Action: set.action, Policies: map[string]*rbacv3.Policy{}}
		for _, p := range set.ps {
			for i, r := range p.rules {
				for name, pol := range r.envoy(fmt.Sprintf("%s[rule %d]", p.name, i), issuers) {
					rules.Policies[name] = pol
				}
			}
		}
		cfg := &rbachttp.RBAC{Rules: rules}
		if err := cfg.ValidateAll(); err != nil {
			return nil, fmt.Errorf("authz: RBAC: %w", err)
		}
		a, err := anypb.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("authz: RBAC: %w", err)
		}
		out = append(out, &hcm.HttpFilter{Name: RBACFilterName, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: a}})
	}
	return out, nil
}

// envoy gives one Envoy policy per source of the rule (Envoy ORs policies,
// as a rule ORs its sources), each with the rule's whole permission.
func (ru rule) envoy(name string, issuers map[string]string) map[string]*rbacv3.Policy {
	perm := ru.permission()
	out := map[string]*rbacv3.Policy{}
	if len(ru.from) == 0 {
		out[name] = &rbacv3.Policy{Permissions: []*rbacv3.Permission{perm}, Principals: []*rbacv3.Principal{anyPrincipal()}}
		return out
	}
	for j, s := range ru.from {
		pol := &rbacv3.Policy{Permissions: []*rbacv3.Permission{perm}, Principals: []*rbacv3.Principal{s.principal(issuers)}}
		if s.clusters.set() {
			pol.Condition = clusterCondition(s.clusters)
		}
		out[fmt.Sprintf("%s[from %d]", name, j)] = pol
	}
	return out
}

func (ru rule) permission() *rbacv3.Permission {
	var and []*rbacv3.Permission
	if len(ru.to) > 0 {
		var or []*rbacv3.Permission
		for _, o := range ru.to {
			or = append(or, o.permission())
		}
		and = append(and, orPerm(or))
	}
	for _, c := range ru.when {
		and = append(and, fieldPerm(c.values, func(p pattern) *rbacv3.Permission { return headerPerm(c.header, p) }))
	}
	return andPerm(and)
}

func (o operation) permission() *rbacv3.Permission {
	var and []*rbacv3.Permission
	if o.methods.set() {
		and = append(and, fieldPerm(o.methods, func(p pattern) *rbacv3.Permission { return headerPerm(":method", p) }))
	}
	if o.paths.set() {
		and = append(and, fieldPerm(o.paths, func(p pattern) *rbacv3.Permission {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcher.PathMatcher{Rule: &matcher.PathMatcher_Path{Path: stringMatcher(p)}}}}
		}))
	}
	return andPerm(and)
}

// fieldPerm is one of in (when set) and none of notIn.
func fieldPerm(f field, one func(pattern) *rbacv3.Permission) *rbacv3.Permission {
	var and []*rbacv3.Permission
	if len(f.in) > 0 {
		and = append(and, orPerm(mapSlice(f.in, one)))
	}
	if len(f.notIn) > 0 {
		and = append(and, &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: orPerm(mapSlice(f.notIn, one))}})
	}
	return andPerm(and)
}

func headerPerm(name string, p pattern) *rbacv3.Permission {
	h := &route.HeaderMatcher{Name: strings.ToLower(name)}
	if p == "*" {
		h.HeaderMatchSpecifier = &route.HeaderMatcher_PresentMatch{PresentMatch: true}
	} else {
		h.HeaderMatchSpecifier = &route.HeaderMatcher_StringMatch{StringMatch: stringMatcher(p)}
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: h}}
}

func andPerm(ps []*rbacv3.Permission) *rbacv3.Permission {
	switch len(ps) {
	case 0:
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
	case 1:
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: ps}}}
}

func orPerm(ps []*rbacv3.Permission) *rbacv3.Permission {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: ps}}}
}

// principal: every set field of the source (AND); a field is one of its
// values (OR) and none of its not-values.
func (s source) principal(issuers map[string]string) *rbacv3.Principal {
	var and []*rbacv3.Principal
	if s.principals.set() {
		and = append(and, fieldPrincipal(s.principals, func(p pattern) *rbacv3.Principal {
			if p == "*" {
				return authenticated(&matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: "spiffe://"}})
			}
			return authenticated(stringMatcher(p))
		}))
	}
	if s.namespaces.set() {
		and = append(and, fieldPrincipal(s.namespaces, func(p pattern) *rbacv3.Principal {
			return authenticated(regexMatcher(`^spiffe://[^/]+/ns/` + segmentRegex(p, "/") + `/sa/[^/]+$`))
		}))
	}
	if s.requestPrincipals.set() {
		and = append(and, fieldPrincipal(s.requestPrincipals, func(p pattern) *rbacv3.Principal { return requestPrincipal(p, issuers) }))
	}
	return andPrincipal(and)
}

func fieldPrincipal(f field, one func(pattern) *rbacv3.Principal) *rbacv3.Principal {
	var and []*rbacv3.Principal
	if len(f.in) > 0 {
		and = append(and, orPrincipal(mapSlice(f.in, one)))
	}
	if len(f.notIn) > 0 {
		and = append(and, &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: orPrincipal(mapSlice(f.notIn, one))}})
	}
	return andPrincipal(and)
}

func authenticated(m *matcher.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

func anyPrincipal() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

func nobody() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: anyPrincipal()}}
}

func andPrincipal(ps []*rbacv3.Principal) *rbacv3.Principal {
	switch len(ps) {
	case 0:
		return anyPrincipal()
	case 1:
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ps}}}
}

func orPrincipal(ps []*rbacv3.Principal) *rbacv3.Principal {
	switch len(ps) {
	case 0:
		return nobody()
	case 1:
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ps}}}
}

// requestPrincipal matches ISSUER/CLAIM patterns against the JWT filter's
// metadata, issuer by issuer: Envoy has no one value holding both.
func requestPrincipal(p pattern, issuers map[string]string) *rbacv3.Principal {
	s := string(p)
	var or []*rbacv3.Principal
	for _, iss := range slices.Sorted(maps.Keys(issuers)) {
		claim := issuers[iss]
		prefix := iss + "/"
		var m *matcher.ValueMatcher
		switch {
		case s == "*":
			m = present()
		case strings.HasSuffix(s, "*"):
			x := s[:len(s)-1]
			switch {
			case strings.HasPrefix(x, prefix) && x != prefix:
				m = valueString(&matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: x[len(prefix):]}})
			case strings.HasPrefix(prefix, x):
				m = present()
			}
		case strings.HasPrefix(s, "*"):
			m = valueString(&matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Suffix{Suffix: s[1:]}})
		case strings.HasPrefix(s, prefix):
			m = valueString(&matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: s[len(prefix):]}})
		}
		if m == nil {
			continue
		}
		or = append(or, andPrincipal([]*rbacv3.Principal{
			jwtClaim("iss", valueString(&matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: iss}})),
			jwtClaim(claim, m),
		}))
	}
	return orPrincipal(or)
}

func jwtClaim(claim string, v *matcher.ValueMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_SourcedMetadata{SourcedMetadata: &rbacv3.SourcedMetadata{
		MetadataSource: rbacv3.MetadataSource_DYNAMIC,
		MetadataMatcher: &matcher.MetadataMatcher{
			Filter: jwt.FilterName,
			Path: []*matcher.MetadataMatcher_PathSegment{
				{Segment: &matcher.MetadataMatcher_PathSegment_Key{Key: jwt.PayloadKey}},
				{Segment: &matcher.MetadataMatcher_PathSegment_Key{Key: claim}},
			},
			Value: v,
		},
	}}}
}

func present() *matcher.ValueMatcher {
	return &matcher.ValueMatcher{MatchPattern: &matcher.ValueMatcher_PresentMatch{PresentMatch: true}}
}

func valueString(m *matcher.StringMatcher) *matcher.ValueMatcher {
	return &matcher.ValueMatcher{MatchPattern: &matcher.ValueMatcher_StringMatch{StringMatch: m}}
}

func stringMatcher(p pattern) *matcher.StringMatcher {
	s := string(p)
	switch {
	case s == "*":
		return regexMatcher(".+")
	case strings.HasSuffix(s, "*"):
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: s[:len(s)-1]}}
	case strings.HasPrefix(s, "*"):
		return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Suffix{Suffix: s[1:]}}
	}
	return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: s}}
}

func regexMatcher(re string) *matcher.StringMatcher {
	return &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: re}}}
}

// segmentRegex is a pattern as a regex over one segment of a larger string,
// stopping at sep.
func segmentRegex(p pattern, sep string) string {
	s := string(p)
	other := "[^" + regexp.QuoteMeta(sep) + "]"
	switch {
	case s == "*":
		return other + "+"
	case strings.HasSuffix(s, "*"):
		return regexp.QuoteMeta(s[:len(s)-1]) + other + "*"
	case strings.HasPrefix(s, "*"):
		return other + "*" + regexp.QuoteMeta(s[1:])
	}
	return regexp.QuoteMeta(s)
}

// clusterCondition is the CEL expression Envoy evaluates for clusters:
// the peer certificate's subject (RFC 2253, "OU=CLUSTER,O=Meridian") names
// one of the clusters and none of the excluded ones.
func clusterCondition(f field) *expr.Expr {
	var ids int64
	next := func() int64 { ids++; return ids }
	subjectMatches := func(ps []pattern) *expr.Expr {
		alts := mapSlice(ps, func(p pattern) string { return segmentRegex(p, ",") })
		re := `(^|,)OU=(` + strings.Join(alts, "|") + `)(,|$)`
		return &expr.Expr{Id: next(), ExprKind: &expr.Expr_CallExpr{CallExpr: &expr.Expr_Call{
			Target: &expr.Expr{Id: next(), ExprKind: &expr.Expr_SelectExpr{SelectExpr: &expr.Expr_Select{
				Operand: &expr.Expr{Id: next(), ExprKind: &expr.Expr_IdentExpr{IdentExpr: &expr.Expr_Ident{Name: "connection"}}},
				Field:   "subject_peer_certificate",
			}}},
			Function: "matches",
			Args:     []*expr.Expr{{Id: next(), ExprKind: &expr.Expr_ConstExpr{ConstExpr: &expr.Constant{ConstantKind: &expr.Constant_StringValue{StringValue: re}}}}},
		}}}
	}
	call := func(fn string, args ...*expr.Expr) *expr.Expr {
		return &expr.Expr{Id: next(), ExprKind: &expr.Expr_CallExpr{CallExpr: &expr.Expr_Call{Function: fn, Args: args}}}
	}
	var in, notIn *expr.Expr
	if len(f.in) > 0 {
		in = subjectMatches(f.in)
	}
	if len(f.notIn) > 0 {
		notIn = call("!_", subjectMatches(f.notIn))
	}
	switch {
	case in == nil:
		return notIn
	case notIn == nil:
		return in
	}
	return call("_&&_", in, notIn)
}

func mapSlice[T, U any](xs []T, f func(T) U) []U {
	out := make([]U, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}
