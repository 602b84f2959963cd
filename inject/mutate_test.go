package inject_test

import (
	"cmp"
	"encoding/json"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/inject"
	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/trust/attest"
	"github.com/meridian-mesh/meridian/trust/ca"
)

func testSettings() inject.Settings {
	s := inject.DefaultSettings()
	s.Enabled = true
	s.Hosts = []string{"127.0.0.1"}
	s.ProxyImage = "meridian-mesh/meridian:test"
	s.InitImage = "meridian-mesh/meridian-init:test"
	s.XDSAddress = "meridiand.meridian-system.svc:15011"
	s.ExcludeInboundPorts = []int{9090}
	s.ExcludeOutboundCIDRs = []string{"169.254.169.254/32"}
	return s
}

// testMesh is cluster kind-1 of trust domain mesh.test, with a root from
// package trust/ca.
func testMesh(t testing.TB) inject.Mesh {
	_, root, _, _ := newIntermediate(t)
	return inject.Mesh{Cluster: "kind-1", ServerID: spiffeid.RequireFromString("spiffe://mesh.test/meridian/cluster/kind-1"),
		Roots: ca.EncodeCertificates(root.Certificate())}
}

func pod(mut func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
	}
	if mut != nil {
		mut(p)
	}
	return p
}

// applyPatch applies a decision's patch as the API server would.
func applyPatch(t *testing.T, p *corev1.Pod, patch []byte) *corev1.Pod {
	t.Helper()
	orig, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decode patch %s: %v", patch, err)
	}
	out, err := dp.Apply(orig)
	if err != nil {
		t.Fatalf("apply patch %s: %v", patch, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

func TestMutateInjects(t *testing.T) {
	s := testSettings()
	mesh := testMesh(t)
	for name, mut := range map[string]func(*corev1.Pod){
		"plain":                nil,
		"annotations present":  func(p *corev1.Pod) { p.Annotations = map[string]string{"team": "shop"} },
		"explicitly asked for": func(p *corev1.Pod) { p.Annotations = map[string]string{inject.InjectAnnotation: "true"} },
		"own init containers": func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "migrate"}}
		},
		"own service account": func(p *corev1.Pod) { p.Spec.ServiceAccountName = "web" },
		"own volumes": func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := pod(mut)
			dec, err := inject.Mutate(p, &s, mesh)
			if err != nil || dec.Patch == nil {
				t.Fatalf("Mutate = %+v, %v; want a patch", dec, err)
			}
			got := applyPatch(t, p, dec.Patch)
			if n := len(got.Spec.Containers); n != 2 || got.Spec.Containers[0].Name != "web" || got.Spec.Containers[1].Name != inject.ProxyContainer {
				t.Errorf("containers = %v; want web, then %s", names(got.Spec.Containers), inject.ProxyContainer)
			}
			inits := got.Spec.InitContainers
			if len(inits) != len(p.Spec.InitContainers)+1 || inits[len(inits)-1].Name != inject.InitContainer {
				t.Errorf("init containers = %v; want the pod's own, then %s last", names(inits), inject.InitContainer)
			}
			if got.Annotations[inject.StatusAnnotation] != "injected" {
				t.Errorf("annotations = %v; want %s=injected", got.Annotations, inject.StatusAnnotation)
			}
			for k, v := range p.Annotations {
				if got.Annotations[k] != v {
					t.Errorf("annotation %s lost", k)
				}
			}
			proxy := got.Spec.Containers[1]
			if !strings.Contains(strings.Join(proxy.Args, " "), "--cluster=kind-1") || *proxy.SecurityContext.RunAsUser != inject.ProxyUID {
				t.Errorf("proxy container = %+v", proxy)
			}
			if len(got.Spec.Volumes) != len(p.Spec.Volumes)+1 || got.Spec.Volumes[len(got.Spec.Volumes)-1].Name != inject.XDSVolume {
				t.Errorf("volumes = %+v; want the pod's own, then %s", got.Spec.Volumes, inject.XDSVolume)
			}
			checkXDSTrust(t, got, mesh)
			if want := cmp.Or(p.Spec.ServiceAccountName, "default"); got.Spec.ServiceAccountName != want {
				t.Errorf("service account %q; want %q (the token projection needs one)", got.Spec.ServiceAccountName, want)
			}
			// Mutating the injected pod again changes nothing.
			if again, err := inject.Mutate(got, &s, mesh); err != nil || again.Patch != nil {
				t.Errorf("second Mutate = %+v, %v; want skipped", again, err)
			}
		})
	}
}

// checkXDSTrust: an injected pod's sidecar gets xDS over TLS — meridiand
// verified as mesh.ServerID against the roots, which the pod carries in its
// annotation and the meridian-xds volume projects beside a token for
// Meridian's audience — and meridian-proxy's own flag parsing accepts its
// arguments once the volume's files are where they say (here, a directory
// standing in for the kubelet's projection).
func checkXDSTrust(t *testing.T, got *corev1.Pod, mesh inject.Mesh) {
	t.Helper()
	if got.Annotations[inject.RootsAnnotation] != string(mesh.Roots) {
		t.Errorf("annotation %s = %q; want the mesh roots", inject.RootsAnnotation, got.Annotations[inject.RootsAnnotation])
	}
	var proxy *corev1.Container
	for i := range got.Spec.Containers {
		if got.Spec.Containers[i].Name == inject.ProxyContainer {
			proxy = &got.Spec.Containers[i]
		}
	}
	if proxy == nil {
		t.Fatal("no proxy container")
	}
	if len(proxy.VolumeMounts) != 1 || proxy.VolumeMounts[0].Name != inject.XDSVolume || proxy.VolumeMounts[0].MountPath != inject.XDSDir || !proxy.VolumeMounts[0].ReadOnly {
		t.Errorf("proxy mounts %+v; want %s read-only at %s", proxy.VolumeMounts, inject.XDSVolume, inject.XDSDir)
	}
	var vol *corev1.Volume
	for i := range got.Spec.Volumes {
		if got.Spec.Volumes[i].Name == inject.XDSVolume {
			vol = &got.Spec.Volumes[i]
		}
	}
	if vol == nil || vol.Projected == nil || len(vol.Projected.Sources) != 2 {
		t.Fatalf("volume %s = %+v; want a projection of a token and the roots", inject.XDSVolume, vol)
	}
	files := map[string]string{} // projected file → what it holds
	for _, src := range vol.Projected.Sources {
		switch {
		case src.ServiceAccountToken != nil:
			files[src.ServiceAccountToken.Path] = "token for " + src.ServiceAccountToken.Audience
		case src.DownwardAPI != nil && len(src.DownwardAPI.Items) == 1 && src.DownwardAPI.Items[0].FieldRef != nil:
			files[src.DownwardAPI.Items[0].Path] = src.DownwardAPI.Items[0].FieldRef.FieldPath
		}
	}
	want := map[string]string{"token": "token for " + attest.DefaultAudience, "roots.pem": "metadata.annotations['" + inject.RootsAnnotation + "']"}
	if !maps.Equal(files, want) {
		t.Errorf("projected files %v; want %v", files, want)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "roots.pem"), []byte(got.Annotations[inject.RootsAnnotation]), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("a-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, a := range proxy.Args {
		args = append(args, strings.ReplaceAll(a, inject.XDSDir, dir))
	}
	var opts sidecar.Options
	fs := pflag.NewFlagSet("meridian-proxy", pflag.ContinueOnError)
	opts.BindFlags(fs)
	if err := fs.Parse(append(args, "--namespace=shop", "--service-account=web", "--access-log=off")); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	for flag, v := range map[string]string{"xds-address": "meridiand.meridian-system.svc:15011", "xds-server-id": mesh.ServerID.String(),
		"xds-ca": filepath.Join(dir, "roots.pem"), "xds-token-file": filepath.Join(dir, "token")} {
		if got := fs.Lookup(flag).Value.String(); got != v {
			t.Errorf("--%s=%s; want %s", flag, got, v)
		}
	}
	cfg, closer, err := opts.Config(io.Discard)
	if err != nil {
		t.Fatalf("meridian-proxy %v: %v", args, err)
	}
	closer.Close()
	if len(cfg.XDSDialOptions) == 0 || cfg.XDSTokenFile != filepath.Join(dir, "token") {
		t.Errorf("meridian-proxy config: dial options %d, token file %q; want TLS to meridiand and the projected token", len(cfg.XDSDialOptions), cfg.XDSTokenFile)
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestMutateSkipsAndRefuses(t *testing.T) {
	s := testSettings()
	for _, tc := range []struct {
		name      string
		mut       func(*corev1.Pod)
		skipped   string // substring of Decision.Skipped
		errorText string // substring of the error
	}{
		{"opted out", func(p *corev1.Pod) { p.Annotations = map[string]string{inject.InjectAnnotation: "false"} }, "opted out", ""},
		{"host network", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, "host's network", ""},
		{"already injected", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: inject.ProxyContainer})
		}, "already injected", ""},
		{"bad annotation", func(p *corev1.Pod) { p.Annotations = map[string]string{inject.InjectAnnotation: "maybe"} },
			"", `metadata.annotations[meridian.io/inject]: Invalid value: "maybe": want "true" or "false"`},
		{"no containers", func(p *corev1.Pod) { p.Spec.Containers = nil }, "", "spec.containers: Required value"},
		{"name clash", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: inject.InitContainer}}
		}, "", `spec.initContainers[0].name: Duplicate value: "meridian-init"`},
		{"volume clash", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: inject.XDSVolume}}
		}, "", `spec.volumes[0].name: Duplicate value: "meridian-xds"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dec, err := inject.Mutate(pod(tc.mut), &s, testMesh(t))
			if tc.errorText != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errorText) {
					t.Fatalf("error = %v; want %q", err, tc.errorText)
				}
				return
			}
			if err != nil || dec.Patch != nil || !strings.Contains(dec.Skipped, tc.skipped) {
				t.Fatalf("Mutate = %+v, %v; want skipped with %q", dec, err, tc.skipped)
			}
		})
	}
}

func TestIPTablesRules(t *testing.T) {
	got := inject.IPTablesRules([]int{9090}, []string{"169.254.169.254/32", "10.1.2.3/8", "fd00::/8"})
	for _, want := range []string{
		"*nat\n",
		"-A MERIDIAN_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006\n",
		"-A MERIDIAN_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n",
		"-A MERIDIAN_INBOUND -p tcp --dport 9090 -j RETURN\n",
		"-A MERIDIAN_OUTPUT -m owner --uid-owner 1337 -j RETURN\n",
		"-A MERIDIAN_OUTPUT -d 169.254.169.254/32 -j RETURN\n",
		"-A MERIDIAN_OUTPUT -d 10.0.0.0/8 -j RETURN\n",
		"COMMIT\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rules lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "fd00") {
		t.Errorf("IPv6 CIDR in IPv4 rules:\n%s", got)
	}
	// The catch-all comes after every exception.
	if strings.Index(got, "-j MERIDIAN_REDIRECT\n") < strings.Index(got, "10.0.0.0/8") {
		t.Errorf("redirect before the exclusions:\n%s", got)
	}
}

func TestSettingsValidate(t *testing.T) {
	s := inject.DefaultSettings()
	if errs := s.Validate(field.NewPath("inject")); len(errs) != 0 {
		t.Fatalf("defaults (disabled): %v", errs)
	}
	s = testSettings()
	if errs := s.Validate(field.NewPath("inject")); len(errs) != 0 {
		t.Fatalf("test settings: %v", errs)
	}
	s.Addr = "15017"
	s.Hosts = []string{"Not_A_Host"}
	s.ProxyImage = ""
	s.ImagePullPolicy = "Sometimes"
	s.XDSAddress = "meridiand"
	s.ExcludeInboundPorts = []int{0}
	s.ExcludeOutboundCIDRs = []string{"10.0.0.0"}
	got := s.Validate(field.NewPath("inject")).ToAggregate().Error()
	for _, want := range []string{"inject.addr", "inject.hosts[0]", "inject.proxyImage: Required", "inject.imagePullPolicy: Unsupported",
		"inject.xdsAddress", "inject.excludeInboundPorts[0]", "inject.excludeOutboundCIDRs[0]"} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q: %s", want, got)
		}
	}
}
