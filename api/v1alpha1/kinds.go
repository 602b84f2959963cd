package v1alpha1

import (
	"reflect"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Group and Version of every kind in this package.
const (
	Group   = "meridian.io"
	Version = "v1alpha1"
	// APIVersion is what every object's apiVersion must say.
	APIVersion = Group + "/" + Version
)

// GroupVersion is Group and Version as apimachinery spells them.
var GroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// Object is any kind of this package. Every kind is a Kubernetes-shaped
// struct (TypeMeta, ObjectMeta, Spec, optional Status), so the same value
// is a CRD object, a file read by meridianctl, and a policy in etcd.
type Object interface {
	metav1.Object
	GetObjectKind() schema.ObjectKind
	// Validate checks the object on its own and returns every problem with
	// the field it concerns. Checks that need the registry or the other
	// policies are in ValidateSet.
	Validate() field.ErrorList
}

// Kind describes one kind of the schema.
type Kind struct {
	// Name is the Kind ("FailoverPolicy"), also the Go type's name.
	Name string
	// Plural is the lower-case plural resource name ("failoverpolicies").
	Plural string
	// ShortNames are kubectl's abbreviations.
	ShortNames []string
	// Type is the kind's Go struct type.
	Type reflect.Type
	new  func() Object
}

// New returns an empty object of the kind with its TypeMeta set.
func (k Kind) New() Object {
	o := k.new()
	o.GetObjectKind().SetGroupVersionKind(GroupVersion.WithKind(k.Name))
	return o
}

// kinds is the table of every kind. Adding a kind takes its own file (the
// types and their Validate method) and one line here; decoding, the generic
// object form and the CRD manifests follow from this table.
var kinds = []Kind{
	kind[FailoverPolicy]("failoverpolicies", "fop"),
	kind[ResidencyRule]("residencyrules", "rr"),
	kind[TrafficRoute]("trafficroutes", "tr"),
	kind[DestinationPolicy]("destinationpolicies", "dp"),
	kind[ServiceEntry]("serviceentries", "se"),
	kind[Gateway]("gateways", "gw"),
	kind[PeerAuthentication]("peerauthentications", "pa"),
	kind[AuthorizationPolicy]("authorizationpolicies", "ap"),
	kind[RequestAuthentication]("requestauthentications", "ra"),
}

func kind[T any, PT interface {
	*T
	Object
}](plural string, short ...string) Kind {
	return Kind{
		Name:       reflect.TypeFor[T]().Name(),
		Plural:     plural,
		ShortNames: short,
		Type:       reflect.TypeFor[T](),
		new:        func() Object { return PT(new(T)) },
	}
}

// Kinds returns every kind, in the order of the table.
func Kinds() []Kind { return slices.Clone(kinds) }

// LookupKind finds a kind by its Name.
func LookupKind(name string) (Kind, bool) {
	i := slices.IndexFunc(kinds, func(k Kind) bool { return k.Name == name })
	if i < 0 {
		return Kind{}, false
	}
	return kinds[i], true
}

// ResolveKind finds a kind as kubectl users write it: its Name, its
// plural, its singular or one of its short names, in any case
// ("FailoverPolicy", "failoverpolicies", "failoverpolicy", "fop").
func ResolveKind(s string) (Kind, bool) {
	s = strings.ToLower(s)
	for _, k := range kinds {
		if s == strings.ToLower(k.Name) || s == k.Plural || slices.Contains(k.ShortNames, s) {
			return k, true
		}
	}
	return Kind{}, false
}

func kindNames() []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = k.Name
	}
	return out
}

// Status is the optional status every kind carries, as Kubernetes
// controllers report it: whether the control plane accepted the object.
type Status struct {
	// ObservedGeneration is the generation the conditions describe.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Accepted (valid and in force), and kind-specific ones.
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}
