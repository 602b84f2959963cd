package v1alpha1

import (
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The security kinds, owned by the trust work (package trust/authz
// evaluates and translates them). Istio users know all three by these
// names; what differs:
//   - Principals are whole SPIFFE IDs ("spiffe://mesh.example/ns/shop/sa/*"),
//     not Istio's "TD/ns/NS/sa/SA" shorthand, and sources can match the
//     cluster a peer's certificate was issued in.
//   - A request header condition is a typed field (when.header), not the
//     string key "request.headers[NAME]".
//   - There is no DISABLE mTLS mode: PERMISSIVE accepts plaintext where it
//     must, and STRICT is the default everywhere.

// MeshNamespace is the namespace whose PeerAuthentication and
// AuthorizationPolicy objects without a selector apply to the whole mesh
// (Istio's root namespace).
const MeshNamespace = "meridian-system"

// PeerAuthentication sets how a workload's inbound traffic must be
// authenticated: mutual TLS only (STRICT, the default) or mutual TLS and
// plaintext (PERMISSIVE, for migrations). The most specific object wins:
// one selecting the workload, then its namespace's without a selector,
// then the mesh namespace's without a selector; a port-level mode beats
// the object's mode.
type PeerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PeerAuthenticationSpec `json:"spec"`
	Status *Status                `json:"status,omitempty"`
}

// PeerAuthenticationSpec is the mode and what it applies to.
type PeerAuthenticationSpec struct {
	// Selector picks workloads of the namespace by label; empty means the
	// whole namespace (or the mesh, in MeshNamespace).
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Mode for every port; empty inherits the next less specific object's.
	Mode MTLSMode `json:"mode,omitempty"`
	// PortLevelMTLS overrides the mode per workload port; it needs a
	// selector, since ports mean nothing namespace-wide.
	PortLevelMTLS map[string]MTLSMode `json:"portLevelMtls,omitempty"`
}

// MTLSMode is how inbound connections must be authenticated.
type MTLSMode string

// mTLS modes.
const (
	MTLSStrict     MTLSMode = "STRICT"
	MTLSPermissive MTLSMode = "PERMISSIVE"
)

// Values lists the modes.
func (MTLSMode) Values() []string { return []string{"STRICT", "PERMISSIVE"} }

// Validate checks the object on its own.
func (p *PeerAuthentication) Validate() field.ErrorList {
	errs := validateMeta(&p.ObjectMeta)
	spec := field.NewPath("spec")
	errs = append(errs, validateSelector(p.Spec.Selector, spec.Child("selector"))...)
	errs = append(errs, validateEnum(p.Spec.Mode, false, spec.Child("mode"))...)
	if len(p.Spec.PortLevelMTLS) > 0 && p.Spec.Selector == nil {
		errs = append(errs, field.Forbidden(spec.Child("portLevelMtls"), "needs a selector: ports mean nothing namespace-wide"))
	}
	for port, mode := range p.Spec.PortLevelMTLS {
		pp := spec.Child("portLevelMtls").Key(port)
		if n, err := parsePort(port); err != nil {
			errs = append(errs, field.Invalid(pp, port, "want a port number"))
		} else {
			errs = append(errs, validatePort(n, pp)...)
		}
		errs = append(errs, validateEnum(mode, true, pp)...)
	}
	return errs
}

// AuthorizationPolicy allows or denies requests to the selected workloads.
// DENY policies are checked first: any matching rule denies. Then, if any
// ALLOW policy applies to the workload, a request must match one of their
// rules; with none, everything not denied is allowed. An ALLOW policy
// without rules therefore denies everything, and one with a single empty
// rule allows everything.
type AuthorizationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AuthorizationPolicySpec `json:"spec"`
	Status *Status                 `json:"status,omitempty"`
}

// AuthorizationPolicySpec is the action, its rules and what it applies to.
type AuthorizationPolicySpec struct {
	// Selector picks workloads of the namespace by label; empty means the
	// whole namespace (or the mesh, in MeshNamespace).
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Action when a rule matches; default ALLOW.
	Action AuthorizationAction `json:"action,omitempty"`
	// Rules: the policy matches a request when any rule does.
	Rules []AuthorizationRule `json:"rules,omitempty"`
}

// AuthorizationAction is what a matching rule does.
type AuthorizationAction string

// Authorization actions.
const (
	ActionAllow AuthorizationAction = "ALLOW"
	ActionDeny  AuthorizationAction = "DENY"
)

// Values lists the actions.
func (AuthorizationAction) Values() []string { return []string{"ALLOW", "DENY"} }

// AuthorizationRule matches a request when one of From matches (or From is
// empty), one of To matches (or To is empty) and every When condition
// holds.
type AuthorizationRule struct {
	From []AuthorizationSource    `json:"from,omitempty"`
	To   []AuthorizationOperation `json:"to,omitempty"`
	When []AuthorizationCondition `json:"when,omitempty"`
}

// AuthorizationSource matches the peer and the end user. Every field set
// must match (values of one field are alternatives; "not" fields exclude).
// Values are exact strings, "*" (anything present), "prefix*" or
// "*suffix".
type AuthorizationSource struct {
	// Principals are the peer's SPIFFE IDs, from its verified mTLS
	// certificate.
	Principals    []string `json:"principals,omitempty"`
	NotPrincipals []string `json:"notPrincipals,omitempty"`
	// Namespaces of the peer's workload (from its SPIFFE ID).
	Namespaces    []string `json:"namespaces,omitempty"`
	NotNamespaces []string `json:"notNamespaces,omitempty"`
	// Clusters the peer's certificate was issued in (by that cluster's
	// intermediate CA).
	Clusters    []string `json:"clusters,omitempty"`
	NotClusters []string `json:"notClusters,omitempty"`
	// RequestPrincipals are end users, "ISSUER/SUBJECT", from a JWT that a
	// RequestAuthentication validated.
	RequestPrincipals    []string `json:"requestPrincipals,omitempty"`
	NotRequestPrincipals []string `json:"notRequestPrincipals,omitempty"`
}

// AuthorizationOperation matches what is asked. Every field set must
// match; values as in AuthorizationSource.
type AuthorizationOperation struct {
	// Methods are HTTP methods (GET, POST, ...).
	Methods    []string `json:"methods,omitempty"`
	NotMethods []string `json:"notMethods,omitempty"`
	// Paths are request paths without the query string.
	Paths    []string `json:"paths,omitempty"`
	NotPaths []string `json:"notPaths,omitempty"`
}

// AuthorizationCondition requires a request header to have one of Values
// (and none of NotValues).
type AuthorizationCondition struct {
	// Header name, case-insensitive.
	Header    string   `json:"header"`
	Values    []string `json:"values,omitempty"`
	NotValues []string `json:"notValues,omitempty"`
}

// Validate checks the object on its own.
func (p *AuthorizationPolicy) Validate() field.ErrorList {
	errs := validateMeta(&p.ObjectMeta)
	spec := field.NewPath("spec")
	errs = append(errs, validateSelector(p.Spec.Selector, spec.Child("selector"))...)
	errs = append(errs, validateEnum(p.Spec.Action, false, spec.Child("action"))...)
	for i, r := range p.Spec.Rules {
		rp := spec.Child("rules").Index(i)
		for j, s := range r.From {
			fp := rp.Child("from").Index(j)
			errs = append(errs, validatePatterns(s.Principals, fp.Child("principals"), validatePrincipal)...)
			errs = append(errs, validatePatterns(s.NotPrincipals, fp.Child("notPrincipals"), validatePrincipal)...)
			errs = append(errs, validatePatterns(s.Namespaces, fp.Child("namespaces"), nil)...)
			errs = append(errs, validatePatterns(s.NotNamespaces, fp.Child("notNamespaces"), nil)...)
			errs = append(errs, validatePatterns(s.Clusters, fp.Child("clusters"), nil)...)
			errs = append(errs, validatePatterns(s.NotClusters, fp.Child("notClusters"), nil)...)
			errs = append(errs, validatePatterns(s.RequestPrincipals, fp.Child("requestPrincipals"), nil)...)
			errs = append(errs, validatePatterns(s.NotRequestPrincipals, fp.Child("notRequestPrincipals"), nil)...)
		}
		for j, o := range r.To {
			tp := rp.Child("to").Index(j)
			errs = append(errs, validatePatterns(o.Methods, tp.Child("methods"), validateMethod)...)
			errs = append(errs, validatePatterns(o.NotMethods, tp.Child("notMethods"), validateMethod)...)
			errs = append(errs, validatePatterns(o.Paths, tp.Child("paths"), validatePathPattern)...)
			errs = append(errs, validatePatterns(o.NotPaths, tp.Child("notPaths"), validatePathPattern)...)
		}
		for j, c := range r.When {
			wp := rp.Child("when").Index(j)
			if c.Header == "" {
				errs = append(errs, field.Required(wp.Child("header"), ""))
			} else if !validHeaderName(c.Header) {
				errs = append(errs, field.Invalid(wp.Child("header"), c.Header, "not an HTTP header name"))
			}
			if len(c.Values) == 0 && len(c.NotValues) == 0 {
				errs = append(errs, field.Required(wp.Child("values"), "a condition needs values or notValues"))
			}
			errs = append(errs, validatePatterns(c.Values, wp.Child("values"), nil)...)
			errs = append(errs, validatePatterns(c.NotValues, wp.Child("notValues"), nil)...)
		}
	}
	return errs
}

// RequestAuthentication says which end-user JWTs the selected workloads
// accept. A request with a token that fails validation is refused (401);
// a request without one passes with no request principal, so that an
// AuthorizationPolicy decides whether a token is required
// (requestPrincipals: ["*"]).
type RequestAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RequestAuthenticationSpec `json:"spec"`
	Status *Status                   `json:"status,omitempty"`
}

// RequestAuthenticationSpec lists the accepted issuers.
type RequestAuthenticationSpec struct {
	// Selector picks workloads of the namespace by label; empty means the
	// whole namespace.
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	JWTRules []JWTRule             `json:"jwtRules"`
}

// JWTRule is one accepted issuer.
type JWTRule struct {
	// Issuer must equal the token's iss claim.
	Issuer string `json:"issuer"`
	// Audiences: the token's aud must contain one of them. Empty accepts
	// any audience.
	Audiences []string `json:"audiences,omitempty"`
	// JWKS is the issuer's key set, inline (JSON). Exactly one of JWKS and
	// JWKSURI.
	JWKS string `json:"jwks,omitempty"`
	// JWKSURI is fetched over HTTPS and cached.
	JWKSURI string `json:"jwksUri,omitempty"`
	// JWKSCacheDuration is how long a fetched key set is used; default 5m.
	// An unknown key ID refreshes it sooner, at most every 30s.
	JWKSCacheDuration *metav1.Duration `json:"jwksCacheDuration,omitempty"`
	// FromHeaders say where the token is; default "Authorization" with
	// prefix "Bearer ".
	FromHeaders []JWTHeader `json:"fromHeaders,omitempty"`
	// PrincipalClaim is the claim that, with the issuer, makes the request
	// principal ISSUER/VALUE; default "sub".
	PrincipalClaim string `json:"principalClaim,omitempty"`
}

// JWTHeader is a header carrying a token, after an optional prefix.
type JWTHeader struct {
	Name   string `json:"name"`
	Prefix string `json:"prefix,omitempty"`
}

// Validate checks the object on its own.
func (r *RequestAuthentication) Validate() field.ErrorList {
	errs := validateMeta(&r.ObjectMeta)
	spec := field.NewPath("spec")
	errs = append(errs, validateSelector(r.Spec.Selector, spec.Child("selector"))...)
	if len(r.Spec.JWTRules) == 0 {
		errs = append(errs, field.Required(spec.Child("jwtRules"), ""))
	}
	issuers := map[string]bool{}
	for i, j := range r.Spec.JWTRules {
		jp := spec.Child("jwtRules").Index(i)
		if j.Issuer == "" {
			errs = append(errs, field.Required(jp.Child("issuer"), ""))
		} else if issuers[j.Issuer] {
			errs = append(errs, field.Duplicate(jp.Child("issuer"), j.Issuer))
		}
		issuers[j.Issuer] = true
		switch {
		case (j.JWKS == "") == (j.JWKSURI == ""):
			errs = append(errs, field.Invalid(jp.Child("jwks"), j.JWKS, "exactly one of jwks and jwksUri"))
		case j.JWKS != "":
			var set struct {
				Keys []json.RawMessage `json:"keys"`
			}
			if err := json.Unmarshal([]byte(j.JWKS), &set); err != nil || len(set.Keys) == 0 {
				errs = append(errs, field.Invalid(jp.Child("jwks"), "(inline)", "not a JSON Web Key Set with keys"))
			}
		default:
			if u, err := url.Parse(j.JWKSURI); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
				errs = append(errs, field.Invalid(jp.Child("jwksUri"), j.JWKSURI, "want an http(s) URL"))
			}
		}
		errs = append(errs, positiveDuration(j.JWKSCacheDuration, jp.Child("jwksCacheDuration"))...)
		for k, h := range j.FromHeaders {
			if !validHeaderName(h.Name) {
				errs = append(errs, field.Invalid(jp.Child("fromHeaders").Index(k).Child("name"), h.Name, "not an HTTP header name"))
			}
		}
	}
	return errs
}

func validateSelector(s *metav1.LabelSelector, path *field.Path) field.ErrorList {
	if s == nil {
		return nil
	}
	return metav1validation.ValidateLabelSelector(s, metav1validation.LabelSelectorValidationOptions{}, path)
}

// validatePatterns checks match values: exact, "*", "prefix*" or
// "*suffix", each then checked by check (on the part without the star)
// when given.
func validatePatterns(vals []string, path *field.Path, check func(string) string) field.ErrorList {
	var errs field.ErrorList
	for i, v := range vals {
		p := path.Index(i)
		inner := strings.TrimSuffix(strings.TrimPrefix(v, "*"), "*")
		switch {
		case v == "":
			errs = append(errs, field.Required(p, "empty value"))
		case v == "*":
		case strings.Count(v, "*") > 1 || strings.Contains(inner, "*"):
			errs = append(errs, field.Invalid(p, v, "a wildcard is only allowed as the whole value, a prefix (*x) or a suffix (x*)"))
		case check != nil:
			if msg := check(v); msg != "" {
				errs = append(errs, field.Invalid(p, v, msg))
			}
		}
	}
	return errs
}

func validatePrincipal(v string) string {
	if !strings.HasPrefix(v, "spiffe://") && !strings.HasPrefix(v, "*") {
		return "a principal is a SPIFFE ID (spiffe://TRUST-DOMAIN/ns/NS/sa/SA), possibly with a wildcard"
	}
	return ""
}

func validateMethod(v string) string {
	m := strings.Trim(v, "*")
	if m != strings.ToUpper(m) || !validHeaderName(m) {
		return "an HTTP method is an upper-case token (GET, POST, ...)"
	}
	return ""
}

func validatePathPattern(v string) string {
	if !strings.HasPrefix(v, "/") && !strings.HasPrefix(v, "*") {
		return "a path starts with /"
	}
	if strings.ContainsAny(v, "?#") {
		return "a path has no query or fragment"
	}
	return ""
}

// validHeaderName is RFC 9110's token.
func validHeaderName(h string) bool {
	return h != "" && !strings.ContainsFunc(h, func(r rune) bool {
		return r > 126 || r <= 32 || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
	})
}

func parsePort(s string) (int32, error) {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, errors.New("not a number")
	}
	return int32(n), nil
}
