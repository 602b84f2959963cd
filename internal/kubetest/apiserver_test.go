package kubetest_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meridian-mesh/meridian/internal/kubetest"
	"github.com/meridian-mesh/meridian/internal/testutil"
)

// TestServer checks the harness end to end on one server: the kubeconfig
// works as kubectl would read it, RBAC applies to minted users, and a
// restart keeps data, port and credentials.
func TestServer(t *testing.T) {
	start := time.Now()
	s := kubetest.Start(t)
	t.Logf("kube-apiserver ready in %v at %s", time.Since(start).Round(time.Millisecond), s.URL())
	ctx := t.Context()

	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig())
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	fromFile := kubernetes.NewForConfigOrDie(cfg)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubetest"}}
	if _, err := fromFile.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace through the kubeconfig: %v", err)
	}

	nobody, err := s.RESTConfigAs("nobody")
	if err != nil {
		t.Fatal(err)
	}
	_, err = kubernetes.NewForConfigOrDie(nobody).CoreV1().Namespaces().Get(ctx, "kubetest", metav1.GetOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("a user without RBAC bindings read a namespace: err = %v, want Forbidden", err)
	}

	w, err := fromFile.CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	url := s.URL()
	begin := time.Now()
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart with an open watch took %v", time.Since(begin).Round(time.Millisecond))
	// The server ended the watch when it shut down.
	closed := make(chan struct{})
	go func() {
		for range w.ResultChan() {
		}
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("a watch opened before the restart is still open")
	}
	if s.URL() != url {
		t.Fatalf("restart moved the server from %s to %s", url, s.URL())
	}
	// The old client reconnects: same port, same CA, same client certificate.
	testutil.Eventually(t, 30*time.Second, func() error {
		_, err := fromFile.CoreV1().Namespaces().Get(ctx, "kubetest", metav1.GetOptions{})
		return err
	})
	if s.LogTail(5) == "" {
		t.Fatal("kube-apiserver log is empty")
	}
}
