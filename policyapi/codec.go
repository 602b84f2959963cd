package policyapi

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/federation/policy"
)

// Sources of stored objects.
const (
	SourceAPI = "api"
	// sourceKubePrefix + cluster name: read from that cluster's CRDs.
	sourceKubePrefix = "kubernetes/"
)

// value is a policy object as the replicated store holds it, under the key
// (kind, namespace, name): the spec as api/v1alpha1 encodes it, the
// metadata users set, and where the object came from. The store itself
// treats it as opaque bytes.
type value struct {
	Spec        json.RawMessage   `json:"spec"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Source is SourceAPI, or "kubernetes/CLUSTER" for objects read from
	// that cluster's custom resources.
	Source string `json:"source,omitempty"`
}

// Encode returns the store key and value of an object written by source.
// Readers of the store (every component that needs policies) use Decode.
func Encode(o v1alpha1.Object, source string) (policy.Key, []byte, error) {
	raw, err := v1alpha1.ToRaw(o)
	if err != nil {
		return policy.Key{}, nil, fmt.Errorf("policyapi: %w", err)
	}
	b, err := json.Marshal(value{Spec: raw.Spec, Labels: o.GetLabels(), Annotations: o.GetAnnotations(), Source: source})
	if err != nil {
		return policy.Key{}, nil, fmt.Errorf("policyapi: encoding %s: %w", v1alpha1.Describe(o), err)
	}
	return keyOf(o), b, nil
}

func keyOf(o v1alpha1.Object) policy.Key {
	return policy.Key{Kind: v1alpha1.KindOf(o), Namespace: o.GetNamespace(), Name: o.GetName()}
}

// Decode returns the object a store resource holds, strictly decoded (as
// v1alpha1.Decode does) but not validated, with its resourceVersion set to
// the resource's stamp; and the source that wrote it.
func Decode(r *policy.Resource) (v1alpha1.Object, string, error) {
	if _, ok := v1alpha1.LookupKind(r.Kind); !ok {
		return nil, "", fmt.Errorf("policyapi: %s: unknown kind %q", r.Key, r.Kind)
	}
	var val value
	if err := json.Unmarshal(r.Spec, &val); err != nil {
		return nil, "", fmt.Errorf("policyapi: %s: stored value: %w", r.Key, err)
	}
	o, err := v1alpha1.RawObject{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Spec: val.Spec,
		ResourceVersion: strconv.FormatUint(uint64(r.Stamp), 10)}.Object()
	if err != nil {
		return nil, "", fmt.Errorf("policyapi: %w", err)
	}
	o.SetLabels(val.Labels)
	o.SetAnnotations(val.Annotations)
	return o, val.Source, nil
}

// manifest renders an object as a user writes it, without the empty
// fields Kubernetes' types add (creationTimestamp: null).
func manifest(o v1alpha1.Object) (map[string]any, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if md, ok := m["metadata"].(map[string]any); ok && md["creationTimestamp"] == nil {
		delete(md, "creationTimestamp")
	}
	return m, nil
}
