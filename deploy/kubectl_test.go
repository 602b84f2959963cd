package deploy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meridian-mesh/meridian/internal/kubetest"
)

// kubectl returns Debian's kubectl, installed by scripts/apt.sh when
// missing (under a lock: dpkg takes one installer at a time, and test
// packages run in parallel).
func kubectl(t *testing.T) string {
	t.Helper()
	if out, err := exec.Command("flock", filepath.Join(os.TempDir(), "meridian-apt.lock"), "bash", "../scripts/apt.sh", "kubectl").CombinedOutput(); err != nil {
		t.Fatalf("scripts/apt.sh kubectl: %v\n%s", err, out)
	}
	path, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// TestManifestsDryRunServer applies every manifest under deploy/ — the
// CRDs, the plain manifests of every profile, and the chart rendered with
// the values the profiles do not cover — with `kubectl apply
// --dry-run=server` to a real kube-apiserver, which runs its full
// validation and defaulting on each object without storing it.
func TestManifestsDryRunServer(t *testing.T) {
	api := kubetest.Shared(t)
	bin := kubectl(t)
	// Namespaced objects are checked against an existing namespace.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := api.Clientset().CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	files, err := filepath.Glob("crds/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	more, err := filepath.Glob("manifests/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, more...)
	// Branches no profile takes: external etcd with TLS, no persistence,
	// egress alone, injection off, a CA Secret instead of a root,
	// federation behind a load balancer or on NodePorts.
	for name, set := range map[string]string{
		"external-etcd":       "etcd.external.endpoints={https://etcd-0.etcd:2379},etcd.external.tlsSecret=etcd-client,meridiand.replicas=3",
		"ephemeral":           "etcd.persistence.enabled=false,gateways.ingress.enabled=false,gateways.egress.enabled=true,injection.enabled=false,trust.caSecret=meridian-trust-ca",
		"storage-class":       "etcd.persistence.storageClass=fast,injection.failurePolicy=Ignore,cluster.gateways={gw.example:15443},cluster.labels.jurisdiction=eu",
		"federation-lb":       "federation.enabled=true,federation.advertiseAddress=203.0.113.7,federation.seeds={198.51.100.4:7946},federation.service.annotations.lb=internal",
		"federation-nodeport": "federation.enabled=true,federation.insecure=true,federation.service.type=NodePort,federation.gossipPort=30946,federation.grpcPort=30947",
	} {
		b, err := render(t, "default", "--set", set)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name+".yaml")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, path)
	}

	for _, f := range files {
		cmd := exec.Command(bin, "--kubeconfig", api.Kubeconfig(), "apply", "--dry-run=server", "-f", f)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("kubectl apply --dry-run=server -f %s: %v\n%s", f, err, out)
			continue
		}
		n := strings.Count(string(out), "(server dry run)")
		if n == 0 {
			t.Errorf("%s: kubectl applied nothing:\n%s", f, out)
		}
		t.Logf("%s: %d objects accepted", f, n)
	}
}
