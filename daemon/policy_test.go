package daemon_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
)

// The lab's policies for shop: failover for web and catalog, customer
// records kept in the EU.
const labPolicies = `# failover and residency for the shop
apiVersion: meridian.io/v1alpha1
kind: FailoverPolicy
metadata:
  name: shop
  namespace: shop
spec:
  selector:
    services: [web, catalog]
  failover:
  - from: us-east-1
    to: [onprem-east, eu-west-1]
---
apiVersion: meridian.io/v1alpha1
kind: ResidencyRule
metadata:
  name: customer-records-eu
  namespace: shop
spec:
  selector:
    services: [customer-records]
  clusterSelector:
    matchLabels:
      jurisdiction: eu
  mode: enforce
`

func writePolicies(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// register adds a workload through meridiand's Workload API.
func register(t *testing.T, server, service, address, locality string) {
	t.Helper()
	code, out, errOut := ctl("workload", "register", "--server", server, "--service", service, "--namespace", "shop",
		"--address", address, "--locality", locality, "--port-name", "grpc", "--protocol", "grpc", "--ttl", "1h")
	if code != 0 {
		t.Fatalf("register %s at %s: %s%s", service, address, out, errOut)
	}
}

// checkCtlFailure asserts a non-zero exit with one error line containing
// want and a hint line.
func checkCtlFailure(t *testing.T, code int, stderr string, want ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if code == 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "Error: ") || !strings.HasPrefix(lines[1], "Hint: ") {
		t.Fatalf("exit %d, stderr %q; want one error line and a hint", code, stderr)
	}
	for _, w := range want {
		if !strings.Contains(lines[0], w) {
			t.Errorf("error line %q lacks %q", lines[0], w)
		}
	}
}

// meridianctl get, apply, delete, explain and drill --dry-run against a
// real meridiand (no federation: the policy store lives in its etcd), with
// every kind of bad input; the policies survive a restart.
func TestPolicyCommands(t *testing.T) {
	dataDir := t.TempDir()
	edit := func(c *daemon.Config) {
		c.Cluster = registry.Cluster{Name: "eks-use1", Region: "us-east-1", Labels: map[string]string{"jurisdiction": "us"}}
	}
	m := startDaemon(t, dataDir, edit)
	srv := m.d.GRPCAddr()
	for i, w := range []struct{ service, locality string }{
		{"web", "us-east-1/use1-az1"}, {"web", "us-east-1/use1-az2"}, {"web", "onprem-east/dc1-a"}, {"web", "eu-west-1/euw1-az1"},
		{"catalog", "us-east-1/use1-az1"}, {"customer-records", "eu-west-1/euw1-az1"},
	} {
		register(t, srv, w.service, fmt.Sprintf("10.0.0.%d:8080", i+1), w.locality)
	}
	// customer-records runs only in this (US) cluster: a rule keeping it
	// in jurisdiction=eu clusters strands it. Refused, with the reason.
	file := writePolicies(t, "shop.yaml", labPolicies)
	code, _, errOut := ctl("apply", "-f", file, "--server", srv)
	checkCtlFailure(t, code, errOut, "ResidencyRule shop/customer-records-eu: spec:", "leaves customer-records.shop with no allowed endpoint")
	if !strings.Contains(errOut, "--force") {
		t.Errorf("the hint does not offer --force: %s", errOut)
	}
	code, out, errOut := ctl("apply", "-f", file, "--server", srv, "--force")
	if code != 0 || out != "failoverpolicy.meridian.io/shop created\nresidencyrule.meridian.io/customer-records-eu created\n" ||
		!strings.Contains(errOut, "Warning: ResidencyRule shop/customer-records-eu: spec: ") {
		t.Fatalf("apply --force: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = ctl("apply", "-f", file, "--server", srv, "--force")
	if code != 0 || !strings.Contains(out, "failoverpolicy.meridian.io/shop unchanged") {
		t.Fatalf("apply again: %d %s", code, out)
	}

	code, out, errOut = ctl("get", "fop", "-n", "shop", "--server", srv)
	if code != 0 || !strings.Contains(out, "FailoverPolicy") || !strings.Contains(out, "shop") || !strings.Contains(out, "api") {
		t.Fatalf("get fop: %d\n%s%s", code, out, errOut)
	}
	// get -o yaml prints what apply takes back.
	code, yamlOut, _ := ctl("get", "all", "-A", "-o", "yaml", "--server", srv)
	if code != 0 || !strings.Contains(yamlOut, "kind: ResidencyRule") || !strings.Contains(yamlOut, "---") {
		t.Fatalf("get all -o yaml: %d\n%s", code, yamlOut)
	}
	code, out, _ = ctl("apply", "-f", writePolicies(t, "back.yaml", yamlOut), "--server", srv, "--force")
	if code != 0 || strings.Count(out, "unchanged") != 2 {
		t.Fatalf("applying get's output again: %d\n%s", code, out)
	}

	code, out, errOut = ctl("explain", "web.shop", "--from", "us-east-1/use1-az1", "--server", srv)
	if code != 0 || !strings.Contains(out, "Failover policy: FailoverPolicy shop/shop") ||
		!strings.Contains(out, "failover to onprem-east (choice 1 for clients in us-east-1) [FailoverPolicy shop/shop spec.failover[0].to[0]]") ||
		!strings.Contains(out, "100.0%") {
		t.Fatalf("explain: %d\n%s%s", code, out, errOut)
	}
	t.Logf("explain web.shop --from us-east-1/use1-az1:\n%s", out)
	code, out, _ = ctl("explain", "customer-records", "-n", "shop", "--from", "eks-use1", "-o", "json", "--server", srv)
	var ex map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &ex) != nil || ex["blocked"] == nil || ex["levels"] != nil && len(ex["levels"].([]any)) != 0 {
		t.Fatalf("explain -o json of a stranded service: %d\n%s", code, out)
	}
	code, out, errOut = ctl("drill", "region", "us-east-1", "--server", srv)
	if code != 0 || !strings.Contains(out, "dry run, nothing changes") || !strings.Contains(out, "onprem-east/dc1-a 100%") {
		t.Fatalf("drill --dry-run: %d\n%s%s", code, out, errOut)
	}
	t.Logf("drill region us-east-1:\n%s", out)

	// Bad input: one line and a hint, exit 1, nothing changed.
	bad := func(name, body string) string { return writePolicies(t, name, body) }
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"apply", "-f", filepath.Join(t.TempDir(), "missing.yaml")}, []string{"missing.yaml: no such file or directory"}},
		{[]string{"apply"}, []string{`required flag(s) "filename" not set`}},
		{[]string{"apply", "-f", bad("broken.yaml", "apiVersion: meridian.io/v1alpha1\nkind: [x\n")}, []string{"broken.yaml:", "not valid YAML"}},
		{[]string{"apply", "-f", bad("v2.yaml", strings.Replace(labPolicies, "meridian.io/v1alpha1", "meridian.io/v2", 1))},
			[]string{"v2.yaml:2 (document 1): apiVersion: Unsupported value: \"meridian.io/v2\""}},
		{[]string{"apply", "-f", bad("kind.yaml", strings.Replace(labPolicies, "kind: ResidencyRule", "kind: Residency", 1))},
			[]string{"kind.yaml:15 (document 2): kind: Unsupported value: \"Residency\""}},
		{[]string{"apply", "-f", bad("noname.yaml", strings.Replace(labPolicies, "  name: shop\n", "", 1))},
			[]string{"noname.yaml:", "metadata.name: Required value"}},
		{[]string{"apply", "-f", bad("weights.yaml", labPolicies+"---\napiVersion: meridian.io/v1alpha1\nkind: FailoverPolicy\nmetadata: {name: w, namespace: shop}\nspec:\n  distribute:\n  - from: us-east-1/*\n    to:\n    - {locality: us-east-1/use1-az1, weight: 50}\n")},
			[]string{"weights.yaml:33 (document 3): FailoverPolicy shop/w: spec.distribute[0].to: Invalid value: 50: weights must sum to 100"}},
		{[]string{"get", "pods"}, []string{`unknown kind "pods"`}},
		{[]string{"get", "fop", "nosuch", "-n", "shop"}, []string{"FailoverPolicy shop/nosuch not found"}},
		{[]string{"delete", "rr", "nosuch", "-n", "shop"}, []string{"ResidencyRule shop/nosuch not found"}},
		{[]string{"delete", "rr"}, []string{"give KIND and at least one NAME"}},
		{[]string{"explain", "web.shop"}, []string{`required flag(s) "from" not set`}},
		{[]string{"explain", "web.shop", "--from", "mars"}, []string{`cluster or region "mars"`}},
		{[]string{"explain", "nosuch.shop", "--from", "eks-use1"}, []string{"service nosuch.shop not found"}},
		{[]string{"drill", "region", "mars-1"}, []string{`region "mars-1" (known: eu-west-1, onprem-east, us-east-1)`}},
		{[]string{"drill", "zone", "us-east-1"}, []string{"a zone is written region/zone"}},
		{[]string{"drill", "cluster", "nosuch", "--live", "--duration", "5s"}, []string{`cluster "nosuch" (known: eks-use1)`}},
		{[]string{"drill", "region", "us-east-1", "--live", "--duration", "0s"}, []string{"duration: 0s: must be between 1s and 1h0m0s"}},
		{[]string{"drill", "region", "us-east-1", "--live", "--dry-run"}, []string{"if any flags in the group [dry-run live] are set none of the others can be"}},
		{[]string{"drill", "region", "us-east-1", "--duration", "5s"}, []string{"--duration applies to --live drills"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, errOut := ctl(append(tc.args, "--server", srv)...)
			checkCtlFailure(t, code, errOut, tc.want...)
		})
	}
	// Nothing listens there.
	dead := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	for _, args := range [][]string{
		{"get", "fop"}, {"apply", "-f", file}, {"delete", "fop", "shop"}, {"explain", "web.shop", "--from", "eks-use1"},
		{"drill", "region", "us-east-1"}, {"drill", "region", "us-east-1", "--live"}, {"drill", "list"},
	} {
		code, _, errOut := ctl(append(args, "--server", dead)...)
		checkCtlFailure(t, code, errOut, "meridiand at "+dead+" is unavailable")
	}
	code, out, _ = ctl("get", "all", "-A", "--server", srv)
	if code != 0 || strings.Count(out, "\n") != 3 {
		t.Fatalf("after the bad input: %d\n%s", code, out)
	}

	// A restart loses no policy.
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}
	m = startDaemon(t, dataDir, edit)
	srv = m.d.GRPCAddr()
	testutil.Eventually(t, 10*time.Second, func() error {
		code, out, errOut := ctl("get", "all", "-A", "--server", srv)
		if code != 0 || strings.Count(out, "\n") != 3 {
			return fmt.Errorf("after a restart: %d\n%s%s", code, out, errOut)
		}
		return nil
	})
	code, out, errOut = ctl("delete", "-f", file, "--server", srv)
	if code != 0 || out != "failoverpolicy.meridian.io/shop deleted\nresidencyrule.meridian.io/customer-records-eu deleted\n" {
		t.Fatalf("delete -f: %d\n%s%s", code, out, errOut)
	}
}
