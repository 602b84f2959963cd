package meshtest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/internal/testutil"
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRDs creates the CRD of every kind (deploy/crds) in a real
// kube-apiserver, fails the test if the server refuses one, and waits
// until all are established.
func InstallCRDs(t testing.TB, rc *rest.Config) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "deploy", "crds")
	dyn := dynamic.NewForConfigOrDie(rc)
	ctx := t.Context()
	for _, k := range v1alpha1.Kinds() {
		b, err := os.ReadFile(filepath.Join(dir, v1alpha1.Group+"_"+k.Plural+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var u unstructured.Unstructured
		if err := yaml.Unmarshal(b, &u.Object); err != nil {
			t.Fatal(err)
		}
		if _, err := dyn.Resource(crdResource).Create(ctx, &u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("kube-apiserver refused the CRD of %s: %v", k.Name, err)
		}
	}
	for _, k := range v1alpha1.Kinds() {
		testutil.Eventually(t, time.Minute, func() error {
			crd, err := dyn.Resource(crdResource).Get(ctx, k.Plural+"."+v1alpha1.Group, metav1.GetOptions{})
			if err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, c := range conds {
				if m, _ := c.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
			return fmt.Errorf("CRD %s not established: %v", k.Name, conds)
		})
	}
}
