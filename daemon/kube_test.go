package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/internal/kubetest"
	"github.com/meridian-mesh/meridian/internal/testutil"
)

// TestMeridiandWithKubernetes runs both discovery sources into one segment:
// Kubernetes defines the service, a VM registered through meridianctl adds
// an endpoint to it. With trust on, a pod's proxy attests with its
// service-account token on the TLS xDS port (tokenOverTLS).
func TestMeridiandWithKubernetes(t *testing.T) {
	mesh := newTrustMesh(t)
	api := kubetest.Start(t)
	ctx := context.Background()
	kc := api.Clientset()
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	if _, err := kc.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	m := startDaemon(t, t.TempDir(), func(c *daemon.Config) {
		c.Kube.Enabled, c.Kube.Kubeconfig = true, api.Kubeconfig()
		c.Trust = daemon.Trust{Enabled: true, TrustDomain: mesh.trustDomain, RootDir: mesh.caDir, CAAddr: "127.0.0.1:0"}
	})
	admin := "http://" + m.d.AdminAddr()
	testutil.Eventually(t, 30*time.Second, func() error {
		if code, body := get(t, admin+"/readyz?verbose"); code != 200 || !strings.Contains(body, "[+]kube-synced ok") {
			return fmt.Errorf("/readyz: %d %q", code, body)
		}
		return nil
	})
	dump := func() daemon.RegistryDump {
		var d daemon.RegistryDump
		if _, body := get(t, admin+"/debug/registry?service=web.shop"); json.Unmarshal([]byte(body), &d) != nil {
			t.Fatalf("/debug/registry: %s", body)
		}
		return d
	}
	if d := dump(); len(d.Services) != 1 || len(d.Services[0].Ports) != 1 || d.Services[0].Ports[0].Port != 80 {
		t.Fatalf("the Kubernetes Service is not in the registry: %+v", d.Services)
	}

	code, out, errOut := ctl("workload", "register", "--server", m.d.GRPCAddr(), "--service", "web", "--namespace", "shop",
		"--address", "10.0.0.5:8080", "--locality", "onprem-east", "--port-name", "http")
	if code != 0 {
		t.Fatalf("register: %s", errOut)
	}
	d := dump()
	if len(d.Services[0].Endpoints) != 1 || d.Services[0].Endpoints[0].ID != strings.TrimSpace(out) || d.Services[0].Ports[0].Port != 80 {
		t.Fatalf("after registering a VM: %+v", d.Services[0])
	}
	tokenOverTLS(t, kc, m.d)
	if err := m.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		// The API server's etcd runs on; the daemon's parts must not.
		if g := ours("meridian-mesh/meridian/daemon", "meridian-mesh/meridian/discovery", "k8s.io/client-go/tools/cache"); len(g) > 0 {
			return fmt.Errorf("%d goroutines left, the first:\n%s", len(g), g[0])
		}
		return nil
	})
}
