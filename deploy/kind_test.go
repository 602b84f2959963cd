package deploy_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"

	"github.com/meridian-mesh/meridian/internal/meshtest"
)

// TestKindConfigs: the lab's kind configurations parse strictly as kind's
// own v1alpha4 Cluster type, give every cluster pod and service CIDRs that
// overlap no other's, and label every node with the region and a zone of
// the lab (internal/meshtest), and the jurisdiction of its cluster.
func TestKindConfigs(t *testing.T) {
	var prefixes []netip.Prefix
	for _, want := range meshtest.Clusters() {
		path := filepath.Join("kind", want.Name+".yaml")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var c v1alpha4.Cluster
		if err := yaml.UnmarshalStrict(raw, &c); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if c.Kind != "Cluster" || c.APIVersion != "kind.x-k8s.io/v1alpha4" || c.Name != want.Name {
			t.Errorf("%s: %s %s named %q", path, c.APIVersion, c.Kind, c.Name)
		}
		for _, s := range []string{c.Networking.PodSubnet, c.Networking.ServiceSubnet} {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				t.Fatalf("%s: subnet %q: %v", path, s, err)
			}
			for _, q := range prefixes {
				if p.Overlaps(q) {
					t.Errorf("%s: %s overlaps %s of another cluster or its own", path, p, q)
				}
			}
			prefixes = append(prefixes, p)
		}
		zones := map[string]bool{}
		for i, n := range c.Nodes {
			if n.Labels["topology.kubernetes.io/region"] != want.Region {
				t.Errorf("%s: node %d region %q; want %q", path, i, n.Labels["topology.kubernetes.io/region"], want.Region)
			}
			z := n.Labels["topology.kubernetes.io/zone"]
			if !slices.Contains(meshtest.Zones[want.Name], z) {
				t.Errorf("%s: node %d zone %q; want one of %v", path, i, z, meshtest.Zones[want.Name])
			}
			zones[z] = true
			if n.Labels["meridian.io/jurisdiction"] != want.Labels["jurisdiction"] {
				t.Errorf("%s: node %d jurisdiction %q; want %q", path, i, n.Labels["meridian.io/jurisdiction"], want.Labels["jurisdiction"])
			}
		}
		if len(zones) != len(meshtest.Zones[want.Name]) {
			t.Errorf("%s: nodes in zones %v; want every zone of %v", path, zones, meshtest.Zones[want.Name])
		}
	}
}

// TestKindScript: lab.sh parses, and passes shellcheck (installed from
// Debian by scripts/apt.sh when missing; flock, because dpkg takes one
// installer at a time and test packages run in parallel). Running it needs Docker.
func TestKindScript(t *testing.T) {
	if out, err := exec.Command("bash", "-n", "kind/lab.sh").CombinedOutput(); err != nil {
		t.Fatalf("bash -n kind/lab.sh: %v\n%s", err, out)
	}
	if out, err := exec.Command("flock", filepath.Join(os.TempDir(), "meridian-apt.lock"), "bash", "../scripts/apt.sh", "shellcheck").CombinedOutput(); err != nil {
		t.Fatalf("scripts/apt.sh shellcheck: %v\n%s", err, out)
	}
	if out, err := exec.Command("shellcheck", "kind/lab.sh", "../scripts/helm.sh").CombinedOutput(); err != nil {
		t.Fatalf("shellcheck: %v\n%s", err, out)
	}
	// Without a command it prints its usage and fails, touching nothing.
	out, err := exec.Command("bash", "kind/lab.sh").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || string(out) == "" {
		t.Fatalf("lab.sh without a command: %v %q; want usage and exit 2", err, out)
	}
}

// TestKindValues: the values lab.sh installs each cluster with render,
// on top of the demo profile, a configuration meridiand loads — the first
// cluster federating with no seed (it starts the mesh), a joining one with
// the first's NodePort as seed, one not joined yet without federation —
// and the gossip Service on the NodePorts the members advertise.
func TestKindValues(t *testing.T) {
	for _, tc := range []struct {
		cluster, ip, seed string
		federate          bool
	}{
		{"onprem-dc1", "172.18.0.2", "", true},
		{"eks-euw1", "172.18.0.4", "172.18.0.2:30946", true},
		{"eks-use1", "172.18.0.3", "", false},
	} {
		t.Run(tc.cluster, func(t *testing.T) {
			out, err := exec.Command("bash", "kind/lab.sh", "values", tc.cluster, tc.ip, tc.seed).Output()
			if err != nil {
				t.Fatalf("lab.sh values: %v", err)
			}
			vals := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(vals, out, 0o600); err != nil {
				t.Fatal(err)
			}
			b, err := render(t, "demo", "-f", vals)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			objs := objects(t, b)
			cfg := chartConfig(t, objs)
			if cfg.Cluster.Name != tc.cluster || len(cfg.Cluster.Gateways) != 1 || cfg.Cluster.Gateways[0] != tc.ip+":31443" {
				t.Errorf("cluster = %+v; want %s with its east-west NodePort", cfg.Cluster, tc.cluster)
			}
			f := cfg.Federation
			v := cfg
			if v.Federation.KeyFile != "" { // the Secret's mount, not a file here
				v.Federation.KeyFile, v.Federation.Insecure = "", true
			}
			if err := v.Validate(); err != nil {
				t.Errorf("meridiand refuses the lab's configuration: %v", err)
			}
			gossip := find(objs, "Service", "meridian-gossip")
			if !tc.federate {
				if f.Enabled || gossip != nil {
					t.Errorf("federation = %+v, gossip Service %v; want none before the join", f, gossip != nil)
				}
				return
			}
			if !f.Enabled || f.AdvertiseAddr != tc.ip || f.GossipAddr != ":30946" || f.AdvertiseGRPCAddr != tc.ip+":30947" || f.KeyFile != "/etc/meridian/gossip/keys" {
				t.Errorf("federation = %+v; want gossip advertised on %s:30946, replication on :30947, the keyring mounted", f, tc.ip)
			}
			if want := []string{tc.seed}; tc.seed == "" && len(f.Seeds) != 0 || tc.seed != "" && !slices.Equal(f.Seeds, want) {
				t.Errorf("seeds = %v; want %q", f.Seeds, tc.seed)
			}
			if gossip == nil {
				t.Fatal("no meridian-gossip Service")
			}
			ports, _, _ := unstructured.NestedSlice(gossip.Object, "spec", "ports")
			var got []string
			for _, p := range ports {
				p := p.(map[string]any)
				got = append(got, fmt.Sprintf("%v/%v", p["protocol"], p["nodePort"]))
			}
			if want := []string{"TCP/30946", "UDP/30946", "TCP/30947"}; !slices.Equal(got, want) {
				t.Errorf("gossip Service ports %v; want %v", got, want)
			}
		})
	}
}

// TestDockerfileTargets: the image targets lab.sh (and make image) build
// exist in the Dockerfile, and the final image is built from scratch.
func TestDockerfileTargets(t *testing.T) {
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("kind/lab.sh")
	if err != nil {
		t.Fatal(err)
	}
	stages := map[string]string{} // name → base
	for _, m := range regexp.MustCompile(`(?m)^FROM (\S+) AS (\S+)$`).FindAllStringSubmatch(string(df), -1) {
		stages[m[2]] = m[1]
	}
	used := regexp.MustCompile(`--target (\w+)`).FindAllStringSubmatch(string(script), -1)
	if len(used) == 0 {
		t.Fatal("lab.sh builds no target")
	}
	for _, m := range used {
		if _, ok := stages[m[1]]; !ok {
			t.Errorf("lab.sh builds target %q; the Dockerfile has %v", m[1], stages)
		}
	}
	if stages["meridian"] != "scratch" {
		t.Errorf("the meridian image is built FROM %q; want scratch (static binaries only)", stages["meridian"])
	}
}
