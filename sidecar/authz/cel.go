package authz

import (
	"fmt"
	"regexp"

	expr "google.golang.org/genproto/googleapis/api/expr/v1alpha1"

	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// celCondition compiles the CEL expressions trust's RBAC translation
// emits: connection.subject_peer_certificate.matches(RE), !_, _&&_ and
// _||_. Anything else is refused (NACKed) rather than guessed at.
func celCondition(e *expr.Expr) (matchFn, error) {
	call := e.GetCallExpr()
	if call == nil {
		return nil, fmt.Errorf("CEL expression %T is not supported", e.GetExprKind())
	}
	switch call.GetFunction() {
	case "!_":
		if len(call.GetArgs()) != 1 {
			return nil, fmt.Errorf("CEL !_ takes one argument")
		}
		f, err := celCondition(call.GetArgs()[0])
		if err != nil {
			return nil, err
		}
		return func(in *xdsconfig.AuthzInput) bool { return !f(in) }, nil
	case "_&&_", "_||_":
		if len(call.GetArgs()) != 2 {
			return nil, fmt.Errorf("CEL %s takes two arguments", call.GetFunction())
		}
		a, err := celCondition(call.GetArgs()[0])
		if err != nil {
			return nil, err
		}
		b, err := celCondition(call.GetArgs()[1])
		if err != nil {
			return nil, err
		}
		if call.GetFunction() == "_&&_" {
			return func(in *xdsconfig.AuthzInput) bool { return a(in) && b(in) }, nil
		}
		return func(in *xdsconfig.AuthzInput) bool { return a(in) || b(in) }, nil
	case "matches":
		sel := call.GetTarget().GetSelectExpr()
		if sel == nil || sel.GetOperand().GetIdentExpr().GetName() != "connection" || sel.GetField() != "subject_peer_certificate" ||
			len(call.GetArgs()) != 1 {
			return nil, fmt.Errorf("CEL matches() is supported on connection.subject_peer_certificate only")
		}
		pat := call.GetArgs()[0].GetConstExpr().GetStringValue()
		if len(pat) > 4096 {
			return nil, fmt.Errorf("CEL regex too long")
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			return nil, fmt.Errorf("CEL regex %q: %w", pat, err)
		}
		return func(in *xdsconfig.AuthzInput) bool { return in.PeerSubject != "" && re.MatchString(in.PeerSubject) }, nil
	}
	return nil, fmt.Errorf("CEL function %q is not supported", call.GetFunction())
}
