package inject

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meridian-mesh/meridian/trust/attest"
)

// Names the webhook reads and writes on namespaces and pods.
const (
	// NamespaceLabel=enabled on a namespace asks for injection in it; the
	// webhook's namespaceSelector matches it, so the webhook never sees
	// pods of other namespaces.
	NamespaceLabel = "meridian.io/inject"
	// InjectAnnotation: "false" on a pod opts it out.
	InjectAnnotation = "meridian.io/inject"
	// StatusAnnotation is set to "injected" on pods that got the sidecar.
	StatusAnnotation = "meridian.io/status"
	// RootsAnnotation carries the mesh's roots (PEM) on injected pods; the
	// downward API projects it into the sidecar's XDSVolume as roots.pem.
	RootsAnnotation = "meridian.io/xds-roots"
	// XDSVolume is the injected projected volume, mounted read-only in the
	// sidecar at XDSDir: the mesh roots meridiand is verified against
	// (roots.pem) and a service-account token for Meridian's audience that
	// attests the pod to meridiand (token, rotated by the kubelet).
	XDSVolume = "meridian-xds"
	XDSDir    = "/var/run/secrets/meridian/xds"
	// XDSTokenSeconds is the token's lifetime; the kubelet renews it at 80%,
	// and meridian-proxy reads the file for every xDS stream.
	XDSTokenSeconds = 3600
	// ProxyContainer and InitContainer are the injected containers' names.
	ProxyContainer = "meridian-proxy"
	InitContainer  = "meridian-init"
	// ProxyUID is the sidecar's user: its own traffic is never redirected
	// back to itself.
	ProxyUID = 1337
	// Ports of the sidecar: outbound and inbound capture (the listeners
	// xds/translate builds), health and Prometheus metrics.
	OutboundPort = 15001
	InboundPort  = 15006
	HealthPort   = 15021
	MetricsPort  = 15090
)

// Decision is what Mutate decided for one pod.
type Decision struct {
	// Patch is a JSON Patch (RFC 6902) that adds the sidecar, or nil.
	Patch []byte
	// Skipped says why the pod is left alone, when Patch is nil.
	Skipped string
}

// patchOp is one JSON Patch operation.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Mesh is what every sidecar is told about the control plane it is
// injected for.
type Mesh struct {
	// Cluster is this control plane's cluster.
	Cluster string
	// ServerID is meridiand's SPIFFE ID (its member SVID's,
	// spiffe://TD/meridian/cluster/NAME): the sidecar verifies meridiand's
	// certificate on the TLS xDS port by it (--xds-server-id).
	ServerID spiffeid.ID
	// Roots is the mesh's trust bundle, PEM, that certificate is verified
	// against (--xds-ca).
	Roots []byte
}

// Mutate decides whether pod gets the sidecar and returns the patch that
// adds it: the meridian-proxy container, pointed at meridiand's TLS xDS
// port and verifying it as mesh.ServerID against mesh.Roots; the init
// container that redirects the pod's TCP traffic to it (appended last, so
// that earlier init containers still reach the network directly); the
// XDSVolume with the roots and the pod's token; the status and roots
// annotations. It is pure. An error names the field that makes the pod
// impossible to inject (the webhook denies such a pod with it); a pod that
// opted out, uses the host's network or already has the sidecar is skipped.
func Mutate(pod *corev1.Pod, s *Settings, mesh Mesh) (Decision, error) {
	if v, ok := pod.Annotations[InjectAnnotation]; ok {
		want, err := strconv.ParseBool(v)
		if err != nil {
			return Decision{}, field.Invalid(field.NewPath("metadata", "annotations").Key(InjectAnnotation), v, `want "true" or "false"`)
		}
		if !want {
			return Decision{Skipped: "opted out by annotation " + InjectAnnotation + `: "false"`}, nil
		}
	}
	if len(pod.Spec.Containers) == 0 {
		return Decision{}, field.Required(field.NewPath("spec", "containers"), "a pod needs at least one container")
	}
	if pod.Spec.HostNetwork {
		return Decision{Skipped: "the pod uses the host's network: redirecting it would capture the node's traffic"}, nil
	}
	for i, c := range pod.Spec.Containers {
		if c.Name == ProxyContainer {
			return Decision{Skipped: "already injected"}, nil
		}
		if c.Name == InitContainer {
			return Decision{}, field.Duplicate(field.NewPath("spec", "containers").Index(i).Child("name"), c.Name)
		}
	}
	for i, c := range pod.Spec.InitContainers {
		if c.Name == InitContainer || c.Name == ProxyContainer {
			return Decision{}, field.Duplicate(field.NewPath("spec", "initContainers").Index(i).Child("name"), c.Name)
		}
	}
	for i, v := range pod.Spec.Volumes {
		if v.Name == XDSVolume {
			return Decision{}, field.Duplicate(field.NewPath("spec", "volumes").Index(i).Child("name"), v.Name)
		}
	}

	var ops []patchOp
	if len(pod.Spec.InitContainers) == 0 {
		ops = append(ops, patchOp{"add", "/spec/initContainers", []corev1.Container{initContainer(s)}})
	} else {
		ops = append(ops, patchOp{"add", "/spec/initContainers/-", initContainer(s)})
	}
	ops = append(ops, patchOp{"add", "/spec/containers/-", proxyContainer(s, mesh)})
	if pod.Spec.ServiceAccountName == "" {
		// The token projection needs it; the API server's ServiceAccount
		// admission sets the same default before webhooks run, where it is on.
		ops = append(ops, patchOp{"add", "/spec/serviceAccountName", "default"})
	}
	if len(pod.Spec.Volumes) == 0 {
		ops = append(ops, patchOp{"add", "/spec/volumes", []corev1.Volume{xdsVolume()}})
	} else {
		ops = append(ops, patchOp{"add", "/spec/volumes/-", xdsVolume()})
	}
	if pod.Annotations == nil {
		ops = append(ops, patchOp{"add", "/metadata/annotations", map[string]string{StatusAnnotation: "injected", RootsAnnotation: string(mesh.Roots)}})
	} else {
		ops = append(ops, patchOp{"add", "/metadata/annotations/" + escape(StatusAnnotation), "injected"},
			patchOp{"add", "/metadata/annotations/" + escape(RootsAnnotation), string(mesh.Roots)})
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return Decision{}, fmt.Errorf("inject: encode patch: %w", err)
	}
	return Decision{Patch: patch}, nil
}

// escape makes a map key a JSON Pointer token (RFC 6901).
func escape(key string) string {
	return strings.ReplaceAll(strings.ReplaceAll(key, "~", "~0"), "/", "~1")
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

// xdsVolume projects the pod's roots annotation and a token for
// Meridian's audience (trust/attest refuses the API server's own) into one
// directory. The roots come from the annotation rather than from a
// ConfigMap per namespace, as Istio's istio-ca-root-cert does: the pod is
// then complete as admitted — no controller writing into every injected
// namespace, no cluster-wide ConfigMap write permission, no pod waiting
// for a ConfigMap in a namespace labelled a moment ago. The price: a pod
// keeps the roots it was admitted with, as meridian-proxy keeps what it
// read from --xds-ca at start.
func xdsVolume() corev1.Volume {
	return corev1.Volume{Name: XDSVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: attest.DefaultAudience, ExpirationSeconds: ptr.To[int64](XDSTokenSeconds), Path: "token"}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
				Path: "roots.pem", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.annotations['" + RootsAnnotation + "']"}}}}},
		},
	}}}
}

func proxyContainer(s *Settings, mesh Mesh) corev1.Container {
	return corev1.Container{
		Name:            ProxyContainer,
		Image:           s.ProxyImage,
		ImagePullPolicy: s.ImagePullPolicy,
		Command:         []string{"/usr/local/bin/meridian-proxy"},
		Args: []string{"--mode=sidecar", "--xds-address=" + s.XDSAddress, "--cluster=" + mesh.Cluster,
			"--xds-ca=" + XDSDir + "/roots.pem", "--xds-server-id=" + mesh.ServerID.String(), "--xds-token-file=" + XDSDir + "/token"},
		VolumeMounts: []corev1.VolumeMount{{Name: XDSVolume, MountPath: XDSDir, ReadOnly: true}},
		Env: []corev1.EnvVar{
			fieldEnv("POD_NAME", "metadata.name"),
			fieldEnv("POD_NAMESPACE", "metadata.namespace"),
			fieldEnv("POD_IP", "status.podIP"),
			fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
		},
		Ports: []corev1.ContainerPort{{Name: "meridian-prom", ContainerPort: MetricsPort, Protocol: corev1.ProtocolTCP}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstrPort(HealthPort)}},
			PeriodSeconds: 2, FailureThreshold: 30,
		},
		Resources: s.ProxyResources,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: ptr.To[int64](ProxyUID), RunAsGroup: ptr.To[int64](ProxyUID), RunAsNonRoot: ptr.To(true),
			ReadOnlyRootFilesystem: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// initContainer runs iptables-restore on the rules IPTablesRules writes;
// it needs NET_ADMIN and NET_RAW in the pod's network namespace, and root.
func initContainer(s *Settings) corev1.Container {
	return corev1.Container{
		Name:            InitContainer,
		Image:           s.InitImage,
		ImagePullPolicy: s.ImagePullPolicy,
		Command:         []string{"sh", "-c", `printf '%s\n' "$MERIDIAN_IPTABLES" | iptables-restore --noflush`},
		Env:             []corev1.EnvVar{{Name: "MERIDIAN_IPTABLES", Value: IPTablesRules(s.ExcludeInboundPorts, s.ExcludeOutboundCIDRs)}},
		Resources: corev1.ResourceRequirements{
			Requests: s.ProxyResources.Requests, Limits: s.ProxyResources.Limits,
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: ptr.To[int64](0), RunAsNonRoot: ptr.To(false), AllowPrivilegeEscalation: ptr.To(false),
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
		},
	}
}
