package policyapi_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/internal/kubetest"
	"github.com/meridian-mesh/meridian/internal/meshtest"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/policyapi"
)

// Policies written as custom resources in a real kube-apiserver reach the
// policy store (and the engine) validated as applied ones are; deleting
// the resource deletes the policy; an invalid resource changes nothing;
// and a policy whose resource was deleted while meridiand was away is
// deleted on start.
func TestPoliciesFromKubernetes(t *testing.T) {
	t.Parallel()
	api := kubetest.Start(t)
	meshtest.InstallCRDs(t, api.RESTConfig())
	ctx := t.Context()
	if _, err := api.Clientset().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{})
	// Left behind by this cluster's Kubernetes before a restart: it is
	// not in Kubernetes, so it goes.
	stale := mustDecode(t, webFailover)
	stale.SetName("stale")
	k, val, err := policyapi.Encode(stale, "kubernetes/"+meshtest.USE1.Name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.pol.Put(ctx, k, val); err != nil {
		t.Fatal(err)
	}
	// Written through the API: Kubernetes leaves it alone.
	e.mustApply(paymentsInEU)

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := e.srv.RunKube(runCtx, policyapi.KubeConfig{REST: api.RESTConfig()}); err != nil {
			t.Errorf("RunKube: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	testutil.Eventually(t, 30*time.Second, func() error { return e.srv.KubeSynced(ctx) })

	has := func(name string) func() error {
		return func() error {
			if _, ok := e.pol.Snapshot().Get(policy.Key{Kind: "FailoverPolicy", Namespace: "shop", Name: name}); !ok {
				return fmt.Errorf("FailoverPolicy shop/%s not in the store", name)
			}
			return nil
		}
	}
	hasNot := func(name string) func() error {
		return func() error {
			if has(name)() == nil {
				return fmt.Errorf("FailoverPolicy shop/%s still in the store", name)
			}
			return nil
		}
	}
	testutil.Eventually(t, 10*time.Second, hasNot("stale"))

	dyn := dynamic.NewForConfigOrDie(api.RESTConfig()).Resource(v1alpha1.GroupVersion.WithResource("failoverpolicies")).Namespace("shop")
	var u unstructured.Unstructured
	if err := yaml.Unmarshal([]byte(webFailover), &u.Object); err != nil {
		t.Fatal(err)
	}
	u.SetAnnotations(map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "sre"})
	testutil.Eventually(t, 30*time.Second, func() error { _, err := dyn.Create(ctx, &u, metav1.CreateOptions{}); return err })
	testutil.Eventually(t, 10*time.Second, has("web"))
	got, err := e.srv.Get(policy.Key{Kind: "FailoverPolicy", Namespace: "shop", Name: "web"})
	if err != nil || got.Source != "kubernetes/eks-use1" || got.Object.GetAnnotations()["team"] != "sre" || len(got.Object.GetAnnotations()) != 1 {
		t.Fatalf("stored: %+v (%v)", got, err)
	}
	e.inForce(2)
	// Changing it through the API takes force: Kubernetes owns it.
	_, err = e.apply(strings.Replace(webFailover, "[eu-west-1, onprem-east]", "[onprem-east]", 1), false)
	vs, forceable := violations(t, err)
	containsAll(t, vs, "FailoverPolicy shop/web: is a custom resource of eks-use1's Kubernetes: change it there with kubectl")
	if !forceable {
		t.Error("taking over a custom resource is forceable")
	}

	// Invalid (weights summing to 90; the CRD schema cannot tell): refused,
	// the valid version stays.
	cur, err := dyn.Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedSlice(cur.Object, []any{map[string]any{"from": "us-east-1/*", "to": []any{
		map[string]any{"locality": "us-east-1/use1-az1", "weight": int64(60)}, map[string]any{"locality": "eu-west-1/*", "weight": int64(30)},
	}}}, "spec", "distribute")
	if _, err := dyn.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if n := counter(t, e, "meridian_policy_kube_objects_total", "invalid"); n < 1 {
			return fmt.Errorf("%v invalid objects counted", n)
		}
		return nil
	})
	if got, _ := e.srv.Get(policy.Key{Kind: "FailoverPolicy", Namespace: "shop", Name: "web"}); len(got.Object.(*v1alpha1.FailoverPolicy).Spec.Distribute) != 0 {
		t.Fatal("the invalid version reached the store")
	}

	if err := dyn.Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, hasNot("web"))
	if _, ok := e.pol.Snapshot().Get(policy.Key{Kind: "ResidencyRule", Namespace: "shop", Name: "payments-eu"}); !ok {
		t.Fatal("the policy written through the API was deleted")
	}
	e.inForce(1)
}

func mustDecode(t *testing.T, y string) v1alpha1.Object {
	t.Helper()
	objs, err := v1alpha1.Load([]byte(y), v1alpha1.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return objs[0]
}
