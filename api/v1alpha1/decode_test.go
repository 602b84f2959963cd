package v1alpha1_test

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
)

func readLab(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadEveryKind(t *testing.T) {
	objs, err := v1alpha1.Load(readLab(t), v1alpha1.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, v1alpha1.KindOf(o))
	}
	want := "FailoverPolicy FailoverPolicy ResidencyRule TrafficRoute DestinationPolicy ServiceEntry Gateway"
	if strings.Join(kinds, " ") != want {
		t.Fatalf("kinds %v", kinds)
	}
	fo := objs[0].(*v1alpha1.FailoverPolicy)
	if fo.Spec.Distribute[0].To[1].Weight != 20 || fo.Spec.OutlierDetection.Interval.Duration.String() != "1s" {
		t.Errorf("failover policy decoded as %+v", fo.Spec)
	}
	tr := objs[3].(*v1alpha1.TrafficRoute)
	if tr.Spec.HTTP[0].Match[0].Headers[0].Exact != "true" || *tr.Spec.HTTP[0].Mirror.Percent != 10 || tr.Spec.HTTP[1].Route[1].Cluster != "eks-euw1" {
		t.Errorf("route decoded as %+v", tr.Spec)
	}
	// Every kind round-trips through the generic form unchanged.
	for _, o := range objs {
		raw, err := v1alpha1.ToRaw(o)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(raw)
		var back v1alpha1.RawObject
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		o2, err := back.Object()
		if err != nil {
			t.Fatalf("%s: %v", raw.Key(), err)
		}
		if d := cmp.Diff(o, o2); d != "" {
			t.Errorf("%s changed through RawObject:\n%s", raw.Key(), d)
		}
	}
}

func TestLoadDefaultsNamespace(t *testing.T) {
	doc := "apiVersion: meridian.io/v1alpha1\nkind: ResidencyRule\nmetadata: {name: r}\nspec: {allowedRegions: [eu-west-1]}\n"
	objs, err := v1alpha1.Load([]byte(doc), v1alpha1.LoadOptions{DefaultNamespace: "payments"})
	if err != nil || objs[0].GetNamespace() != "payments" {
		t.Fatalf("%v %v", objs, err)
	}
	objs, err = v1alpha1.Load([]byte(doc), v1alpha1.LoadOptions{})
	if err != nil || objs[0].GetNamespace() != "default" {
		t.Fatalf("%v %v", objs, err)
	}
}

func TestDecodeJSON(t *testing.T) {
	doc := `{"apiVersion":"meridian.io/v1alpha1","kind":"Gateway","metadata":{"name":"ew","namespace":"mesh"},
	"spec":{"type":"east-west","listeners":[{"name":"tls","port":15443,"protocol":"TLS","tls":{"mode":"mesh"}}]}}`
	objs, err := v1alpha1.Load([]byte(doc), v1alpha1.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if g := objs[0].(*v1alpha1.Gateway); g.Spec.Listeners[0].Port != 15443 {
		t.Fatalf("%+v", g.Spec)
	}
}

// decodeErr loads a stream and returns its errors, failing if there are
// none.
func decodeErr(t *testing.T, stream string) v1alpha1.DecodeErrors {
	t.Helper()
	_, err := v1alpha1.Load([]byte(stream), v1alpha1.LoadOptions{})
	var errs v1alpha1.DecodeErrors
	if !errors.As(err, &errs) {
		t.Fatalf("want DecodeErrors, got %v", err)
	}
	return errs
}

const goodRule = `apiVersion: meridian.io/v1alpha1
kind: ResidencyRule
metadata: {name: ok, namespace: shop}
spec:
  allowedRegions: [eu-west-1]
`

func TestDecodeErrorsCarryDocumentAndLine(t *testing.T) {
	cases := []struct {
		name, stream string
		doc, line    int
		contains     string
	}{
		{"unknown field", goodRule + "---\n" + `apiVersion: meridian.io/v1alpha1
kind: FailoverPolicy
metadata: {name: fo, namespace: shop}
spec:
  failover:
  - from: us-east-1
    too: [eu-west-1]
`, 2, 13, `unknown field "spec.failover[0].too"`},
		{"duplicate field", `apiVersion: meridian.io/v1alpha1
kind: ResidencyRule
metadata: {name: r, namespace: shop}
spec:
  allowedRegions: [eu-west-1]
  allowedRegions: [us-east-1]
`, 1, 6, `already set in map`},
		{"wrong apiVersion", "---\n" + strings.Replace(goodRule, "meridian.io/v1alpha1", "networking.istio.io/v1", 1), 1, 2, `apiVersion: Unsupported value: "networking.istio.io/v1"`},
		{"unknown kind", goodRule + "---\n" + strings.Replace(goodRule, "ResidencyRule", "VirtualService", 1), 2, 8, `kind: Unsupported value: "VirtualService"`},
		{"not an object", goodRule + "---\n- just\n- a list\n", 2, 7, "must be an object"},
		{"YAML syntax", goodRule + "---\n" + "apiVersion: meridian.io/v1alpha1\nkind: [\n", 2, 8, "not valid YAML"},
		{"wrong type", `apiVersion: meridian.io/v1alpha1
kind: FailoverPolicy
metadata: {name: fo, namespace: shop}
spec:
  distribute:
  - from: "*"
    to:
    - locality: us-east-1/*
      weight: eighty
`, 1, 9, "cannot unmarshal string"},
		{"validation error points at the field", goodRule + "---\n" + `apiVersion: meridian.io/v1alpha1
kind: FailoverPolicy
metadata: {name: fo, namespace: shop}
spec:
  distribute:
  - from: "*"
    to:
    - locality: us-east-1/*
      weight: 70
    - locality: eu-west-1/*
      weight: 20
`, 2, 13, "spec.distribute[0].to: Invalid value: 90: weights must sum to 100"},
		{"validation error in a nested list", goodRule + "---\n" + `apiVersion: meridian.io/v1alpha1
kind: FailoverPolicy
metadata: {name: fo, namespace: shop}
spec:
  failover:
  - from: us-east-1
    to: [eu-west-1]
  - from: eu-west-1
    to:
    - us-east-1
    - eu-west-1
`, 2, 17, "spec.failover[1].to[1]: Invalid value: \"eu-west-1\": cycle"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs := decodeErr(t, c.stream)
			e := errs[0]
			if e.Doc != c.doc || e.Line != c.line || !strings.Contains(e.Error(), c.contains) {
				t.Errorf("got doc %d line %d: %v\nwant doc %d line %d containing %q", e.Doc, e.Line, e, c.doc, c.line, c.contains)
			}
		})
	}
}

func TestDecodeReportsEveryDocumentAndChangesNothing(t *testing.T) {
	stream := goodRule + "---\nkind: Nope\napiVersion: meridian.io/v1alpha1\n---\n" + goodRule + "---\napiVersion: x/v1\nkind: Nope\n"
	objs, err := v1alpha1.Decode([]byte(stream))
	var errs v1alpha1.DecodeErrors
	if objs != nil || !errors.As(err, &errs) || len(errs) != 2 || errs[0].Doc != 2 || errs[1].Doc != 4 {
		t.Fatalf("objs %v err %v", objs, err)
	}
	if !strings.HasPrefix(err.Error(), "v1alpha1: document 2, line") {
		t.Errorf("message %q", err)
	}
}

func TestDecodeSkipsEmptyDocuments(t *testing.T) {
	objs, err := v1alpha1.Decode([]byte("---\n# nothing\n---\n" + goodRule + "---\n\n"))
	if err != nil || len(objs) != 1 {
		t.Fatalf("%v %v", objs, err)
	}
}

func TestRawObjectRejectsBadSpec(t *testing.T) {
	raw := v1alpha1.RawObject{Kind: "ResidencyRule", Namespace: "shop", Name: "r", Spec: json.RawMessage(`{"allowedRegion":["x"]}`)}
	if _, err := raw.Object(); err == nil || !strings.Contains(err.Error(), `unknown field "spec.allowedRegion"`) {
		t.Fatalf("err %v", err)
	}
	raw = v1alpha1.RawObject{Kind: "Nope", Namespace: "shop", Name: "r"}
	if _, err := raw.Object(); err == nil || !strings.Contains(err.Error(), "Nope/shop/r") {
		t.Fatalf("err %v", err)
	}
}
