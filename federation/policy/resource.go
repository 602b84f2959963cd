package policy

import (
	"fmt"
	"maps"
	"regexp"
	"slices"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Key names a resource mesh-wide. Namespace is empty for mesh-scoped kinds.
type Key struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// String renders "Kind/namespace/name", or "Kind/name" without a namespace.
func (k Key) String() string {
	if k.Namespace == "" {
		return k.Kind + "/" + k.Name
	}
	return k.Kind + "/" + k.Namespace + "/" + k.Name
}

// treeKey sorts by kind, namespace, name; NUL cannot occur in a valid key.
func (k Key) treeKey() []byte { return []byte(k.Kind + "\x00" + k.Namespace + "\x00" + k.Name) }

// etcdKey is the key below the store's prefix: KIND/NAMESPACE/NAME, with
// "-" for the namespace of a mesh-scoped resource ("-" is not a valid
// namespace, so the two cannot collide).
func (k Key) etcdKey() string {
	ns := k.Namespace
	if ns == "" {
		ns = "-"
	}
	return k.Kind + "/" + ns + "/" + k.Name
}

var kindRE = regexp.MustCompile(`^[A-Z][A-Za-z0-9]{0,62}$`)

// Validate checks a key: Kind is an UpperCamelCase word as Kubernetes kinds
// are, Namespace empty or a DNS-1123 label, Name a DNS-1123 subdomain.
func (k Key) Validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if k.Kind == "" {
		errs = append(errs, field.Required(path.Child("kind"), ""))
	} else if !kindRE.MatchString(k.Kind) {
		errs = append(errs, field.Invalid(path.Child("kind"), k.Kind, "must be an UpperCamelCase word of at most 63 letters and digits"))
	}
	if k.Namespace != "" {
		for _, msg := range validation.IsDNS1123Label(k.Namespace) {
			errs = append(errs, field.Invalid(path.Child("namespace"), k.Namespace, msg))
		}
	}
	if k.Name == "" {
		errs = append(errs, field.Required(path.Child("name"), ""))
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(k.Name) {
			errs = append(errs, field.Invalid(path.Child("name"), k.Name, msg))
		}
	}
	return errs
}

// Resource is one replicated policy resource: an opaque spec under a key,
// with the metadata that orders concurrent writes. A delete leaves a
// tombstone (Deleted, no spec) so that it replicates like a write; the
// tombstone is collected once every member has seen it.
type Resource struct {
	Key
	// Spec is opaque to the store: the owner of each kind encodes and
	// validates it.
	Spec []byte `json:"spec,omitempty"`
	// Stamp is the hybrid-logical-clock time of the write.
	Stamp Timestamp `json:"stamp"`
	// Origin is the member (cluster/replica) that wrote it. It breaks ties
	// between writes with equal stamps, so every member picks the same
	// winner.
	Origin  string `json:"origin"`
	Deleted bool   `json:"deleted,omitempty"`
}

// Newer reports whether r wins over o under last-writer-wins: the later
// stamp, then the greater origin.
func (r *Resource) Newer(o *Resource) bool {
	if r.Stamp != o.Stamp {
		return r.Stamp > o.Stamp
	}
	return r.Origin > o.Origin
}

func (r *Resource) same(o *Resource) bool {
	return r.Stamp == o.Stamp && r.Origin == o.Origin
}

// validate checks a resource received from the network or read from etcd.
func (r *Resource) validate(maxSpec int, path *field.Path) field.ErrorList {
	errs := r.Key.Validate(path)
	if r.Origin == "" {
		errs = append(errs, field.Required(path.Child("origin"), ""))
	} else if len(r.Origin) > 253 {
		errs = append(errs, field.TooLong(path.Child("origin"), "", 253))
	}
	if r.Stamp == 0 {
		errs = append(errs, field.Required(path.Child("stamp"), ""))
	}
	if len(r.Spec) > maxSpec {
		errs = append(errs, field.TooLong(path.Child("spec"), "", maxSpec))
	}
	if r.Deleted && len(r.Spec) > 0 {
		errs = append(errs, field.Invalid(path.Child("spec"), "", "a tombstone has no spec"))
	}
	return errs
}

// Vector maps each origin to a stamp such that the holder has every record
// that origin wrote at or before it — or a newer record for the same key.
// Members exchange vectors to find what the other lacks.
type Vector map[string]Timestamp

// Merge raises every entry of v to o's.
func (v Vector) Merge(o Vector) {
	for origin, t := range o {
		if t > v[origin] {
			v[origin] = t
		}
	}
}

// Ahead reports whether o has an entry above v's.
func (v Vector) Ahead(o Vector) bool {
	for origin, t := range o {
		if t > v[origin] {
			return true
		}
	}
	return false
}

// Origins returns the origins in v, sorted.
func (v Vector) Origins() []string { return slices.Sorted(maps.Keys(v)) }

func (v Vector) String() string { return fmt.Sprint(map[string]Timestamp(v)) }
