package deploy_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/spf13/pflag"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/deploy"
	"github.com/meridian-mesh/meridian/discovery/kube"
	"github.com/meridian-mesh/meridian/internal/kubetest"
	"github.com/meridian-mesh/meridian/sidecar"
)

var update = flag.Bool("update", false, "rewrite deploy/manifests from the chart")

func TestMain(m *testing.M) { kubetest.Main(m) }

const (
	chart     = "helm/meridian"
	namespace = "meridian-system"
)

// helm returns the path of the pinned helm binary, built once by
// scripts/helm.sh.
var helm = sync.OnceValues(func() (string, error) {
	cmd := exec.Command("bash", "../scripts/helm.sh")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/helm.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
})

// runHelm runs helm with args and returns its output; stderr is part of
// the error (helm warns there about the crds link, which is expected).
func runHelm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	bin, err := helm()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Helm keeps caches and repositories in $HOME; the test needs none.
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// render renders the chart for a profile the way deploy/manifests holds
// it: the namespace included, the CRDs not (they are in deploy/crds).
func render(t *testing.T, profile string, extra ...string) ([]byte, error) {
	t.Helper()
	args := []string{"template", "meridian", chart, "--namespace", namespace,
		"--set", "createNamespace=true", "-f", filepath.Join(chart, "profiles", profile+".yaml")}
	return runHelm(t, append(args, extra...)...)
}

// objects decodes multi-document YAML.
func objects(t *testing.T, b []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		var o map[string]any
		if err := dec.Decode(&o); err != nil {
			if err.Error() == "EOF" {
				return out
			}
			t.Fatalf("decode rendered YAML: %v", err)
		}
		if o != nil {
			out = append(out, &unstructured.Unstructured{Object: o})
		}
	}
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func TestChartLint(t *testing.T) {
	for _, p := range deploy.Profiles {
		out, err := runHelm(t, "lint", "--strict", chart, "-f", filepath.Join(chart, "profiles", p+".yaml"))
		if err != nil {
			t.Errorf("profile %s: %v", p, err)
		}
		if !bytes.Contains(out, []byte("0 chart(s) failed")) {
			t.Errorf("profile %s: helm lint:\n%s", p, out)
		}
	}
}

// TestManifestsUpToDate: deploy/manifests is the chart rendered per
// profile; -update rewrites it.
func TestManifestsUpToDate(t *testing.T) {
	for _, p := range deploy.Profiles {
		got, err := render(t, p)
		if err != nil {
			t.Fatal(err)
		}
		got = append([]byte("# Rendered from deploy/helm/meridian with profiles/"+p+".yaml by `go test ./deploy -update`. Do not edit.\n"), got...)
		path := filepath.Join("manifests", p+".yaml")
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := deploy.Manifest(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what the chart renders; run: go test ./deploy -run TestManifestsUpToDate -update", path)
		}
	}
}

// TestProfiles checks what each profile installs.
func TestProfiles(t *testing.T) {
	want := map[string][]string{
		"minimal": {},
		"default": {"meridian-ingress-gateway"},
		"demo":    {"meridian-ingress-gateway", "meridian-egress-gateway", "meridian-eastwest-gateway"},
	}
	for _, p := range deploy.Profiles {
		b, err := deploy.Manifest(p)
		if err != nil {
			t.Fatal(err)
		}
		objs := objects(t, b)
		var gws []string
		for _, o := range objs {
			if o.GetKind() == "Deployment" {
				gws = append(gws, o.GetName())
			}
		}
		slices.Sort(gws)
		w := slices.Sorted(slices.Values(want[p]))
		if !slices.Equal(gws, w) {
			t.Errorf("profile %s gateways = %v; want %v", p, gws, w)
		}
		for _, need := range [][2]string{{"StatefulSet", "meridiand"}, {"Service", "meridiand"}, {"ConfigMap", "meridiand"},
			{"ClusterRole", "meridiand-" + namespace}, {"MutatingWebhookConfiguration", "meridian-sidecar-injector-" + namespace},
			{"Namespace", namespace}} {
			if find(objs, need[0], need[1]) == nil {
				t.Errorf("profile %s lacks %s %s", p, need[0], need[1])
			}
		}
		if hasDash := find(objs, "Service", "meridian-dashboard") != nil; hasDash != (p == "demo") {
			t.Errorf("profile %s: dashboard Service present = %v", p, hasDash)
		}
	}
}

// TestCRDsAreTheGeneratedOnes: the chart ships deploy/crds as they are,
// and so does deploy.CRDs.
func TestCRDsAreTheGeneratedOnes(t *testing.T) {
	files, err := filepath.Glob("crds/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in deploy/crds: %v", err)
	}
	b, err := render(t, "minimal", "--include-crds")
	if err != nil {
		t.Fatal(err)
	}
	objs := objects(t, b)
	embedded, err := deploy.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(objects(t, embedded)); n != len(files) {
		t.Errorf("deploy.CRDs has %d objects; want %d", n, len(files))
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd unstructured.Unstructured
		if err := yaml.Unmarshal(raw, &crd.Object); err != nil {
			t.Fatal(err)
		}
		got := find(objs, "CustomResourceDefinition", crd.GetName())
		if got == nil {
			t.Errorf("%s: CRD %s not in the chart's output", f, crd.GetName())
		} else if !equalJSON(t, got.Object, crd.Object) {
			t.Errorf("%s: the chart's CRD %s differs from the generated one", f, crd.GetName())
		}
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := yaml.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

// TestChartConfigAcceptedByMeridiand: the configuration file the chart
// writes is one meridiand loads (unknown fields are refused) and
// validates, for every profile and for an external etcd.
func TestChartConfigAcceptedByMeridiand(t *testing.T) {
	cases := map[string][]string{}
	for _, p := range deploy.Profiles {
		cases[p] = nil
	}
	cases["external etcd, labels"] = []string{"--set", "etcd.external.endpoints={https://etcd-0.etcd:2379},etcd.external.tlsSecret=etcd-client,meridiand.replicas=3",
		"--set", "cluster.name=eks-euw1,cluster.region=eu-west-1,cluster.labels.jurisdiction=eu,cluster.network=vpc-1",
		"--set", "dashboard.prometheusURL=http://prometheus.monitoring:9090"}
	cases["federation"] = []string{"--set", "federation.enabled=true,federation.advertiseAddress=203.0.113.7,federation.seeds={198.51.100.4:7946,gossip.example:7946}"}
	for name, extra := range cases {
		t.Run(name, func(t *testing.T) {
			profile := name
			if extra != nil {
				profile = "default"
			}
			b, err := render(t, profile, extra...)
			if err != nil {
				t.Fatal(err)
			}
			objs := objects(t, b)
			cfg := chartConfig(t, objs)
			text, _, _ := unstructured.NestedString(find(objs, "ConfigMap", "meridiand").Object, "data", "config.yaml")
			if cfg.Federation.Enabled != (name == "federation") {
				t.Errorf("federation = %+v; want it on only when asked", cfg.Federation)
			}
			if name == "federation" {
				f := cfg.Federation
				if f.KeyFile != "/etc/meridian/gossip/keys" || f.AdvertiseAddr != "203.0.113.7" || f.AdvertiseGRPCAddr != "203.0.113.7:7947" ||
					!slices.Equal(f.Seeds, []string{"198.51.100.4:7946", "gossip.example:7946"}) || f.Preset != "wan" {
					t.Errorf("federation = %+v; want the values' seeds, advertise address and keyring", f)
				}
				if !mountsSecret(t, find(objs, "StatefulSet", "meridiand"), "meridian-gossip", "/etc/meridian/gossip") {
					t.Error("meridiand does not mount the keyring Secret meridian-gossip at /etc/meridian/gossip")
				}
				if svc := find(objs, "Service", "meridian-gossip"); svc == nil {
					t.Error("no meridian-gossip Service")
				} else if typ, _, _ := unstructured.NestedString(svc.Object, "spec", "type"); typ != "LoadBalancer" {
					t.Errorf("meridian-gossip Service type %q; want LoadBalancer", typ)
				}
				// The Secret's mount, not a file here.
				cfg.Federation.KeyFile = ""
				cfg.Federation.Insecure = true
			}
			if extra != nil && name != "federation" {
				if cfg.Etcd.CAFile != "/etc/meridian/etcd/ca.crt" {
					t.Errorf("etcd TLS files = %+v; want the tlsSecret's mount", cfg.Etcd)
				}
				// They are the Secret's mount, not files here.
				cfg.Etcd.CertFile, cfg.Etcd.KeyFile, cfg.Etcd.CAFile = "", "", ""
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			if !cfg.Kube.Enabled || !cfg.Inject.Enabled || cfg.Inject.WebhookName != "meridian-sidecar-injector-"+namespace {
				t.Errorf("config = %+v; want discovery and injection on", cfg)
			}
			// The webhook's certificate comes from the mesh CA: trust runs,
			// and starts from the root Secret's mount.
			if !cfg.Trust.Enabled || cfg.Trust.KeyFile == "" || cfg.Trust.RootDir != "/etc/meridian/trust-root" {
				t.Errorf("trust = %+v; want it on, with the key and the root mounted", cfg.Trust)
			}
			if extra != nil && name != "federation" && (len(cfg.Etcd.Endpoints) != 1 || cfg.Cluster.Labels["jurisdiction"] != "eu" || cfg.UI.PrometheusURL == "") {
				t.Errorf("config = %+v; want the external etcd with TLS and the labels", cfg)
			}
		})
	}
}

// chartConfig loads the configuration file of the meridiand ConfigMap
// among objs as meridiand does (unknown fields refused).
func chartConfig(t *testing.T, objs []*unstructured.Unstructured) daemon.Config {
	t.Helper()
	cm := find(objs, "ConfigMap", "meridiand")
	if cm == nil {
		t.Fatal("no meridiand ConfigMap")
	}
	text, _, _ := unstructured.NestedString(cm.Object, "data", "config.yaml")
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := daemon.LoadConfigFile(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	return cfg
}

// mountsSecret reports whether a workload's first container mounts the
// Secret named secret at path.
func mountsSecret(t *testing.T, o *unstructured.Unstructured, secret, path string) bool {
	t.Helper()
	vols, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "volumes")
	containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	if len(containers) == 0 {
		return false
	}
	mounts, _, _ := unstructured.NestedSlice(containers[0].(map[string]any), "volumeMounts")
	for _, v := range vols {
		v := v.(map[string]any)
		if name, _, _ := unstructured.NestedString(v, "secret", "secretName"); name != secret {
			continue
		}
		for _, m := range mounts {
			m := m.(map[string]any)
			if m["name"] == v["name"] && m["mountPath"] == path {
				return true
			}
		}
	}
	return false
}

// TestChartProxyArgsAcceptedByMeridianProxy: every meridian-proxy
// container the chart renders (the gateways of the demo profile) has
// arguments meridian-proxy's own flag parsing and node checks accept.
func TestChartProxyArgsAcceptedByMeridianProxy(t *testing.T) {
	b, err := deploy.Manifest("demo")
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]bool{}
	for _, o := range objects(t, b) {
		if o.GetKind() != "Deployment" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for _, c := range containers {
			c := c.(map[string]any)
			if cmd, _ := c["command"].([]any); len(cmd) == 0 || !strings.HasSuffix(fmt.Sprint(cmd[0]), "/meridian-proxy") {
				continue
			}
			var args []string
			for _, a := range c["args"].([]any) {
				args = append(args, fmt.Sprint(a))
			}
			var opts sidecar.Options
			fs := pflag.NewFlagSet("meridian-proxy", pflag.ContinueOnError)
			opts.BindFlags(fs)
			if err := fs.Parse(args); err != nil {
				t.Fatalf("%s: %v: %v", o.GetName(), args, err)
			}
			cfg, closer, err := opts.Config(os.Stderr)
			if err != nil {
				t.Fatalf("%s: %v: %v", o.GetName(), args, err)
			}
			closer.Close()
			if _, err := cfg.Node.Node(); err != nil {
				t.Errorf("%s: %v: %v", o.GetName(), args, err)
			}
			modes[cfg.Node.Mode] = true
		}
	}
	if len(modes) != 3 || !modes["ingress"] || !modes["egress"] || !modes["east-west"] {
		t.Errorf("gateway modes rendered: %v; want ingress, egress and east-west", modes)
	}
}

// TestChartRBACCoversDiscovery: meridiand's ClusterRole grants at least
// what discovery/kube says it needs, and token reviews.
func TestChartRBACCoversDiscovery(t *testing.T) {
	b, err := deploy.Manifest("minimal")
	if err != nil {
		t.Fatal(err)
	}
	u := find(objects(t, b), "ClusterRole", "meridiand-"+namespace)
	var role rbacv1.ClusterRole
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &role); err != nil {
		t.Fatal(err)
	}
	need := append(kube.PolicyRules(), rbacv1.PolicyRule{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}})
	for _, r := range need {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					if !allows(role.Rules, g, res, v) {
						t.Errorf("ClusterRole does not allow %s %s/%s", v, g, res)
					}
				}
			}
		}
	}
	if !allows(role.Rules, "meridian.io", "residencyrules", "watch") {
		t.Error("ClusterRole does not allow watching the policy CRDs")
	}
}

func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	in := func(list []string, v string) bool { return slices.Contains(list, v) || slices.Contains(list, "*") }
	for _, r := range rules {
		if in(r.APIGroups, group) && in(r.Resources, resource) && in(r.Verbs, verb) && len(r.ResourceNames) == 0 {
			return true
		}
	}
	return false
}

// TestChartRefusesBadValues: wrong types and unknown keys are refused by
// the schema with the value's path; impossible combinations by the
// templates, with the reason.
func TestChartRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		set, want string
	}{
		{"meridiand.replicas=two", "at '/meridiand/replicas': got string, want integer"},
		{"injection.failurePolicy=Sometimes", "at '/injection/failurePolicy': value must be one of 'Fail', 'Ignore'"},
		{"gateways.ingress.enabled=yes", "at '/gateways/ingress/enabled': got string, want boolean"},
		{"injection.port=70000", "at '/injection/port': maximum: got 70,000, want 65,535"},
		{"cluster.name=Not_A_Label", "at '/cluster/name'"},
		{"cluster.nmae=x", "at '/cluster': additional properties 'nmae' not allowed"},
		{"meridiand.replicas=2", "meridiand.replicas > 1 needs an external etcd"},
		{"dashboard.prometheusURL=prometheus:9090", "at '/dashboard/prometheusURL'"},
		{"federation.enabled=on", "at '/federation/enabled': got string, want boolean"},
		{"federation.gossipPort=gossip", "at '/federation/gossipPort': got string, want integer"},
		{"federation.seeds={10.0.0.1}", "at '/federation/seeds/0'"},
		{"federation.service.type=ClusterIP", "at '/federation/service/type'"},
		{"federation.advertiseAddress=lb.example", "at '/federation/advertiseAddress'"},
		{"federation.enabled=true,federation.service.type=NodePort", "federation.gossipPort 7946: with federation.service.type NodePort it is the nodePort too"},
		{"federation.enabled=true,federation.grpcPort=7946", "federation.grpcPort: the same port as federation.gossipPort"},
		{"federation.enabled=true,federation.advertiseAddress=203.0.113.7,meridiand.replicas=2,etcd.external.endpoints={http://etcd:2379}", "federation.advertiseAddress names one address"},
	} {
		_, err := render(t, "default", "--set", tc.set)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--set %s: %v; want an error with %q", tc.set, err, tc.want)
		}
	}
}
