package authz

//lint:file-ignore SA1019 Envoy still evaluates these deprecated RBAC principals, so the proxy does too.

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// JWTFilter is the jwt_authn filter whose payload RBAC metadata matchers
// read.
const JWTFilter = "envoy.filters.http.jwt_authn"

// matchFn is a compiled permission, principal or condition.
type matchFn = func(*xdsconfig.AuthzInput) bool

type policy struct {
	name   string
	perms  []matchFn
	princs []matchFn
	cond   matchFn
}

// Engine is one compiled RBAC configuration.
type Engine struct {
	action   rbacv3.RBAC_Action
	policies []policy
	enforce  bool // false: no rules, everything allowed
}

// Compile compiles an RBAC filter's rules (shadow rules are evaluated by
// Envoy for statistics only, and ignored here). It is an
// xdsconfig.AuthzFactory.
func Compile(rules, _ *rbacv3.RBAC) (xdsconfig.Authorizer, error) {
	e := &Engine{}
	if rules == nil {
		return e, nil
	}
	e.enforce, e.action = true, rules.GetAction()
	if e.action != rbacv3.RBAC_ALLOW && e.action != rbacv3.RBAC_DENY && e.action != rbacv3.RBAC_LOG {
		return nil, fmt.Errorf("rbac: action %s is not supported", e.action)
	}
	names := make([]string, 0, len(rules.GetPolicies()))
	for n := range rules.GetPolicies() {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p := rules.GetPolicies()[n]
		cp := policy{name: n}
		for i, pm := range p.GetPermissions() {
			f, err := permission(pm)
			if err != nil {
				return nil, fmt.Errorf("rbac: policy %q: permissions[%d]: %w", n, i, err)
			}
			cp.perms = append(cp.perms, f)
		}
		for i, pr := range p.GetPrincipals() {
			f, err := principal(pr)
			if err != nil {
				return nil, fmt.Errorf("rbac: policy %q: principals[%d]: %w", n, i, err)
			}
			cp.princs = append(cp.princs, f)
		}
		if p.GetCheckedCondition() != nil {
			return nil, fmt.Errorf("rbac: policy %q: checked_condition is not supported", n)
		}
		if c := p.GetCondition(); c != nil {
			f, err := celCondition(c)
			if err != nil {
				return nil, fmt.Errorf("rbac: policy %q: condition: %w", n, err)
			}
			cp.cond = f
		}
		e.policies = append(e.policies, cp)
	}
	return e, nil
}

// Authorize implements xdsconfig.Authorizer.
func (e *Engine) Authorize(in *xdsconfig.AuthzInput) (bool, string) {
	if !e.enforce {
		return true, ""
	}
	matched := ""
	for i := range e.policies {
		if e.policies[i].matches(in) {
			matched = e.policies[i].name
			break
		}
	}
	switch e.action {
	case rbacv3.RBAC_ALLOW:
		return matched != "", matched
	case rbacv3.RBAC_DENY:
		return matched == "", matched
	}
	return true, matched
}

func (p *policy) matches(in *xdsconfig.AuthzInput) bool {
	return anyTrue(p.perms, in) && anyTrue(p.princs, in) && (p.cond == nil || p.cond(in))
}

func anyTrue(fs []matchFn, in *xdsconfig.AuthzInput) bool {
	for _, f := range fs {
		if f(in) {
			return true
		}
	}
	return false
}

func allTrue(fs []matchFn, in *xdsconfig.AuthzInput) bool {
	for _, f := range fs {
		if !f(in) {
			return false
		}
	}
	return true
}

func permission(p *rbacv3.Permission) (matchFn, error) {
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		return func(*xdsconfig.AuthzInput) bool { return r.Any }, nil
	case *rbacv3.Permission_AndRules:
		fs, err := permissions(r.AndRules.GetRules())
		return func(in *xdsconfig.AuthzInput) bool { return allTrue(fs, in) }, err
	case *rbacv3.Permission_OrRules:
		fs, err := permissions(r.OrRules.GetRules())
		return func(in *xdsconfig.AuthzInput) bool { return anyTrue(fs, in) }, err
	case *rbacv3.Permission_NotRule:
		f, err := permission(r.NotRule)
		if err != nil {
			return nil, err
		}
		return func(in *xdsconfig.AuthzInput) bool { return !f(in) }, nil
	case *rbacv3.Permission_Header:
		return headerRule(r.Header)
	case *rbacv3.Permission_UrlPath:
		return pathRule(r.UrlPath)
	case *rbacv3.Permission_DestinationIp:
		return cidrRule(r.DestinationIp, func(in *xdsconfig.AuthzInput) netip.Addr { return in.Dest.Addr() })
	case *rbacv3.Permission_DestinationPort:
		return func(in *xdsconfig.AuthzInput) bool { return uint32(in.Dest.Port()) == r.DestinationPort }, nil
	case *rbacv3.Permission_DestinationPortRange:
		lo, hi := r.DestinationPortRange.GetStart(), r.DestinationPortRange.GetEnd()
		return func(in *xdsconfig.AuthzInput) bool { p := int32(in.Dest.Port()); return p >= lo && p < hi }, nil
	case *rbacv3.Permission_RequestedServerName:
		m, err := xdsconfig.CompileStringMatch(r.RequestedServerName)
		return func(in *xdsconfig.AuthzInput) bool { return m.Match(in.SNI) }, err
	}
	return nil, fmt.Errorf("permission %T is not supported", p.GetRule())
}

func permissions(ps []*rbacv3.Permission) ([]matchFn, error) {
	out := make([]matchFn, 0, len(ps))
	for i, p := range ps {
		f, err := permission(p)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		out = append(out, f)
	}
	return out, nil
}

func principal(p *rbacv3.Principal) (matchFn, error) {
	switch id := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		return func(*xdsconfig.AuthzInput) bool { return id.Any }, nil
	case *rbacv3.Principal_AndIds:
		fs, err := principals(id.AndIds.GetIds())
		return func(in *xdsconfig.AuthzInput) bool { return allTrue(fs, in) }, err
	case *rbacv3.Principal_OrIds:
		fs, err := principals(id.OrIds.GetIds())
		return func(in *xdsconfig.AuthzInput) bool { return anyTrue(fs, in) }, err
	case *rbacv3.Principal_NotId:
		f, err := principal(id.NotId)
		if err != nil {
			return nil, err
		}
		return func(in *xdsconfig.AuthzInput) bool { return !f(in) }, nil
	case *rbacv3.Principal_Authenticated_:
		if id.Authenticated.GetPrincipalName() == nil {
			return func(in *xdsconfig.AuthzInput) bool { return in.PeerID != "" || in.PeerSubject != "" }, nil
		}
		m, err := xdsconfig.CompileStringMatch(id.Authenticated.GetPrincipalName())
		return func(in *xdsconfig.AuthzInput) bool {
			// Envoy matches the URI SAN, else the subject.
			if in.PeerID != "" {
				return m.Match(in.PeerID)
			}
			return in.PeerSubject != "" && m.Match(in.PeerSubject)
		}, err
	case *rbacv3.Principal_SourceIp:
		return cidrRule(id.SourceIp, func(in *xdsconfig.AuthzInput) netip.Addr { return in.Source.Addr() })
	case *rbacv3.Principal_DirectRemoteIp:
		return cidrRule(id.DirectRemoteIp, func(in *xdsconfig.AuthzInput) netip.Addr { return in.Source.Addr() })
	case *rbacv3.Principal_RemoteIp:
		return cidrRule(id.RemoteIp, func(in *xdsconfig.AuthzInput) netip.Addr { return in.Source.Addr() })
	case *rbacv3.Principal_Header:
		f, err := headerRule(id.Header)
		return f, err
	case *rbacv3.Principal_UrlPath:
		f, err := pathRule(id.UrlPath)
		return f, err
	case *rbacv3.Principal_Metadata:
		return metadataRule(id.Metadata)
	case *rbacv3.Principal_SourcedMetadata:
		if id.SourcedMetadata.GetMetadataSource() != rbacv3.MetadataSource_DYNAMIC {
			return nil, fmt.Errorf("sourced_metadata from %s is not supported (only DYNAMIC)", id.SourcedMetadata.GetMetadataSource())
		}
		return metadataRule(id.SourcedMetadata.GetMetadataMatcher())
	}
	return nil, fmt.Errorf("principal %T is not supported", p.GetIdentifier())
}

func principals(ps []*rbacv3.Principal) ([]matchFn, error) {
	out := make([]matchFn, 0, len(ps))
	for i, p := range ps {
		f, err := principal(p)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		out = append(out, f)
	}
	return out, nil
}

// headerRule matches request headers; a connection-level check has no
// request and matches no header, as in Envoy's network RBAC.
func headerRule(h *route.HeaderMatcher) (matchFn, error) {
	m, err := xdsconfig.CompileHeaderMatch(h)
	if err != nil {
		return nil, err
	}
	return func(in *xdsconfig.AuthzInput) bool { return in.Request != nil && m.Match(in.Request) }, nil
}

func pathRule(pm *matcher.PathMatcher) (matchFn, error) {
	m, err := xdsconfig.CompileStringMatch(pm.GetPath())
	if err != nil {
		return nil, err
	}
	return func(in *xdsconfig.AuthzInput) bool {
		return in.Request != nil && m.Match(in.Request.URL.Path)
	}, nil
}

func cidrRule(r *core.CidrRange, addr func(*xdsconfig.AuthzInput) netip.Addr) (matchFn, error) {
	a, err := netip.ParseAddr(r.GetAddressPrefix())
	if err != nil {
		return nil, err
	}
	bits := a.BitLen()
	if r.GetPrefixLen() != nil {
		bits = int(r.GetPrefixLen().GetValue())
	}
	p, err := a.Unmap().Prefix(bits)
	if err != nil {
		return nil, err
	}
	return func(in *xdsconfig.AuthzInput) bool { return p.Contains(addr(in).Unmap()) }, nil
}

// metadataRule reads the jwt_authn payload (claims) at a path.
func metadataRule(m *matcher.MetadataMatcher) (matchFn, error) {
	if m.GetFilter() != JWTFilter {
		return nil, fmt.Errorf("metadata of filter %q is not supported (only %s)", m.GetFilter(), JWTFilter)
	}
	var path []string
	for _, s := range m.GetPath() {
		path = append(path, s.GetKey())
	}
	if len(path) < 2 {
		return nil, errors.New("metadata path must name the payload key and a claim")
	}
	vm, err := valueMatch(m.GetValue())
	if err != nil {
		return nil, err
	}
	invert := m.GetInvert()
	claimPath := path[1:] // path[0] is the payload key the filter writes under
	return func(in *xdsconfig.AuthzInput) bool {
		v, ok := lookup(in.Claims, claimPath)
		return vm(v, ok) != invert
	}, nil
}

func lookup(claims map[string]any, path []string) (any, bool) {
	var cur any = claims
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func valueMatch(v *matcher.ValueMatcher) (func(any, bool) bool, error) {
	switch p := v.GetMatchPattern().(type) {
	case *matcher.ValueMatcher_PresentMatch:
		return func(_ any, ok bool) bool { return ok == p.PresentMatch }, nil
	case *matcher.ValueMatcher_StringMatch:
		m, err := xdsconfig.CompileStringMatch(p.StringMatch)
		return func(x any, ok bool) bool { s, isStr := x.(string); return ok && isStr && m.Match(s) }, err
	case *matcher.ValueMatcher_BoolMatch:
		return func(x any, ok bool) bool { b, isBool := x.(bool); return ok && isBool && b == p.BoolMatch }, nil
	case *matcher.ValueMatcher_ListMatch:
		inner, err := valueMatch(p.ListMatch.GetOneOf())
		return func(x any, ok bool) bool {
			list, isList := x.([]any)
			return ok && isList && slices.ContainsFunc(list, func(e any) bool { return inner(e, true) })
		}, err
	case *matcher.ValueMatcher_OrMatch:
		var ms []func(any, bool) bool
		for _, o := range p.OrMatch.GetValueMatchers() {
			m, err := valueMatch(o)
			if err != nil {
				return nil, err
			}
			ms = append(ms, m)
		}
		return func(x any, ok bool) bool {
			return slices.ContainsFunc(ms, func(m func(any, bool) bool) bool { return m(x, ok) })
		}, nil
	}
	return nil, fmt.Errorf("value matcher %T is not supported", v.GetMatchPattern())
}
