package registry_test

import (
	"encoding/json"
	"testing"

	"github.com/meridian-mesh/meridian/registry"
)

func FuzzParseLocality(f *testing.F) {
	for _, s := range []string{"us-east-1", "us-east-1/use1-az1/rack-1", "", "/", "a//b", "a/b/c/d", "ü/z", "a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := registry.ParseLocality(s)
		if err != nil {
			return
		}
		if l.Region == "" || (l.Subzone != "" && l.Zone == "") {
			t.Fatalf("ParseLocality(%q) accepted %+v", s, l)
		}
		if back, err := registry.ParseLocality(l.String()); err != nil || back != l {
			t.Fatalf("round trip of %q: %+v, %v", s, back, err)
		}
	})
}

// FuzzApplyChanges decodes arbitrary JSON as a batch (as the workload API
// and federation receive them) and applies it: invalid input must be
// refused without touching the registry, valid input must apply.
func FuzzApplyChanges(f *testing.F) {
	f.Add([]byte(`[{"op":"put","endpoint":{"service":{"namespace":"a","name":"b"},"id":"x","addresses":["10.0.0.1"],"port":80,"locality":{"region":"r"}}}]`))
	f.Add([]byte(`[{"op":"delete","service":{"namespace":"a","name":"b"}}]`))
	f.Add([]byte(`[{"op":"put","service":{"namespace":"a","name":"b","ports":[{"port":0}]}}]`))
	f.Add([]byte(`[{"op":"boom"}]`))
	f.Add([]byte(`[{}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var changes []registry.Change
		if json.Unmarshal(data, &changes) != nil {
			return
		}
		r := registry.New(registry.Options{})
		if err := r.SetCluster(registry.Cluster{Name: "c", Region: "r"}); err != nil {
			t.Fatal(err)
		}
		before := r.View()
		if _, err := r.Apply("c", changes...); err != nil {
			if r.View() != before {
				t.Fatalf("rejected batch changed the view: %v", err)
			}
			return
		}
		r.View().Segment("c").EachEndpoint(func(e *registry.Endpoint) bool {
			if e.Port == 0 || len(e.Addresses) == 0 {
				t.Fatalf("invalid endpoint stored: %+v", e)
			}
			return true
		})
	})
}
