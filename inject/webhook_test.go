package inject_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	admissionv1 "k8s.io/api/admission/v1"
	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/meridian-mesh/meridian/inject"
	"github.com/meridian-mesh/meridian/internal/kubetest"
	itu "github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/trust/ca"
)

// startAPIServerWithWebhooks starts the harness's kube-apiserver with the
// MutatingAdmissionWebhook admission plugin on. The harness turns it off to
// start fast, and offers no option for it; a wrapper binary takes it out of
// --disable-admission-plugins and runs the real server.
func startAPIServerWithWebhooks(t *testing.T) *kubetest.APIServer {
	t.Helper()
	if os.Getenv(kubetest.SkipEnv) == "1" {
		t.Skip(kubetest.SkipEnv + "=1: skipping a test that needs a real kube-apiserver")
	}
	real, err := kubetest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "kube-apiserver-webhooks")
	script := `#!/usr/bin/env bash
args=()
for a in "$@"; do
  case $a in --disable-admission-plugins=*) a=${a//MutatingAdmissionWebhook,/}; a=${a//,MutatingAdmissionWebhook/};; esac
  args+=("$a")
done
exec ` + real + ` "${args[@]}"
`
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	api, err := kubetest.New(t.Context(), kubetest.Options{Dir: dir, Binary: wrapper})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- last lines of %s:\n%s", api.LogPath(), api.LogTail(40))
		}
		api.Stop()
	})
	return api
}

// newIntermediate creates a mesh root and a cluster's intermediate with
// package trust/ca.
func newIntermediate(t testing.TB) (spiffeid.TrustDomain, *ca.Root, *x509.Certificate, crypto.Signer) {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("mesh.test")
	root, err := ca.NewRoot(ca.RootOptions{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := root.IssueIntermediate(ca.IntermediateRequest{Cluster: "kind-1", PublicKey: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	return td, root, ic, key
}

// staticCA is the mesh CA without etcd, for tests of the handler alone.
func staticCA(t testing.TB) inject.CASource {
	_, root, ic, key := newIntermediate(t)
	c := inject.CA{Chain: []*x509.Certificate{ic}, Key: key, Roots: []*x509.Certificate{root.Certificate()}}
	return func(context.Context) (inject.CA, error) { return c, nil }
}

// meshCA creates a mesh root and this cluster's intermediate with package
// trust/ca and stores both in etcd, as the trust bootstrap does, and
// returns the webhook's view of them.
func meshCA(t *testing.T, api *kubetest.APIServer) inject.CASource {
	t.Helper()
	td, root, ic, key := newIntermediate(t)
	sealer, err := ca.NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	st := ca.NewStore(api.Etcd(), "/meridian/trust", sealer)
	if err := st.SaveIntermediate(t.Context(), td, "kind-1", []*x509.Certificate{ic}, key); err != nil {
		t.Fatal(err)
	}
	return inject.StoreCA(st, func() []*x509.Certificate { return []*x509.Certificate{root.Certificate()} })
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestWebhookWithAPIServer is the proof of injection: the real
// kube-apiserver calls the webhook for pods created in a labelled
// namespace, over TLS verified against the mesh CA's root that meridiand
// wrote into the configuration's caBundle.
func TestWebhookWithAPIServer(t *testing.T) {
	api := startAPIServerWithWebhooks(t)
	cs := api.Clientset()
	ctx := t.Context()

	const webhookName = "meridian-sidecar-injector-test"
	s := testSettings()
	s.Addr = "127.0.0.1:0"
	s.WebhookName = webhookName
	reg := prometheus.NewRegistry()
	srv, err := inject.New(ctx, inject.Config{
		Settings: s, Cluster: "kind-1", ServerID: testMesh(t).ServerID, CA: meshCA(t, api), Kube: rbacClient(t, api, webhookName), Logger: testLogger(t), Metrics: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	// The configuration as the chart ships it: no caBundle yet.
	mwc := &admregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: webhookName},
		Webhooks: []admregv1.MutatingWebhook{{
			Name:                    "sidecar-injector.meridian.io",
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admregv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(admregv1.Fail),
			TimeoutSeconds:          ptr.To[int32](10),
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{inject.NamespaceLabel: "enabled"}},
			ClientConfig:            admregv1.WebhookClientConfig{URL: ptr.To("https://" + srv.Addr() + "/inject")},
			Rules: []admregv1.RuleWithOperations{{
				Operations: []admregv1.OperationType{admregv1.Create},
				Rule:       admregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
		}},
	}
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	itu.Eventually(t, 30*time.Second, func() error { return srv.Ready(ctx) })
	got, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, webhookName, metav1.GetOptions{})
	if err != nil || !bytes.Equal(got.Webhooks[0].ClientConfig.CABundle, srv.CABundle()) {
		t.Fatalf("caBundle not written: %v", err)
	}

	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "meshed", Labels: map[string]string{inject.NamespaceLabel: "enabled"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
	} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	create := func(ns, name string, annotations map[string]string) (*corev1.Pod, error) {
		p := pod(func(p *corev1.Pod) { p.Name, p.Namespace, p.Annotations = name, ns, annotations })
		return cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	}
	injected := func(p *corev1.Pod) bool {
		return len(p.Spec.Containers) == 2 && p.Spec.Containers[1].Name == inject.ProxyContainer &&
			len(p.Spec.InitContainers) == 1 && p.Spec.InitContainers[0].Name == inject.InitContainer &&
			p.Annotations[inject.StatusAnnotation] == "injected"
	}

	var podN *corev1.Pod
	t.Run("labelled namespace gets the sidecar", func(t *testing.T) {
		// The first calls may race the API server's view of the new
		// configuration; the webhook is then simply not called yet.
		n := 0
		itu.Eventually(t, 30*time.Second, func() error {
			n++
			p, err := create("meshed", fmt.Sprintf("web-%d", n), nil)
			if err != nil {
				return err
			}
			if !injected(p) {
				return fmt.Errorf("pod %s came back without the sidecar: %v / %v", p.Name, names(p.Spec.InitContainers), names(p.Spec.Containers))
			}
			podN = p
			return nil
		})
		// The API server validated and stored the projected volume and the
		// roots annotation; the roots are those of the caBundle.
		checkXDSTrust(t, podN, inject.Mesh{Cluster: "kind-1", ServerID: testMesh(t).ServerID, Roots: srv.CABundle()})
	})
	t.Run("opted-out pod is untouched", func(t *testing.T) {
		p, err := create("meshed", "batch", map[string]string{inject.InjectAnnotation: "false"})
		if err != nil || len(p.Spec.Containers) != 1 || len(p.Spec.InitContainers) != 0 {
			t.Fatalf("create = %v, %v; want the pod untouched", p, err)
		}
	})
	t.Run("unlabelled namespace is untouched", func(t *testing.T) {
		p, err := create("plain", "web", nil)
		if err != nil || len(p.Spec.Containers) != 1 {
			t.Fatalf("create = %v, %v; want the pod untouched", p, err)
		}
	})
	t.Run("bad annotation is refused with the field", func(t *testing.T) {
		_, err := create("meshed", "typo", map[string]string{inject.InjectAnnotation: "nope"})
		if err == nil || !strings.Contains(err.Error(), `metadata.annotations[meridian.io/inject]: Invalid value: "nope"`) {
			t.Fatalf("create = %v; want a denial naming the annotation", err)
		}
	})
	t.Run("malformed reviews get clear errors and the webhook keeps serving", func(t *testing.T) {
		client := tlsClient(t, srv.CABundle())
		url := "https://" + srv.Addr() + "/inject"
		for _, tc := range []struct{ body, want string }{
			{`{"apiVersion":`, "inject: decode AdmissionReview: unexpected end of JSON input"},
			{`{"apiVersion":"v1","kind":"Pod"}`, `want admission.k8s.io/v1 AdmissionReview`},
			{`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, "inject: request: Required value"},
		} {
			resp, err := client.Post(url, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), tc.want) {
				t.Errorf("POST %s = %d %q; want 400 with %q", tc.body, resp.StatusCode, b, tc.want)
			}
		}
		// A well-formed review of a malformed Pod: denied, with the reason.
		review := admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID: "u1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Operation: admissionv1.Create, Namespace: "meshed",
				Object: runtimeRaw(`{"spec":{"containers":"not a list"}}`),
			},
		}
		body, _ := json.Marshal(review)
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if out.Response == nil || out.Response.Allowed || out.Response.UID != "u1" ||
			!strings.Contains(out.Response.Result.Message, "request.object: not a Pod") {
			t.Fatalf("response = %+v; want a denial naming request.object", out.Response)
		}
		if p, err := create("meshed", "after-garbage", nil); err != nil || !injected(p) {
			t.Fatalf("after malformed requests: create = %v; want the sidecar", err)
		}
		if n := reviewCount(t, reg, "malformed"); n != 3 {
			t.Errorf("malformed count = %v; want 3", n)
		}
	})
	t.Run("webhook down blocks only labelled namespaces", func(t *testing.T) {
		stop()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if _, err := create("plain", "while-down", nil); err != nil {
			t.Errorf("unlabelled namespace while the webhook is down: %v", err)
		}
		if _, err := create("meshed", "while-down", nil); err == nil || !strings.Contains(err.Error(), "sidecar-injector.meridian.io") {
			t.Errorf("labelled namespace while the webhook is down: %v; want failurePolicy Fail to name the webhook", err)
		}
	})
}

// rbacClient is a client with only what the chart's ClusterRole grants
// meridiand for the webhook: get and patch of its own configuration.
func rbacClient(t *testing.T, api *kubetest.APIServer, webhook string) kubernetes.Interface {
	t.Helper()
	const user = "meridiand-inject"
	ctx := t.Context()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"},
		ResourceNames: []string{webhook}, Verbs: []string{"get", "patch"},
	}}}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: user},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}},
	}
	if _, err := api.Clientset().RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Clientset().RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := api.RESTConfigAs(user)
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

func tlsClient(t *testing.T, bundle []byte) *http.Client {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatal("caBundle holds no certificate")
	}
	// The serving certificate names 127.0.0.1, as the test's settings ask.
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func runtimeRaw(s string) runtime.RawExtension { return runtime.RawExtension{Raw: []byte(s)} }

// reviewCount reads meridian_inject_reviews_total{result}.
func reviewCount(t *testing.T, reg prometheus.Gatherer, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "meridian_inject_reviews_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no meridian_inject_reviews_total{result=%q}", result)
	return 0
}

// TestHandlerPodRoots: an injected pod carries the roots Config.Roots
// returns at admission (a root added by a rotation reaches the next pod,
// not the next certificate renewal), and the caBundle's when it has none.
func TestHandlerPodRoots(t *testing.T) {
	_, rotated, _, _ := newIntermediate(t)
	var live []*x509.Certificate
	s := testSettings()
	s.Addr = "127.0.0.1:0"
	srv, err := inject.New(t.Context(), inject.Config{Settings: s, Cluster: "kind-1", ServerID: testMesh(t).ServerID, CA: staticCA(t),
		Roots: func() []*x509.Certificate { return live }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	admitted := func() string {
		t.Helper()
		p := pod(nil)
		raw, _ := json.Marshal(p)
		review := admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "u1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Operation: admissionv1.Create, Namespace: "shop", Object: runtime.RawExtension{Raw: raw}},
		}
		body, _ := json.Marshal(review)
		req := httptest.NewRequest(http.MethodPost, "/inject", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(rec.Body).Decode(&out); err != nil || out.Response == nil || out.Response.Patch == nil {
			t.Fatalf("review answered %d %v: %+v", rec.Code, err, out.Response)
		}
		return applyPatch(t, p, out.Response.Patch).Annotations[inject.RootsAnnotation]
	}
	if got := admitted(); got != string(srv.CABundle()) {
		t.Errorf("without live roots: pod roots %q; want the caBundle's", got)
	}
	live = []*x509.Certificate{rotated.Certificate()}
	if got, want := admitted(), string(ca.EncodeCertificates(rotated.Certificate())); got != want {
		t.Errorf("pod roots %q; want the live roots %q", got, want)
	}
}
