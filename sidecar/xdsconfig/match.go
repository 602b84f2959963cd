package xdsconfig

//lint:file-ignore SA1019 Envoy still accepts these deprecated fields, so the proxy decodes them too.

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// maxRegexLen bounds a regular expression's source, so that a control
// plane cannot make the proxy compile something enormous.
const maxRegexLen = 4096

// StringMatch is a compiled Envoy StringMatcher.
type StringMatch struct {
	kind       matchKind
	value      string
	re         *regexp.Regexp
	ignoreCase bool
}

type matchKind uint8

const (
	matchExact matchKind = iota
	matchPrefix
	matchSuffix
	matchContains
	matchRegex
)

// Match reports whether s matches.
func (m *StringMatch) Match(s string) bool {
	if m.kind == matchRegex {
		return m.re.MatchString(s)
	}
	v := m.value
	if m.ignoreCase {
		s, v = strings.ToLower(s), strings.ToLower(v)
	}
	switch m.kind {
	case matchExact:
		return s == v
	case matchPrefix:
		return strings.HasPrefix(s, v)
	case matchSuffix:
		return strings.HasSuffix(s, v)
	default:
		return strings.Contains(s, v)
	}
}

// compileRegex compiles an RE2 expression for a full match, as Envoy's
// safe_regex matches.
func compileRegex(expr string) (*regexp.Regexp, error) {
	if len(expr) > maxRegexLen {
		return nil, fmt.Errorf("regex longer than %d bytes", maxRegexLen)
	}
	re, err := regexp.Compile("^(?:" + expr + ")$")
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w", expr, err)
	}
	return re, nil
}

func stringMatch(m *matcher.StringMatcher) (StringMatch, error) {
	if m == nil {
		return StringMatch{}, errors.New("missing matcher")
	}
	out := StringMatch{ignoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcher.StringMatcher_Exact:
		out.kind, out.value = matchExact, p.Exact
	case *matcher.StringMatcher_Prefix:
		out.kind, out.value = matchPrefix, p.Prefix
	case *matcher.StringMatcher_Suffix:
		out.kind, out.value = matchSuffix, p.Suffix
	case *matcher.StringMatcher_Contains:
		out.kind, out.value = matchContains, p.Contains
	case *matcher.StringMatcher_SafeRegex:
		expr := p.SafeRegex.GetRegex()
		if m.GetIgnoreCase() {
			expr = "(?i)" + expr
		}
		re, err := compileRegex(expr)
		if err != nil {
			return out, err
		}
		out.kind, out.re = matchRegex, re
	default:
		return out, fmt.Errorf("unsupported string matcher %T", p)
	}
	return out, nil
}

// HeaderMatch is a compiled route HeaderMatcher. Pseudo-headers (:method,
// :authority, :path, :scheme) read the request line.
type HeaderMatch struct {
	Name string
	// exactly one of
	str        *StringMatch
	present    *bool
	lo, hi     int64
	isRange    bool
	invert     bool
	missingAsE bool
}

// Match applies the matcher to a request.
func (h *HeaderMatch) Match(r *http.Request) bool {
	v, ok := headerValue(r, h.Name)
	if !ok && h.missingAsE {
		v, ok = "", true
	}
	var res bool
	switch {
	case h.present != nil:
		res = ok == *h.present
	case !ok:
		// An absent header matches nothing, inverted or not, except a
		// present_match: false (Envoy's rule).
		return false
	case h.isRange:
		n, err := strconv.ParseInt(v, 10, 64)
		res = err == nil && n >= h.lo && n < h.hi
	default:
		res = h.str.Match(v)
	}
	return res != h.invert
}

// headerValue reads a header, several values joined with "," as Envoy
// joins them, or a pseudo-header.
func headerValue(r *http.Request, name string) (string, bool) {
	switch name {
	case ":authority", "host":
		return r.Host, true
	case ":method":
		return r.Method, true
	case ":path":
		return r.URL.RequestURI(), true
	case ":scheme":
		if r.TLS != nil {
			return "https", true
		}
		return "http", true
	}
	vs := r.Header.Values(name)
	if len(vs) == 0 {
		return "", false
	}
	if len(vs) == 1 {
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

func headerMatch(hm *route.HeaderMatcher) (HeaderMatch, error) {
	name := strings.ToLower(hm.GetName())
	if name == "" {
		return HeaderMatch{}, errors.New("header matcher without a name")
	}
	out := HeaderMatch{Name: name, invert: hm.GetInvertMatch(), missingAsE: hm.GetTreatMissingHeaderAsEmpty()}
	str := func(m StringMatch) { out.str = &m }
	switch s := hm.GetHeaderMatchSpecifier().(type) {
	case *route.HeaderMatcher_ExactMatch:
		str(StringMatch{kind: matchExact, value: s.ExactMatch})
	case *route.HeaderMatcher_PrefixMatch:
		str(StringMatch{kind: matchPrefix, value: s.PrefixMatch})
	case *route.HeaderMatcher_SuffixMatch:
		str(StringMatch{kind: matchSuffix, value: s.SuffixMatch})
	case *route.HeaderMatcher_ContainsMatch:
		str(StringMatch{kind: matchContains, value: s.ContainsMatch})
	case *route.HeaderMatcher_SafeRegexMatch:
		re, err := compileRegex(s.SafeRegexMatch.GetRegex())
		if err != nil {
			return out, fmt.Errorf("header %s: %w", name, err)
		}
		str(StringMatch{kind: matchRegex, re: re})
	case *route.HeaderMatcher_StringMatch:
		m, err := stringMatch(s.StringMatch)
		if err != nil {
			return out, fmt.Errorf("header %s: %w", name, err)
		}
		str(m)
	case *route.HeaderMatcher_PresentMatch:
		p := s.PresentMatch
		out.present = &p
	case *route.HeaderMatcher_RangeMatch:
		out.isRange, out.lo, out.hi = true, s.RangeMatch.GetStart(), s.RangeMatch.GetEnd()
	case nil:
		// No specifier: Envoy treats it as "present".
		t := true
		out.present = &t
	default:
		return out, fmt.Errorf("header %s: unsupported matcher %T", name, s)
	}
	return out, nil
}

// QueryMatch is a compiled QueryParameterMatcher.
type QueryMatch struct {
	Name    string
	str     *StringMatch
	present bool
}

// Match applies the matcher to a request's query.
func (q *QueryMatch) Match(r *http.Request) bool {
	vs, ok := r.URL.Query()[q.Name]
	if q.str == nil {
		return ok == q.present
	}
	return ok && len(vs) > 0 && q.str.Match(vs[0])
}

func queryMatch(qm *route.QueryParameterMatcher) (QueryMatch, error) {
	out := QueryMatch{Name: qm.GetName()}
	if out.Name == "" {
		return out, errors.New("query parameter matcher without a name")
	}
	switch s := qm.GetQueryParameterMatchSpecifier().(type) {
	case *route.QueryParameterMatcher_StringMatch:
		m, err := stringMatch(s.StringMatch)
		if err != nil {
			return out, fmt.Errorf("query %s: %w", out.Name, err)
		}
		out.str = &m
	case *route.QueryParameterMatcher_PresentMatch:
		out.present = s.PresentMatch
	default:
		out.present = true
	}
	return out, nil
}

// Exact returns the value of an exact, case-sensitive matcher.
func (m *StringMatch) Exact() (string, bool) {
	return m.value, m.kind == matchExact && !m.ignoreCase
}

// CompileStringMatch compiles an Envoy StringMatcher (for the RBAC engine).
func CompileStringMatch(m *matcher.StringMatcher) (StringMatch, error) { return stringMatch(m) }

// CompileHeaderMatch compiles an Envoy HeaderMatcher (for the RBAC engine).
func CompileHeaderMatch(m *route.HeaderMatcher) (HeaderMatch, error) { return headerMatch(m) }
