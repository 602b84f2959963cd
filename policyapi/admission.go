package policyapi

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/registry"
)

// Violation is one reason a request is refused: where (a source and line,
// or an object and field) and why.
type Violation struct {
	Field       string
	Description string
}

// RefusedError is a refused apply or delete: nothing was written.
// Forceable is set when only set-level checks refused it, which Force
// overrides.
type RefusedError struct {
	Violations []Violation
	Forceable  bool
}

func (e *RefusedError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return "policyapi: refused: " + strings.Join(parts, "; ")
}

// NotFoundError names objects or targets that do not exist.
type NotFoundError struct{ What string }

func (e *NotFoundError) Error() string { return "policyapi: " + e.What + " not found" }

// Source is one file, or stdin, of an apply.
type Source struct {
	Name string
	Data []byte
}

// parseSources loads every object of the sources, validated one by one:
// a problem names the source, the line, the object and the field.
func parseSources(srcs []Source, defaultNamespace string) ([]v1alpha1.Object, error) {
	var objs []v1alpha1.Object
	var vs []Violation
	where := map[policy.Key]string{}
	for i, src := range srcs {
		name := src.Name
		if name == "" {
			name = fmt.Sprintf("source %d", i+1)
		}
		loaded, err := v1alpha1.Load(src.Data, v1alpha1.LoadOptions{DefaultNamespace: defaultNamespace})
		var des v1alpha1.DecodeErrors
		switch {
		case errors.As(err, &des):
			for _, de := range des {
				vs = append(vs, decodeViolation(name, de))
			}
			continue
		case err != nil:
			vs = append(vs, Violation{Field: name, Description: err.Error()})
			continue
		case len(loaded) == 0:
			vs = append(vs, Violation{Field: name, Description: "no objects: want YAML documents or a JSON object with apiVersion " + v1alpha1.APIVersion + ", kind, metadata and spec"})
		}
		for j, o := range loaded {
			k := keyOf(o)
			here := fmt.Sprintf("%s: document %d", name, j+1)
			if first, dup := where[k]; dup {
				vs = append(vs, Violation{Field: here, Description: v1alpha1.Describe(o) + " is also given in " + first})
				continue
			}
			where[k] = here
			objs = append(objs, o)
		}
	}
	if len(vs) > 0 {
		return nil, &RefusedError{Violations: vs}
	}
	return objs, nil
}

func decodeViolation(src string, de *v1alpha1.DecodeError) Violation {
	loc := src
	if de.Line > 0 {
		loc = fmt.Sprintf("%s:%d", src, de.Line)
	}
	loc += fmt.Sprintf(" (document %d)", de.Doc)
	desc := de.Err.Error()
	var fe *field.Error
	if errors.As(de.Err, &fe) {
		desc = fe.Field + ": " + fe.ErrorBody()
	}
	if de.Object != "" {
		desc = de.Object + ": " + desc
	}
	return Violation{Field: loc, Description: desc}
}

// admission is the check of one change to the policy set.
type admission struct {
	view    *registry.View
	current []v1alpha1.Object
	put     []v1alpha1.Object
	del     []policy.Key
	// managed are refusals found before the set checks (objects
	// Kubernetes owns).
	managed []Violation
}

// check runs the set-level checks on the set the change would make and
// returns what it newly breaks (errors: refused unless forced) and the
// warnings about the changed objects. Problems the set already had are
// not blamed on the change.
func (a admission) check() (errs, warnings []Violation) {
	after := a.after()
	ctx := locality.ContextOf(a.view)
	before := findingSet(v1alpha1.ValidateSet(a.current, ctx))
	changed := map[string]bool{}
	for _, o := range a.put {
		changed[v1alpha1.Describe(o)] = true
	}
	for _, f := range v1alpha1.ValidateSet(after, ctx) {
		switch {
		case !f.Warning && !before[f.String()]:
			errs = append(errs, findingViolation(f))
		case f.Warning && changed[f.Object]:
			warnings = append(warnings, findingViolation(f))
		}
	}
	// A rule stranding a service: only the engine knows the endpoints.
	residency := func(objs []v1alpha1.Object) v1alpha1.Findings {
		e, err := locality.New(locality.Config{Policies: objs})
		if err != nil {
			return nil // every object passed Validate, which is all New checks
		}
		return e.CheckResidency(a.view)
	}
	stranded := findingSet(residency(a.current))
	for _, f := range residency(after) {
		if !stranded[f.String()] {
			errs = append(errs, findingViolation(f))
		}
	}
	return errs, warnings
}

// after is the policy set with the change made.
func (a admission) after() []v1alpha1.Object {
	replaced := map[policy.Key]bool{}
	for _, o := range a.put {
		replaced[keyOf(o)] = true
	}
	for _, k := range a.del {
		replaced[k] = true
	}
	out := slices.DeleteFunc(slices.Clone(a.current), func(o v1alpha1.Object) bool { return replaced[keyOf(o)] })
	return append(out, a.put...)
}

func findingSet(fs v1alpha1.Findings) map[string]bool {
	out := make(map[string]bool, len(fs))
	for _, f := range fs {
		out[f.String()] = true
	}
	return out
}

func findingViolation(f v1alpha1.Finding) Violation {
	return Violation{Field: f.Object + ": " + f.Err.Field, Description: f.Err.ErrorBody()}
}
