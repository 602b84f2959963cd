package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/meridian-mesh/meridian/deploy"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/service"
)

// installOptions are install's flags.
type installOptions struct {
	profile    string
	contexts   []string
	kubeconfig string
	dryRun     bool
	cluster    registry.Cluster
	// trustRoot is a directory of `meridianctl trust init`: the root every
	// installed cluster starts its CA from.
	trustRoot string
}

// installFlags maps the cluster fields to the flags that set them.
var installFlags = map[string]string{
	"cluster.name": "--cluster", "cluster.region": "--region", "cluster.network": "--network",
	"cluster.labels": "--labels", "cluster.gateways": "--gateways",
}

func newInstallCommand(g *Globals) *cobra.Command {
	o := &installOptions{}
	cmd := &cobra.Command{
		Use:   "install --profile minimal|default|demo [--context CONTEXT]... [--dry-run]",
		Short: "Install Meridian in Kubernetes clusters, or print the manifests",
		Long: `install applies Meridian's manifests — the CRDs, then the chart rendered for an
install profile (deploy/manifests) — to one or more kubeconfig contexts with
server-side apply, and creates the Secrets the mesh CA starts from when they
are missing: its sealing key, and its root (--trust-root, or a new one).
Clusters that share a root are one mesh. Running it again updates what it
installed and never replaces those Secrets.

Profiles, as Istio users know them:
  minimal   the control plane only (meridiand, CRDs, RBAC, the injection webhook)
  default   the control plane and an ingress gateway
  demo      everything: ingress, egress and east-west gateways, the dashboard

Each cluster is named after its context unless --cluster names it (one
context only). --dry-run prints the manifests instead, for kubectl or GitOps.
For values the profiles do not offer, use the Helm chart in deploy/helm/meridian.`,
		Example: `  # Print the demo profile's manifests for a cluster in eu-west-1:
  meridianctl install --profile demo --cluster eks-euw1 --region eu-west-1 --labels jurisdiction=eu --dry-run

  # Install the default profile in two clusters, named after their contexts:
  meridianctl install --profile default --context kind-onprem-dc1 --context kind-eks-use1 --region us-east-1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), g) },
	}
	f := cmd.Flags()
	f.StringVar(&o.profile, "profile", "default", "install profile: "+strings.Join(deploy.Profiles, ", "))
	f.StringArrayVar(&o.contexts, "context", nil, "kubeconfig context to install in; repeat for several clusters (default the current context)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default $KUBECONFIG or ~/.kube/config)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the manifests instead of applying them")
	f.StringVar(&o.cluster.Name, "cluster", "", "name of the cluster in the mesh (default the context's name)")
	f.StringVar(&o.cluster.Region, "region", "", "region of the cluster (required: us-east-1, onprem-east, ...)")
	f.StringVar(&o.cluster.Network, "network", "", "network of the cluster; clusters on different networks meet through east-west gateways")
	f.StringToStringVar(&o.cluster.Labels, "labels", nil, "labels of the cluster, for failover and residency policies (provider=eks,jurisdiction=eu)")
	f.StringSliceVar(&o.cluster.Gateways, "gateways", nil, "host:port of the cluster's east-west gateways as other clusters reach them")
	f.StringVar(&o.trustRoot, "trust-root", "", "directory of 'meridianctl trust init': the mesh root every cluster starts its CA from (default a new root per cluster)")
	_ = cmd.RegisterFlagCompletionFunc("profile", cobra.FixedCompletions(deploy.Profiles, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.MarkFlagRequired("region")
	return cmd
}

func (o *installOptions) run(ctx context.Context, g *Globals) error {
	if !slices.Contains(deploy.Profiles, o.profile) {
		return Hint(fmt.Errorf("--profile %q: unknown profile", o.profile), "use one of "+strings.Join(deploy.Profiles, ", "))
	}
	if o.cluster.Name != "" && len(o.contexts) > 1 {
		return Hint(errors.New("--cluster names one cluster, and several --context were given"), "leave --cluster out: each cluster is then named after its context")
	}
	if o.dryRun {
		c := o.cluster
		if c.Name == "" {
			c.Name = "cluster1"
		}
		objs, err := renderInstall(o.profile, c)
		if err != nil {
			return err
		}
		return writeYAML(g.Out, objs)
	}
	loading := clientcmd.NewDefaultClientConfigLoadingRules()
	loading.ExplicitPath = o.kubeconfig
	contexts := o.contexts
	if len(contexts) == 0 {
		raw, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(loading, &clientcmd.ConfigOverrides{}).RawConfig()
		if err != nil || raw.CurrentContext == "" {
			return Hint(fmt.Errorf("no kubeconfig context to install in: %v", err), "pass --context, or --kubeconfig with a current context, or --dry-run to print the manifests")
		}
		contexts = []string{raw.CurrentContext}
	}
	for _, kctx := range contexts {
		c := o.cluster
		if c.Name == "" {
			c.Name = clusterName(kctx)
		}
		objs, err := renderInstall(o.profile, c)
		if err != nil {
			return err
		}
		rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(loading, &clientcmd.ConfigOverrides{CurrentContext: kctx}).ClientConfig()
		if err != nil {
			return Hint(fmt.Errorf("context %q: %w", kctx, err), "see 'kubectl config get-contexts'")
		}
		n, err := apply(ctx, rc, objs, o.trustRoot)
		if err != nil {
			return Hint(fmt.Errorf("context %q: %w", kctx, err), "check that the context reaches its API server and may create cluster-scoped objects (CRDs, ClusterRoles, webhooks)")
		}
		fmt.Fprintf(g.Out, "context %s: applied %d objects (profile %s, cluster %s in %s)\n", kctx, n, o.profile, c.Name, c.Region)
	}
	return nil
}

var notLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// clusterName makes a mesh cluster name (a DNS label) of a context's name:
// kind-eks-use1 stays, arn:aws:eks:...:cluster/prod becomes ...-cluster-prod.
func clusterName(kctx string) string {
	s := strings.Trim(notLabel.ReplaceAllString(strings.ToLower(kctx), "-"), "-")
	if len(s) > 63 {
		s = strings.Trim(s[len(s)-63:], "-")
	}
	return s
}

// renderInstall returns the objects to apply: the CRDs, then the profile's
// manifests with the cluster's identity written into meridiand's
// configuration and the gateways' arguments.
func renderInstall(profile string, c registry.Cluster) ([]*unstructured.Unstructured, error) {
	if errs := registry.ValidateCluster(c, field.NewPath("cluster")); len(errs) > 0 {
		var parts []string
		for _, e := range errs {
			parts = append(parts, strings.Replace(e.Error(), e.Field, installFlags[strings.SplitN(e.Field, "[", 2)[0]], 1))
		}
		return nil, Hint(errors.New(strings.Join(parts, "; ")), "fix the flags named above")
	}
	crds, err := deploy.CRDs()
	if err != nil {
		return nil, err
	}
	man, err := deploy.Manifest(profile)
	if err != nil {
		return nil, err
	}
	objs, err := decodeObjects(append(crds, man...))
	if err != nil {
		return nil, fmt.Errorf("install: embedded manifests: %w", err)
	}
	var sum string
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" && o.GetName() == "meridiand" {
			if sum, err = setClusterConfig(o, c); err != nil {
				return nil, err
			}
		}
	}
	for _, o := range objs {
		if o.GetKind() == "StatefulSet" && o.GetName() == "meridiand" {
			_ = unstructured.SetNestedField(o.Object, sum, "spec", "template", "metadata", "annotations", "checksum/config")
		}
		if o.GetKind() == "Deployment" && o.GetLabels()["meridian.io/gateway"] != "" {
			setGatewayCluster(o, c.Name)
		}
	}
	return objs, nil
}

// setClusterConfig writes the cluster into meridiand's config.yaml and
// returns the new file's checksum (the StatefulSet restarts on a change).
func setClusterConfig(cm *unstructured.Unstructured, c registry.Cluster) (string, error) {
	text, _, _ := unstructured.NestedString(cm.Object, "data", "config.yaml")
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		return "", fmt.Errorf("install: embedded meridiand configuration: %w", err)
	}
	cj, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("install: %w", err)
	}
	var cluster map[string]any
	if err := json.Unmarshal(cj, &cluster); err != nil {
		return "", fmt.Errorf("install: %w", err)
	}
	cfg["cluster"] = cluster
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("install: %w", err)
	}
	if err := unstructured.SetNestedField(cm.Object, string(out), "data", "config.yaml"); err != nil {
		return "", fmt.Errorf("install: %w", err)
	}
	h := sha256.Sum256(out)
	return hex.EncodeToString(h[:]), nil
}

func setGatewayCluster(d *unstructured.Unstructured, cluster string) {
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	for _, c := range containers {
		cm, _ := c.(map[string]any)
		args, _ := cm["args"].([]any)
		for i, a := range args {
			if s, _ := a.(string); strings.HasPrefix(s, "--cluster=") {
				args[i] = "--cluster=" + cluster
			}
		}
	}
	_ = unstructured.SetNestedSlice(d.Object, containers, "spec", "template", "spec", "containers")
}

func decodeObjects(b []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		var o map[string]any
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		if len(o) > 0 {
			out = append(out, &unstructured.Unstructured{Object: o})
		}
	}
}

func writeYAML(w io.Writer, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return fmt.Errorf("install: %w", err)
		}
		if _, err := fmt.Fprintf(w, "---\n%s", b); err != nil {
			return err
		}
	}
	return nil
}

// apply server-side-applies objs in order (CRDs and the namespace first, as
// rendered), then creates the mesh CA's Secrets when they are missing.
func apply(ctx context.Context, rc *rest.Config, objs []*unstructured.Unstructured, trustRoot string) (int, error) {
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return 0, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return 0, err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	force := true
	for i, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return i, fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
		}
		var r dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			r = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		body, err := json.Marshal(o.Object)
		if err != nil {
			return i, err
		}
		if _, err := r.Patch(ctx, o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: "meridianctl", Force: &force}); err != nil {
			return i, fmt.Errorf("apply %s %s: %w", gvk.Kind, qualified(o), err)
		}
	}
	return len(objs), ensureTrustSecrets(ctx, rc, objs, trustRoot)
}

func qualified(o *unstructured.Unstructured) string {
	if o.GetNamespace() == "" {
		return o.GetName()
	}
	return o.GetNamespace() + "/" + o.GetName()
}

// ensureTrustSecrets creates the Secrets meridiand's StatefulSet mounts
// for the mesh CA, unless they exist — replacing them would lose the CA:
// the sealing key (32 random bytes) and the root to start from (the files
// of trustRoot, or of a new root for the trust domain in meridiand's
// configuration).
func ensureTrustSecrets(ctx context.Context, rc *rest.Config, objs []*unstructured.Unstructured, trustRoot string) error {
	var ns string
	secrets := map[string]string{} // volume → Secret
	for _, o := range objs {
		if o.GetKind() != "StatefulSet" || o.GetName() != "meridiand" {
			continue
		}
		ns = o.GetNamespace()
		vols, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "volumes")
		for _, v := range vols {
			vm, _ := v.(map[string]any)
			name, _, _ := unstructured.NestedString(vm, "secret", "secretName")
			if vol, _ := vm["name"].(string); name != "" {
				secrets[vol] = name
			}
		}
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	content := map[string]func() (map[string][]byte, error){
		"trust-key": func() (map[string][]byte, error) {
			key := make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return nil, err
			}
			return map[string][]byte{"key": []byte(base64.StdEncoding.EncodeToString(key))}, nil
		},
		"trust-root": func() (map[string][]byte, error) { return rootFiles(trustRoot, trustDomainOf(objs)) },
	}
	for _, vol := range []string{"trust-key", "trust-root"} {
		name := secrets[vol]
		if name == "" {
			continue
		}
		if _, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			continue
		} else if !apierrors.IsNotFound(err) {
			return err
		}
		data, err := content[vol]()
		if err != nil {
			return err
		}
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/part-of": "meridian"}},
			Data:       data,
		}
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create Secret %s/%s: %w", ns, name, err)
		}
	}
	return nil
}

// rootFiles reads a root directory of `meridianctl trust init`, or makes
// one for td when dir is empty.
func rootFiles(dir, td string) (map[string][]byte, error) {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "meridian-root-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		domain, err := spiffeid.TrustDomainFromString(td)
		if err != nil {
			return nil, fmt.Errorf("trust domain %q: %w", td, err)
		}
		if _, err := service.InitRootDir(tmp, ca.RootOptions{TrustDomain: domain}, nil, nil); err != nil {
			return nil, err
		}
		dir = tmp
	}
	out := map[string][]byte{}
	for _, f := range []string{service.RootCertFile, service.RootKeyFile, service.TrustDomainFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, Hint(fmt.Errorf("--trust-root: %w", err), "give the directory 'meridianctl trust init --dir DIR' wrote")
		}
		out[f] = b
	}
	return out, nil
}

// trustDomainOf reads the trust domain from meridiand's configuration.
func trustDomainOf(objs []*unstructured.Unstructured) string {
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" && o.GetName() == "meridiand" {
			text, _, _ := unstructured.NestedString(o.Object, "data", "config.yaml")
			var cfg struct {
				Trust struct {
					TrustDomain string `json:"trustDomain"`
				} `json:"trust"`
			}
			if yaml.Unmarshal([]byte(text), &cfg) == nil && cfg.Trust.TrustDomain != "" {
				return cfg.Trust.TrustDomain
			}
		}
	}
	return "cluster.local"
}
