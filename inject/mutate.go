package inject

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
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

// Mutate decides whether pod gets the sidecar and returns the patch that
// adds it: the meridian-proxy container, the init container that redirects
// the pod's TCP traffic to it (appended last, so that earlier init
// containers still reach the network directly), and the status annotation.
// It is pure. An error names the field that makes the pod impossible to
// inject (the webhook denies such a pod with it); a pod that opted out,
// uses the host's network or already has the sidecar is skipped.
func Mutate(pod *corev1.Pod, s *Settings, cluster string) (Decision, error) {
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

	var ops []patchOp
	if len(pod.Spec.InitContainers) == 0 {
		ops = append(ops, patchOp{"add", "/spec/initContainers", []corev1.Container{initContainer(s)}})
	} else {
		ops = append(ops, patchOp{"add", "/spec/initContainers/-", initContainer(s)})
	}
	ops = append(ops, patchOp{"add", "/spec/containers/-", proxyContainer(s, cluster)})
	if pod.Annotations == nil {
		ops = append(ops, patchOp{"add", "/metadata/annotations", map[string]string{StatusAnnotation: "injected"}})
	} else {
		ops = append(ops, patchOp{"add", "/metadata/annotations/" + escape(StatusAnnotation), "injected"})
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

func proxyContainer(s *Settings, cluster string) corev1.Container {
	return corev1.Container{
		Name:            ProxyContainer,
		Image:           s.ProxyImage,
		ImagePullPolicy: s.ImagePullPolicy,
		Command:         []string{"/usr/local/bin/meridian-proxy"},
		Args:            []string{"--mode=sidecar", "--xds-address=" + s.XDSAddress, "--cluster=" + cluster},
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
