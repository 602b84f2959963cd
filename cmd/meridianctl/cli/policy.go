package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/yaml"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/policyapi"
	"github.com/meridian-mesh/meridian/policyapi/policyapipb"
)

// Shared by the policy commands (get, apply, delete, explain, drill): the
// clients of meridiand's policy API, kinds as kubectl users write them, and
// the API's refusals turned into one line and a hint.

// withPolicyAPI runs fn with clients of the policy API.
func withPolicyAPI(g *Globals, fn func(policyapipb.PolicyServiceClient, policyapipb.LocalityServiceClient) error) error {
	conn, err := g.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	return fn(policyapipb.NewPolicyServiceClient(conn), policyapipb.NewLocalityServiceClient(conn))
}

// resolveKind accepts a kind's name, plural, singular or short name.
func resolveKind(s string) (v1alpha1.Kind, error) {
	if k, ok := v1alpha1.ResolveKind(s); ok {
		return k, nil
	}
	return v1alpha1.Kind{}, Hint(fmt.Errorf("unknown kind %q", s), "kinds: "+kindList())
}

func kindList() string {
	var names []string
	for _, k := range v1alpha1.Kinds() {
		names = append(names, fmt.Sprintf("%s (%s)", strings.ToLower(k.Name), strings.Join(k.ShortNames, ", ")))
	}
	return strings.Join(names, ", ")
}

// resourceName is how kubectl names an object in its output:
// "failoverpolicy.meridian.io/web".
func resourceName(kind, name string) string {
	return strings.ToLower(kind) + "." + v1alpha1.Group + "/" + name
}

// refusal turns the policy API's InvalidArgument and NotFound answers into
// one line and a hint; other errors are left to Execute.
func refusal(err error, notFoundHint string) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.InvalidArgument:
		var parts []string
		forceable := false
		for _, d := range st.Details() {
			switch d := d.(type) {
			case *errdetails.BadRequest:
				for _, v := range d.GetFieldViolations() {
					parts = append(parts, v.GetField()+": "+v.GetDescription())
				}
			case *errdetails.ErrorInfo:
				forceable = forceable || d.GetReason() == policyapi.ReasonForceable
			}
		}
		msg := strings.TrimPrefix(st.Message(), "policyapi: ")
		if len(parts) > 0 {
			msg = "refused: " + strings.Join(parts, "; ")
		}
		hint := "fix what is named above and try again; nothing was changed"
		if forceable {
			hint = "nothing was changed: fix the objects, or write them anyway with --force"
		}
		return Hint(errors.New(oneLine(msg)), hint)
	case codes.NotFound:
		return Hint(errors.New(strings.TrimPrefix(st.Message(), "policyapi: ")), notFoundHint)
	}
	return err
}

// printJSONOrYAML prints a JSON document in the --output format (json or
// yaml).
func (g *Globals) printJSONOrYAML(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the answer: %w", err)
	}
	if g.Output == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return fmt.Errorf("encode the answer: %w", err)
		}
		_, err = g.Out.Write(b)
		return err
	}
	_, err = fmt.Fprintln(g.Out, string(bytes.TrimSpace(b)))
	return err
}
