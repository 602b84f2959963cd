package xdsconfig

//lint:file-ignore SA1019 Envoy still accepts these deprecated fields, so the proxy decodes them too.

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
)

var envoyGroups = regexp.MustCompile(`\\(\d)`)

// DefaultRouteTimeout is Envoy's timeout for a route that sets none.
const DefaultRouteTimeout = 15 * time.Second

// RouteConfig is a compiled RouteConfiguration.
type RouteConfig struct {
	Name         string
	VirtualHosts []*VirtualHost
	exact        map[string]*VirtualHost
	suffixes     []wildcard // longest first
	prefixes     []wildcard // longest first
	any          *VirtualHost
	Headers      HeaderOps
}

type wildcard struct {
	s  string
	vh *VirtualHost
}

// References implements xdsclient.Resource: route configurations refer to
// clusters by name, which are subscribed by wildcard anyway.
func (*RouteConfig) References(func(typeURL, name string)) {}

// VirtualHost picks the virtual host for a Host header as Envoy does:
// exact domains, then the longest suffix wildcard, then the longest prefix
// wildcard, then "*". A host with a port that matches nothing is tried
// again without it.
func (rc *RouteConfig) VirtualHost(host string) *VirtualHost {
	host = strings.ToLower(host)
	if vh := rc.lookup(host); vh != nil {
		return vh
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		if vh := rc.lookup(h); vh != nil {
			return vh
		}
	}
	return rc.any
}

func (rc *RouteConfig) lookup(host string) *VirtualHost {
	if vh, ok := rc.exact[host]; ok {
		return vh
	}
	for _, w := range rc.suffixes {
		if len(host) > len(w.s) && strings.HasSuffix(host, w.s) {
			return w.vh
		}
	}
	for _, w := range rc.prefixes {
		if len(host) > len(w.s) && strings.HasPrefix(host, w.s) {
			return w.vh
		}
	}
	return nil
}

// VirtualHost is a compiled VirtualHost.
type VirtualHost struct {
	Name    string
	Domains []string
	Routes  []*Route
	Retry   *RetryPolicy
	Headers HeaderOps
	// PerFilter holds the virtual host's per-filter overrides.
	PerFilter PerFilter
}

// Match returns the first route matching the request, or nil.
func (vh *VirtualHost) Match(r *http.Request, pick func() uint32) *Route {
	for _, rt := range vh.Routes {
		if rt.Match.Match(r, pick) {
			return rt
		}
	}
	return nil
}

// ActionKind is what a route does.
type ActionKind uint8

// Route actions.
const (
	ActionCluster ActionKind = iota
	ActionWeighted
	ActionClusterHeader
	ActionDirect
	ActionRedirect
)

// Route is a compiled Route.
type Route struct {
	Name   string
	Match  RouteMatch
	Action ActionKind
	// Cluster, Weighted (with TotalWeight) or ClusterHeader pick the
	// destination.
	Cluster       string
	Weighted      []WeightedCluster
	TotalWeight   uint32
	ClusterHeader string
	Direct        *DirectResponse
	Redirect      *Redirect
	// Timeout for the whole request, retries included; 0 means none.
	Timeout     time.Duration
	IdleTimeout time.Duration
	Retry       *RetryPolicy
	Mirrors     []Mirror
	// Rewrites.
	PrefixRewrite   string
	RegexRewrite    *regexp.Regexp
	RegexSubst      string
	HostRewrite     string
	AutoHostRewrite bool
	Headers         HeaderOps
	PerFilter       PerFilter
}

// PerFilter is the per-route (or per-virtual-host) configuration of HTTP
// filters.
type PerFilter struct {
	// Fault replaces the fault filter's configuration.
	Fault *Fault
	// AuthzDisabled turns the RBAC filter off; Authz replaces its policy.
	AuthzDisabled bool
	Authz         Authorizer
}

// WeightedCluster is one destination of a split.
type WeightedCluster struct {
	Name   string
	Weight uint32
}

// DirectResponse answers without an upstream.
type DirectResponse struct {
	Status int
	Body   []byte
}

// Redirect answers with a redirect.
type Redirect struct {
	Scheme, Host, Path, PrefixRewrite string
	Port                              uint32
	Code                              int
	StripQuery                        bool
}

// Mirror sends a copy of a share of requests to a cluster and discards
// the answers.
type Mirror struct {
	Cluster string
	// PerMillion of the requests are mirrored.
	PerMillion uint32
}

// HeaderOps adds and removes headers.
type HeaderOps struct {
	RequestAdd, ResponseAdd       []HeaderValue
	RequestRemove, ResponseRemove []string
}

// HeaderValue is one header to add.
type HeaderValue struct {
	Key, Value string
	// Append keeps existing values; otherwise the header is replaced.
	Append bool
}

// Empty reports whether the ops do nothing.
func (h *HeaderOps) Empty() bool {
	return len(h.RequestAdd)+len(h.ResponseAdd)+len(h.RequestRemove)+len(h.ResponseRemove) == 0
}

// RouteMatch is a compiled RouteMatch.
type RouteMatch struct {
	kind            pathKind
	path            string
	re              *regexp.Regexp
	caseInsensitive bool
	Headers         []HeaderMatch
	Query           []QueryMatch
	GRPC            bool
	// PerMillion of matching requests take the route (runtime_fraction).
	PerMillion uint32
}

type pathKind uint8

const (
	pathPrefix pathKind = iota
	pathExact
	pathRegex
	pathSeparated
)

// Match reports whether the request matches. pick returns a uniform
// number in [0, 1e6) for fractional matches.
func (m *RouteMatch) Match(r *http.Request, pick func() uint32) bool {
	p := r.URL.Path
	if p == "" {
		p = "/"
	}
	switch m.kind {
	case pathPrefix:
		if m.caseInsensitive {
			if len(p) < len(m.path) || !strings.EqualFold(p[:len(m.path)], m.path) {
				return false
			}
		} else if !strings.HasPrefix(p, m.path) {
			return false
		}
	case pathExact:
		if m.caseInsensitive && !strings.EqualFold(p, m.path) || !m.caseInsensitive && p != m.path {
			return false
		}
	case pathSeparated:
		if !strings.HasPrefix(p, m.path) || (len(p) > len(m.path) && p[len(m.path)] != '/') {
			return false
		}
	case pathRegex:
		if !m.re.MatchString(p) {
			return false
		}
	}
	if m.GRPC && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		return false
	}
	for i := range m.Headers {
		if !m.Headers[i].Match(r) {
			return false
		}
	}
	for i := range m.Query {
		if !m.Query[i].Match(r) {
			return false
		}
	}
	return m.PerMillion >= 1_000_000 || pick() < m.PerMillion
}

// RetryOn is a set of retry conditions.
type RetryOn uint32

// Retry conditions, named as in Envoy's x-envoy-retry-on.
const (
	Retry5xx RetryOn = 1 << iota
	RetryGatewayError
	RetryReset
	RetryConnectFailure
	RetryRetriable4xx
	RetryRefusedStream
	RetryStatusCodes
	RetryGRPCCancelled
	RetryGRPCDeadlineExceeded
	RetryGRPCResourceExhausted
	RetryGRPCUnavailable
	RetryGRPCInternal
)

var retryNames = map[string]RetryOn{
	"5xx": Retry5xx, "gateway-error": RetryGatewayError, "reset": RetryReset,
	"connect-failure": RetryConnectFailure, "retriable-4xx": RetryRetriable4xx,
	"refused-stream": RetryRefusedStream, "retriable-status-codes": RetryStatusCodes,
	"cancelled": RetryGRPCCancelled, "deadline-exceeded": RetryGRPCDeadlineExceeded,
	"resource-exhausted": RetryGRPCResourceExhausted, "unavailable": RetryGRPCUnavailable,
	"internal": RetryGRPCInternal,
	// Accepted and treated as their nearest meaning.
	"reset-before-request": RetryReset, "envoy-ratelimited": 0, "retriable-headers": 0, "http3-post-connect-failure": 0,
}

// RetryPolicy is a compiled RetryPolicy. Retries always prefer endpoints
// not tried yet (Envoy's previous_hosts predicate, which Istio sets too),
// and priorities whose endpoints have all been tried are skipped (Envoy's
// previous_priorities).
type RetryPolicy struct {
	On            RetryOn
	NumRetries    int
	PerTryTimeout time.Duration
	StatusCodes   []int
	BackoffBase   time.Duration
	BackoffMax    time.Duration
}

// Fault is a compiled HTTPFault.
type Fault struct {
	disabled        bool
	AbortPerMillion uint32
	AbortStatus     int
	// AbortGRPC is a gRPC status to answer with (-1 when unset).
	AbortGRPC       int
	AbortFromHeader bool
	DelayPerMillion uint32
	Delay           time.Duration
	DelayFromHeader bool
	// MaxActive bounds concurrent faults (0: unbounded).
	MaxActive        uint32
	UpstreamClusters []string
	Headers          []HeaderMatch
}

// Disabled reports a fault filter turned off.
func (f *Fault) Disabled() bool { return f == nil || f.disabled }

func (d *Decoder) routeConfig(rc *route.RouteConfiguration) (*RouteConfig, error) {
	out := &RouteConfig{Name: rc.GetName(), exact: map[string]*VirtualHost{}}
	if rc.GetVhds() != nil {
		return nil, errors.New("vhds is not supported")
	}
	if len(rc.GetClusterSpecifierPlugins()) > 0 {
		return nil, errors.New("cluster_specifier_plugins are not supported")
	}
	var err error
	if out.Headers, err = headerOps(rc.GetRequestHeadersToAdd(), rc.GetRequestHeadersToRemove(), rc.GetResponseHeadersToAdd(), rc.GetResponseHeadersToRemove()); err != nil {
		return nil, err
	}
	seen := map[string]string{}
	for i, v := range rc.GetVirtualHosts() {
		vh, err := d.virtualHost(v)
		if err != nil {
			return nil, fieldErr(fmt.Sprintf("virtual_hosts[%d] %s", i, v.GetName()), err)
		}
		out.VirtualHosts = append(out.VirtualHosts, vh)
		for _, dom := range vh.Domains {
			if other, dup := seen[dom]; dup {
				return nil, fmt.Errorf("domain %q is in virtual hosts %q and %q", dom, other, vh.Name)
			}
			seen[dom] = vh.Name
			switch {
			case dom == "*":
				out.any = vh
			case strings.HasPrefix(dom, "*"):
				out.suffixes = append(out.suffixes, wildcard{dom[1:], vh})
			case strings.HasSuffix(dom, "*"):
				out.prefixes = append(out.prefixes, wildcard{dom[:len(dom)-1], vh})
			default:
				out.exact[dom] = vh
			}
		}
	}
	longestFirst := func(a, b wildcard) int { return len(b.s) - len(a.s) }
	slices.SortStableFunc(out.suffixes, longestFirst)
	slices.SortStableFunc(out.prefixes, longestFirst)
	return out, nil
}

func (d *Decoder) virtualHost(v *route.VirtualHost) (*VirtualHost, error) {
	vh := &VirtualHost{Name: v.GetName()}
	if v.GetRequireTls() != route.VirtualHost_NONE {
		return nil, errors.New("require_tls is not supported")
	}
	if len(v.GetDomains()) == 0 {
		return nil, errors.New("no domains")
	}
	for _, dom := range v.GetDomains() {
		dom = strings.ToLower(dom)
		if strings.Count(dom, "*") > 1 || (strings.Contains(dom, "*") && dom != "*" && !strings.HasPrefix(dom, "*") && !strings.HasSuffix(dom, "*")) {
			return nil, fmt.Errorf("domain %q: only one leading or trailing wildcard is allowed", dom)
		}
		vh.Domains = append(vh.Domains, dom)
	}
	var err error
	if vh.Retry, err = retryPolicy(v.GetRetryPolicy()); err != nil {
		return nil, fieldErr("retry_policy", err)
	}
	if vh.Headers, err = headerOps(v.GetRequestHeadersToAdd(), v.GetRequestHeadersToRemove(), v.GetResponseHeadersToAdd(), v.GetResponseHeadersToRemove()); err != nil {
		return nil, err
	}
	if vh.PerFilter, err = d.perFilter(v.GetTypedPerFilterConfig()); err != nil {
		return nil, fieldErr("typed_per_filter_config", err)
	}
	for i, r := range v.GetRoutes() {
		rt, err := d.route(r, vh.Retry)
		if err != nil {
			return nil, fieldErr(fmt.Sprintf("routes[%d] %s", i, r.GetName()), err)
		}
		vh.Routes = append(vh.Routes, rt)
	}
	return vh, nil
}

func (d *Decoder) route(r *route.Route, vhRetry *RetryPolicy) (*Route, error) {
	out := &Route{Name: r.GetName(), Timeout: DefaultRouteTimeout, Retry: vhRetry}
	m, err := routeMatch(r.GetMatch())
	if err != nil {
		return nil, fieldErr("match", err)
	}
	out.Match = m
	if out.Headers, err = headerOps(r.GetRequestHeadersToAdd(), r.GetRequestHeadersToRemove(), r.GetResponseHeadersToAdd(), r.GetResponseHeadersToRemove()); err != nil {
		return nil, err
	}
	if out.PerFilter, err = d.perFilter(r.GetTypedPerFilterConfig()); err != nil {
		return nil, fieldErr("typed_per_filter_config", err)
	}
	switch a := r.GetAction().(type) {
	case *route.Route_Route:
		if err := routeAction(a.Route, out); err != nil {
			return nil, fieldErr("route", err)
		}
	case *route.Route_DirectResponse:
		out.Action = ActionDirect
		body := a.DirectResponse.GetBody()
		out.Direct = &DirectResponse{Status: int(a.DirectResponse.GetStatus())}
		switch {
		case body == nil:
		case body.GetInlineString() != "":
			out.Direct.Body = []byte(body.GetInlineString())
		case body.GetInlineBytes() != nil:
			out.Direct.Body = body.GetInlineBytes()
		default:
			return nil, errors.New("direct_response: only inline bodies are supported")
		}
	case *route.Route_Redirect:
		out.Action = ActionRedirect
		rd := a.Redirect
		red := &Redirect{Host: rd.GetHostRedirect(), Port: rd.GetPortRedirect(), Path: rd.GetPathRedirect(),
			PrefixRewrite: rd.GetPrefixRewrite(), StripQuery: rd.GetStripQuery(), Code: redirectCode(rd.GetResponseCode())}
		if rd.GetHttpsRedirect() {
			red.Scheme = "https"
		} else {
			red.Scheme = rd.GetSchemeRedirect()
		}
		if rd.GetRegexRewrite() != nil {
			return nil, errors.New("redirect: regex_rewrite is not supported")
		}
		out.Redirect = red
	default:
		return nil, fmt.Errorf("action %T is not supported", a)
	}
	return out, nil
}

func redirectCode(c route.RedirectAction_RedirectResponseCode) int {
	switch c {
	case route.RedirectAction_FOUND:
		return http.StatusFound
	case route.RedirectAction_SEE_OTHER:
		return http.StatusSeeOther
	case route.RedirectAction_TEMPORARY_REDIRECT:
		return http.StatusTemporaryRedirect
	case route.RedirectAction_PERMANENT_REDIRECT:
		return http.StatusPermanentRedirect
	}
	return http.StatusMovedPermanently
}

func routeMatch(m *route.RouteMatch) (RouteMatch, error) {
	out := RouteMatch{PerMillion: 1_000_000, caseInsensitive: m.GetCaseSensitive() != nil && !m.GetCaseSensitive().GetValue()}
	switch p := m.GetPathSpecifier().(type) {
	case *route.RouteMatch_Prefix:
		out.kind, out.path = pathPrefix, p.Prefix
	case *route.RouteMatch_Path:
		out.kind, out.path = pathExact, p.Path
	case *route.RouteMatch_PathSeparatedPrefix:
		out.kind, out.path = pathSeparated, p.PathSeparatedPrefix
	case *route.RouteMatch_SafeRegex:
		expr := p.SafeRegex.GetRegex()
		if out.caseInsensitive {
			expr = "(?i)" + expr
		}
		re, err := compileRegex(expr)
		if err != nil {
			return out, fieldErr("safe_regex", err)
		}
		out.kind, out.re = pathRegex, re
	default:
		return out, fmt.Errorf("path specifier %T is not supported", p)
	}
	if m.GetGrpc() != nil {
		out.GRPC = true
	}
	if m.GetTlsContext() != nil || len(m.GetDynamicMetadata()) > 0 || len(m.GetCookies()) > 0 || len(m.GetFilterState()) > 0 {
		return out, errors.New("tls_context, dynamic_metadata, cookies and filter_state matches are not supported")
	}
	if rf := m.GetRuntimeFraction(); rf != nil {
		out.PerMillion = perMillion(rf.GetDefaultValue())
	}
	for i, h := range m.GetHeaders() {
		hm, err := headerMatch(h)
		if err != nil {
			return out, fieldErr(fmt.Sprintf("headers[%d]", i), err)
		}
		out.Headers = append(out.Headers, hm)
	}
	for i, q := range m.GetQueryParameters() {
		qm, err := queryMatch(q)
		if err != nil {
			return out, fieldErr(fmt.Sprintf("query_parameters[%d]", i), err)
		}
		out.Query = append(out.Query, qm)
	}
	return out, nil
}

// perMillion converts an Envoy fractional percent to parts per million.
func perMillion(f *typev3.FractionalPercent) uint32 {
	if f == nil {
		return 0
	}
	n := uint64(f.GetNumerator())
	switch f.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		n *= 10_000
	case typev3.FractionalPercent_TEN_THOUSAND:
		n *= 100
	}
	return uint32(min(n, 1_000_000))
}

func routeAction(a *route.RouteAction, out *Route) error {
	switch cs := a.GetClusterSpecifier().(type) {
	case *route.RouteAction_Cluster:
		out.Action, out.Cluster = ActionCluster, cs.Cluster
	case *route.RouteAction_ClusterHeader:
		out.Action, out.ClusterHeader = ActionClusterHeader, strings.ToLower(cs.ClusterHeader)
	case *route.RouteAction_WeightedClusters:
		out.Action = ActionWeighted
		for i, wc := range cs.WeightedClusters.GetClusters() {
			if wc.GetClusterHeader() != "" || len(wc.GetTypedPerFilterConfig()) > 0 {
				return fmt.Errorf("weighted_clusters.clusters[%d]: cluster_header and typed_per_filter_config are not supported", i)
			}
			w := wc.GetWeight().GetValue()
			if w == 0 {
				continue
			}
			out.Weighted = append(out.Weighted, WeightedCluster{Name: wc.GetName(), Weight: w})
			out.TotalWeight += w
		}
		if out.TotalWeight == 0 {
			return errors.New("weighted_clusters: every weight is zero")
		}
	default:
		return fmt.Errorf("cluster specifier %T is not supported", cs)
	}
	if a.GetTimeout() != nil {
		out.Timeout = a.GetTimeout().AsDuration()
	}
	out.IdleTimeout = duration(a.GetIdleTimeout(), 0)
	out.PrefixRewrite = a.GetPrefixRewrite()
	if rr := a.GetRegexRewrite(); rr != nil {
		re, err := regexp.Compile(rr.GetPattern().GetRegex())
		if err != nil || len(rr.GetPattern().GetRegex()) > maxRegexLen {
			return fmt.Errorf("regex_rewrite: %v", err)
		}
		// Envoy writes capture groups as \1; Go's expansion wants ${1}.
		out.RegexRewrite, out.RegexSubst = re, envoyGroups.ReplaceAllString(rr.GetSubstitution(), "$${$1}")
	}
	switch hr := a.GetHostRewriteSpecifier().(type) {
	case nil:
	case *route.RouteAction_HostRewriteLiteral:
		out.HostRewrite = hr.HostRewriteLiteral
	case *route.RouteAction_AutoHostRewrite:
		out.AutoHostRewrite = hr.AutoHostRewrite.GetValue()
	default:
		return fmt.Errorf("host rewrite %T is not supported", hr)
	}
	if a.GetRetryPolicy() != nil {
		rp, err := retryPolicy(a.GetRetryPolicy())
		if err != nil {
			return fieldErr("retry_policy", err)
		}
		out.Retry = rp
	}
	if a.GetRetryPolicyTypedConfig() != nil || a.GetHedgePolicy() != nil {
		return errors.New("retry_policy_typed_config and hedge_policy are not supported")
	}
	for i, mp := range a.GetRequestMirrorPolicies() {
		if mp.GetClusterHeader() != "" {
			return fmt.Errorf("request_mirror_policies[%d]: cluster_header is not supported", i)
		}
		pm := uint32(1_000_000)
		if rf := mp.GetRuntimeFraction(); rf != nil {
			pm = perMillion(rf.GetDefaultValue())
		}
		out.Mirrors = append(out.Mirrors, Mirror{Cluster: mp.GetCluster(), PerMillion: pm})
	}
	return nil
}

func retryPolicy(p *route.RetryPolicy) (*RetryPolicy, error) {
	if p == nil {
		return nil, nil
	}
	out := &RetryPolicy{NumRetries: 1, PerTryTimeout: duration(p.GetPerTryTimeout(), 0), BackoffBase: 25 * time.Millisecond}
	if n := p.GetNumRetries(); n != nil {
		out.NumRetries = int(min(n.GetValue(), 10))
	}
	for _, s := range strings.Split(p.GetRetryOn(), ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		bit, ok := retryNames[s]
		if !ok {
			return nil, fmt.Errorf("retry_on: unknown condition %q", s)
		}
		out.On |= bit
	}
	for _, c := range p.GetRetriableStatusCodes() {
		out.StatusCodes = append(out.StatusCodes, int(c))
	}
	if b := p.GetRetryBackOff(); b != nil {
		out.BackoffBase = b.GetBaseInterval().AsDuration()
		out.BackoffMax = duration(b.GetMaxInterval(), 0)
	}
	if out.BackoffMax == 0 {
		out.BackoffMax = 10 * out.BackoffBase
	}
	if out.BackoffMax < out.BackoffBase {
		return nil, errors.New("retry_back_off: max_interval is shorter than base_interval")
	}
	return out, nil
}

func headerOps(reqAdd []*core.HeaderValueOption, reqRemove []string, respAdd []*core.HeaderValueOption, respRemove []string) (HeaderOps, error) {
	var out HeaderOps
	conv := func(in []*core.HeaderValueOption) ([]HeaderValue, error) {
		var hv []HeaderValue
		for _, o := range in {
			k := o.GetHeader().GetKey()
			if strings.HasPrefix(k, ":") || strings.EqualFold(k, "host") {
				return nil, fmt.Errorf("header %q cannot be added", k)
			}
			if strings.Contains(o.GetHeader().GetValue(), "%") {
				return nil, fmt.Errorf("header %q: command operators (%%...%%) are not supported", k)
			}
			app := o.GetAppendAction() == core.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
			if o.GetAppend() != nil {
				app = o.GetAppend().GetValue()
			}
			hv = append(hv, HeaderValue{Key: http.CanonicalHeaderKey(k), Value: o.GetHeader().GetValue(), Append: app})
		}
		return hv, nil
	}
	var err error
	if out.RequestAdd, err = conv(reqAdd); err != nil {
		return out, err
	}
	if out.ResponseAdd, err = conv(respAdd); err != nil {
		return out, err
	}
	out.RequestRemove, out.ResponseRemove = reqRemove, respRemove
	return out, nil
}

// perFilter compiles typed_per_filter_config entries for the filters the
// proxy runs.
func (d *Decoder) perFilter(m map[string]*anypb.Any) (PerFilter, error) {
	var out PerFilter
	for name, a := range m {
		optional := false
		if a.MessageIs(&route.FilterConfig{}) {
			var fc route.FilterConfig
			if err := unmarshalTyped(a, &fc); err != nil {
				return out, fieldErr(name, err)
			}
			optional = fc.GetIsOptional()
			if fc.GetDisabled() {
				switch name {
				case wellknown.Fault:
					out.Fault = &Fault{disabled: true}
				case wellknown.HTTPRoleBasedAccessControl:
					out.AuthzDisabled = true
				}
				continue
			}
			a = fc.GetConfig()
		}
		switch {
		case a.MessageIs(&faultv3.HTTPFault{}):
			var cfg faultv3.HTTPFault
			if err := unmarshalTyped(a, &cfg); err != nil {
				return out, fieldErr(name, err)
			}
			f, err := fault(&cfg)
			if err != nil {
				return out, fieldErr(name, err)
			}
			out.Fault = f
		case a.MessageIs(&rbachttp.RBACPerRoute{}):
			var cfg rbachttp.RBACPerRoute
			if err := unmarshalTyped(a, &cfg); err != nil {
				return out, fieldErr(name, err)
			}
			if cfg.GetRbac() == nil {
				out.AuthzDisabled = true
				continue
			}
			if d.opts.Authz == nil {
				return out, fieldErr(name, errors.New("RBAC is configured but this proxy has no authorization evaluator"))
			}
			az, err := d.opts.Authz(cfg.GetRbac().GetRules(), cfg.GetRbac().GetShadowRules())
			if err != nil {
				return out, fieldErr(name, err)
			}
			out.Authz = az
		case optional:
		default:
			return out, fieldErr(name, fmt.Errorf("per-filter configuration of type %q is not supported", a.GetTypeUrl()))
		}
	}
	return out, nil
}

func fault(c *faultv3.HTTPFault) (*Fault, error) {
	f := &Fault{AbortGRPC: -1, MaxActive: c.GetMaxActiveFaults().GetValue(), UpstreamClusters: nil}
	if up := c.GetUpstreamCluster(); up != "" {
		f.UpstreamClusters = []string{up}
	}
	if len(c.GetDownstreamNodes()) > 0 || c.GetResponseRateLimit() != nil {
		return nil, errors.New("downstream_nodes and response_rate_limit are not supported")
	}
	for i, h := range c.GetHeaders() {
		hm, err := headerMatch(h)
		if err != nil {
			return nil, fieldErr(fmt.Sprintf("headers[%d]", i), err)
		}
		f.Headers = append(f.Headers, hm)
	}
	if a := c.GetAbort(); a != nil {
		f.AbortPerMillion = perMillion(a.GetPercentage())
		switch t := a.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			f.AbortStatus = int(t.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			f.AbortGRPC = int(t.GrpcStatus)
		case *faultv3.FaultAbort_HeaderAbort_:
			f.AbortFromHeader = true
		}
	}
	if dl := c.GetDelay(); dl != nil {
		f.DelayPerMillion = perMillion(dl.GetPercentage())
		if dl.GetHeaderDelay() != nil {
			f.DelayFromHeader = true
		} else {
			f.Delay = dl.GetFixedDelay().AsDuration()
		}
	}
	return f, nil
}

// Prefix returns the path prefix a prefix, separated-prefix or exact
// match consumes (for prefix rewrites); "" for regex matches.
func (m *RouteMatch) Prefix() string {
	if m.kind == pathRegex {
		return ""
	}
	return m.path
}
