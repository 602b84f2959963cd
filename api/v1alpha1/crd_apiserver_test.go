package v1alpha1_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/internal/kubetest"
	"github.com/meridian-mesh/meridian/internal/meshtest"
	"github.com/meridian-mesh/meridian/internal/testutil"
)

// TestCRDsOnKubeAPIServer installs the generated CRDs into a real
// kube-apiserver, which must accept them (structural schemas) and establish
// them; then every object of the lab set is created, read back and decoded
// by this package unchanged — so the schemas cover every field (the server
// prunes what they do not) — and a value outside an enum is refused.
func TestCRDsOnKubeAPIServer(t *testing.T) {
	s := kubetest.Start(t)
	ctx := t.Context()
	dyn := dynamic.NewForConfigOrDie(s.RESTConfig())

	meshtest.InstallCRDs(t, s.RESTConfig())

	for _, ns := range []string{"shop", "payments"} {
		if _, err := s.Clientset().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range labSet(t) {
		k, _ := v1alpha1.LookupKind(v1alpha1.KindOf(o))
		gvr := v1alpha1.GroupVersion.WithResource(k.Plural)
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		var u unstructured.Unstructured
		if err := json.Unmarshal(b, &u.Object); err != nil {
			t.Fatal(err)
		}
		// Created objects are retried while the new resource's endpoint
		// comes up after Established.
		testutil.Eventually(t, time.Minute, func() error {
			_, err := dyn.Resource(gvr).Namespace(o.GetNamespace()).Create(ctx, &u, metav1.CreateOptions{})
			return err
		})
		got, err := dyn.Resource(gvr).Namespace(o.GetNamespace()).Get(ctx, o.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		gb, _ := json.Marshal(got.Object)
		objs, err := v1alpha1.Decode(gb)
		if err != nil {
			t.Fatalf("decoding %s as read from Kubernetes: %v", v1alpha1.Describe(o), err)
		}
		back := objs[0]
		if d := cmp.Diff(o, back, cmpopts.EquateEmpty(), cmpopts.IgnoreTypes(metav1.ObjectMeta{})); d != "" {
			t.Errorf("%s changed through kube-apiserver (fields missing from the schema are pruned):\n%s", v1alpha1.Describe(o), d)
		}
		if errs := back.Validate(); len(errs) > 0 {
			t.Errorf("%s from Kubernetes does not validate: %v", v1alpha1.Describe(o), errs)
		}
	}

	bad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.APIVersion, "kind": "ResidencyRule",
		"metadata": map[string]any{"name": "bad", "namespace": "shop"},
		"spec":     map[string]any{"allowedRegions": []any{"eu-west-1"}, "mode": "warn"},
	}}
	_, err := dyn.Resource(v1alpha1.GroupVersion.WithResource("residencyrules")).Namespace("shop").Create(ctx, bad, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), `spec.mode: Unsupported value: "warn"`) {
		t.Fatalf("an unknown mode: %v, want the server to refuse it by the schema's enum", err)
	}
}
