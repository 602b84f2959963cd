package v1alpha1_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
)

// FuzzDecode feeds arbitrary YAML and JSON streams to the decoders. They
// must never panic; what they accept must validate without panicking and
// survive the trip through the generic form unchanged (an empty list and
// an absent one are the same thing).
func FuzzDecode(f *testing.F) {
	lab, err := os.ReadFile("testdata/lab.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(lab)
	for _, doc := range bytes.Split(lab, []byte("\n---\n")) {
		f.Add(doc)
	}
	f.Add([]byte(`{"apiVersion":"meridian.io/v1alpha1","kind":"Gateway","metadata":{"name":"g"},"spec":{"type":"egress","listeners":[]}}`))
	f.Add([]byte("apiVersion: meridian.io/v1alpha1\nkind: ResidencyRule\nspec: &a {allowedRegions: *a}\n"))
	f.Add([]byte("---\n---\n- [\n"))
	f.Add([]byte("apiVersion: meridian.io/v1alpha1\nkind: TrafficRoute\nspec:\n  http:\n  - route: [{host: x, weight: 1e400}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := v1alpha1.Decode(data)
		if err != nil {
			_ = err.Error()
			return
		}
		for _, o := range objs {
			o.Validate()
			raw, err := v1alpha1.ToRaw(o)
			if err != nil {
				t.Fatalf("ToRaw of a decoded object: %v", err)
			}
			b, err := json.Marshal(raw)
			if err != nil {
				t.Fatal(err)
			}
			var back v1alpha1.RawObject
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			o2, err := back.Object()
			if err != nil {
				t.Fatalf("the generic form of a decoded object does not decode: %v\n%s", err, b)
			}
			if d := cmp.Diff(o, o2, cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("changed through the generic form:\n%s", d)
			}
		}
		_, _ = v1alpha1.Load(data, v1alpha1.LoadOptions{})
	})
}
