package cli_test

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/internal/kubetest"
)

func TestInstallDryRun(t *testing.T) {
	code, out, stderr := run(context.Background(), "install", "--profile", "demo", "--dry-run",
		"--cluster", "eks-euw1", "--region", "eu-west-1", "--labels", "jurisdiction=eu")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"kind: CustomResourceDefinition", "name: residencyrules.meridian.io",
		"kind: MutatingWebhookConfiguration", "name: meridian-eastwest-gateway", "name: meridian-dashboard",
		"--cluster=eks-euw1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// meridiand's configuration carries the cluster and is one it loads.
	_, rest, ok := strings.Cut(out, "config.yaml: |\n")
	if !ok {
		t.Fatal("no config.yaml in the output")
	}
	var lines []string
	for _, l := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(l, "    ") {
			break
		}
		lines = append(lines, strings.TrimPrefix(l, "    "))
	}
	cfg := daemon.DefaultConfig()
	if err := yaml.UnmarshalStrict([]byte(strings.Join(lines, "\n")), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.Name != "eks-euw1" || cfg.Cluster.Region != "eu-west-1" || cfg.Cluster.Labels["jurisdiction"] != "eu" {
		t.Errorf("cluster = %+v", cfg.Cluster)
	}
}

func TestInstallBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"install", "--profile", "everything", "--region", "r", "--dry-run"}, `--profile "everything": unknown profile`},
		{[]string{"install", "--dry-run"}, `required flag(s) "region" not set`},
		{[]string{"install", "--region", "r", "--cluster", "Not_A_Name", "--dry-run"}, `--cluster: Invalid value: "Not_A_Name"`},
		{[]string{"install", "--region", "r", "--cluster", "a", "--context", "x", "--context", "y"}, "--cluster names one cluster"},
		{[]string{"install", "--region", "r", "--kubeconfig", "/nonexistent/kubeconfig", "--context", "x"}, `context "x"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := run(context.Background(), tc.args...)
			checkFailure(t, code, stderr, tc.want)
		})
	}
}

// TestInstallApply installs the minimal profile in a real kube-apiserver
// with server-side apply, twice (the second run updates in place).
func TestInstallApply(t *testing.T) {
	api := kubetest.Start(t)
	ctx := t.Context()
	for range 2 {
		code, out, stderr := run(ctx, "install", "--profile", "minimal", "--kubeconfig", api.Kubeconfig(), "--context", "kubetest", "--region", "onprem-east")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if !strings.Contains(out, "context kubetest: applied") || !strings.Contains(out, "cluster kubetest in onprem-east") {
			t.Errorf("output = %q", out)
		}
	}
	cs := api.Clientset()
	cm, err := cs.CoreV1().ConfigMaps("meridian-system").Get(ctx, "meridiand", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cm.Data["config.yaml"], "name: kubetest") {
		t.Errorf("config.yaml = %s; want the context's name as the cluster", cm.Data["config.yaml"])
	}
	if _, err := cs.AppsV1().StatefulSets("meridian-system").Get(ctx, "meridiand", metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	sec, err := cs.CoreV1().Secrets("meridian-system").Get(ctx, "meridian-trust-key", metav1.GetOptions{})
	if err != nil || len(sec.Data["key"]) == 0 {
		t.Errorf("trust key Secret: %v", err)
	}
	// A new root for the mesh's trust domain, in the files meridiand's
	// trust bootstrap reads.
	root, err := cs.CoreV1().Secrets("meridian-system").Get(ctx, "meridian-trust-root", metav1.GetOptions{})
	if err != nil || !strings.HasPrefix(string(root.Data["root-cert.pem"]), "-----BEGIN CERTIFICATE-----") ||
		len(root.Data["root-key.pem"]) == 0 || strings.TrimSpace(string(root.Data["trust-domain"])) != "cluster.local" {
		t.Errorf("trust root Secret: %v %v", err, root)
	}
}
