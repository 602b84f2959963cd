package v1alpha1

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RawObject is the generic form of any object: what federation's opaque
// policy store replicates and etcd keeps, without knowing the kinds.
type RawObject struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Spec is the object's spec as JSON.
	Spec json.RawMessage `json:"spec"`
	// ResourceVersion is the store's version of the object.
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// Key is "Kind/namespace/name", unique in a store.
func (r RawObject) Key() string { return r.Kind + "/" + r.Namespace + "/" + r.Name }

// ToRaw turns an object into its generic form.
func ToRaw(o Object) (RawObject, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return RawObject{}, fmt.Errorf("v1alpha1: encoding %s: %w", Describe(o), err)
	}
	var parts struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return RawObject{}, fmt.Errorf("v1alpha1: encoding %s: %w", Describe(o), err)
	}
	return RawObject{
		Kind:            KindOf(o),
		Namespace:       o.GetNamespace(),
		Name:            o.GetName(),
		Spec:            parts.Spec,
		ResourceVersion: o.GetResourceVersion(),
	}, nil
}

// Object decodes the generic form strictly (as Decode does) into its typed
// object. It does not validate.
func (r RawObject) Object() (Object, error) {
	b, err := json.Marshal(struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        metav1.ObjectMeta `json:"metadata"`
		Spec            json.RawMessage   `json:"spec,omitempty"`
	}{
		TypeMeta: metav1.TypeMeta{APIVersion: APIVersion, Kind: r.Kind},
		Metadata: metav1.ObjectMeta{Namespace: r.Namespace, Name: r.Name, ResourceVersion: r.ResourceVersion},
		Spec:     r.Spec,
	})
	if err != nil {
		return nil, fmt.Errorf("v1alpha1: %s: %w", r.Key(), err)
	}
	objs, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("v1alpha1: %s: %w", r.Key(), err)
	}
	return objs[0], nil
}
