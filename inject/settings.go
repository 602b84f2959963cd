package inject

import (
	"net"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Settings are the webhook's part of meridiand's configuration file
// ("inject:"): where it listens, the names its certificate carries, and
// what it injects. DefaultSettings gives the defaults.
type Settings struct {
	// Enabled serves the webhook. Off by default: only meridiand in a
	// Kubernetes cluster injects sidecars.
	Enabled bool `json:"enabled,omitempty"`
	// Addr is where the webhook serves HTTPS. Default ":15017".
	Addr string `json:"addr,omitempty"`
	// WebhookName is the MutatingWebhookConfiguration whose caBundle
	// meridiand keeps current with the mesh CA; empty leaves it alone (the
	// caller registers the webhook with the bundle itself).
	WebhookName string `json:"webhookName,omitempty"`
	// Hosts are the DNS names and IP addresses the serving certificate
	// carries: the Service's names as the API server calls them
	// (meridiand.NAMESPACE.svc). Required.
	Hosts []string `json:"hosts,omitempty"`
	// ProxyImage runs the meridian-proxy sidecar; InitImage runs the init
	// container that redirects the pod's traffic with iptables. Required.
	ProxyImage string `json:"proxyImage,omitempty"`
	InitImage  string `json:"initImage,omitempty"`
	// ImagePullPolicy of both; default IfNotPresent.
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// XDSAddress is meridiand's TLS xDS address as pods reach it
	// (meridiand.meridian-system.svc:15011, xds.tlsAddr): sidecars verify
	// meridiand there and attest with their service-account token, so
	// their SVIDs never cross the network in clear. Required.
	XDSAddress string `json:"xdsAddress,omitempty"`
	// ProxyResources of every sidecar.
	ProxyResources corev1.ResourceRequirements `json:"proxyResources,omitzero"`
	// ExcludeInboundPorts are never redirected to the sidecar.
	ExcludeInboundPorts []int `json:"excludeInboundPorts,omitempty"`
	// ExcludeOutboundCIDRs are reached directly, not through the sidecar.
	ExcludeOutboundCIDRs []string `json:"excludeOutboundCIDRs,omitempty"`
}

// DefaultSettings returns the defaults: disabled, on :15017.
func DefaultSettings() Settings {
	return Settings{Addr: ":15017", ImagePullPolicy: corev1.PullIfNotPresent}
}

// Validate reports every problem, each naming its field under path. A
// disabled webhook is not checked beyond its address.
func (s *Settings) Validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if _, port, err := net.SplitHostPort(s.Addr); err != nil {
		errs = append(errs, field.Invalid(path.Child("addr"), s.Addr, "want host:port, such as :15017"))
	} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n > 65535 {
		errs = append(errs, field.Invalid(path.Child("addr"), s.Addr, "the port must be a number between 0 and 65535"))
	}
	if !s.Enabled {
		return errs
	}
	if len(s.Hosts) == 0 {
		errs = append(errs, field.Required(path.Child("hosts"), "the serving certificate needs the names the API server calls the webhook by (meridiand.NAMESPACE.svc)"))
	}
	for i, h := range s.Hosts {
		if _, err := netip.ParseAddr(h); err == nil {
			continue
		}
		for _, msg := range validation.IsDNS1123Subdomain(h) {
			errs = append(errs, field.Invalid(path.Child("hosts").Index(i), h, msg))
		}
	}
	if s.WebhookName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(s.WebhookName) {
			errs = append(errs, field.Invalid(path.Child("webhookName"), s.WebhookName, msg))
		}
	}
	if s.ProxyImage == "" {
		errs = append(errs, field.Required(path.Child("proxyImage"), "the image that runs meridian-proxy"))
	}
	if s.InitImage == "" {
		errs = append(errs, field.Required(path.Child("initImage"), "the image that sets up iptables redirection"))
	}
	switch s.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, field.NotSupported(path.Child("imagePullPolicy"), s.ImagePullPolicy, []corev1.PullPolicy{corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever}))
	}
	if host, port, err := net.SplitHostPort(s.XDSAddress); err != nil || host == "" || port == "" {
		errs = append(errs, field.Invalid(path.Child("xdsAddress"), s.XDSAddress, "want meridiand's TLS xDS address as pods reach it, host:port"))
	}
	for i, p := range s.ExcludeInboundPorts {
		if p < 1 || p > 65535 {
			errs = append(errs, field.Invalid(path.Child("excludeInboundPorts").Index(i), p, "want a port between 1 and 65535"))
		}
	}
	for i, c := range s.ExcludeOutboundCIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			errs = append(errs, field.Invalid(path.Child("excludeOutboundCIDRs").Index(i), c, "want a CIDR such as 10.0.0.0/8"))
		}
	}
	return errs
}
