package v1alpha1

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Gateway configures meridian-proxy gateways: ingress into the mesh,
// egress out of it, and east-west between clusters and networks.
type Gateway struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   GatewaySpec `json:"spec"`
	Status *Status     `json:"status,omitempty"`
}

// GatewaySpec lists what a gateway listens on.
type GatewaySpec struct {
	// Type is ingress, egress or east-west.
	Type GatewayType `json:"type"`
	// Selector picks the gateway proxies (by their workload labels) that
	// run this configuration.
	Selector map[string]string `json:"selector,omitempty"`
	// Listeners are the ports the gateway opens.
	Listeners []Listener `json:"listeners"`
}

// GatewayType is a gateway's role.
type GatewayType string

// Gateway types.
const (
	GatewayIngress  GatewayType = "ingress"
	GatewayEgress   GatewayType = "egress"
	GatewayEastWest GatewayType = "east-west"
)

// Values lists the types.
func (GatewayType) Values() []string { return []string{"ingress", "egress", "east-west"} }

// Listener is one port of a gateway.
type Listener struct {
	Name     string           `json:"name"`
	Port     int32            `json:"port"`
	Protocol ListenerProtocol `json:"protocol"`
	// Hosts served on this listener; "*" for any. Not used by east-west
	// listeners, which route by SNI to every exported service.
	Hosts []string `json:"hosts,omitempty"`
	// TLS settings; required for HTTPS and TLS.
	TLS *ServerTLS `json:"tls,omitempty"`
}

// ListenerProtocol is what a listener speaks.
type ListenerProtocol string

// Listener protocols.
const (
	ListenerHTTP  ListenerProtocol = "HTTP"
	ListenerHTTPS ListenerProtocol = "HTTPS"
	ListenerHTTP2 ListenerProtocol = "HTTP2"
	ListenerGRPC  ListenerProtocol = "GRPC"
	ListenerTCP   ListenerProtocol = "TCP"
	ListenerTLS   ListenerProtocol = "TLS"
)

// Values lists the protocols.
func (ListenerProtocol) Values() []string {
	return []string{"HTTP", "HTTPS", "HTTP2", "GRPC", "TCP", "TLS"}
}

// ServerTLS is how a gateway listener handles TLS.
type ServerTLS struct {
	// Mode is simple (terminate with CredentialName), mutual (also verify
	// client certificates), passthrough (route by SNI without terminating)
	// or mesh (SPIFFE mTLS between clusters, passed through by SNI).
	Mode ServerTLSMode `json:"mode"`
	// CredentialName names the secret with the certificate and key (and CA
	// bundle for mutual).
	CredentialName string `json:"credentialName,omitempty"`
	// MinVersion is 1.2 (default) or 1.3.
	MinVersion string `json:"minVersion,omitempty"`
}

// ServerTLSMode is a gateway TLS mode.
type ServerTLSMode string

// Gateway TLS modes.
const (
	ServerTLSSimple      ServerTLSMode = "simple"
	ServerTLSMutual      ServerTLSMode = "mutual"
	ServerTLSPassthrough ServerTLSMode = "passthrough"
	ServerTLSMesh        ServerTLSMode = "mesh"
)

// Values lists the modes.
func (ServerTLSMode) Values() []string { return []string{"simple", "mutual", "passthrough", "mesh"} }

// Validate checks the gateway on its own.
func (g *Gateway) Validate() field.ErrorList {
	errs := validateMeta(&g.ObjectMeta)
	spec := field.NewPath("spec")
	s := &g.Spec
	errs = append(errs, validateEnum(s.Type, true, spec.Child("type"))...)
	errs = append(errs, metav1validation.ValidateLabels(s.Selector, spec.Child("selector"))...)
	if len(s.Listeners) == 0 {
		errs = append(errs, field.Required(spec.Child("listeners"), ""))
	}
	names := map[string]bool{}
	byPort := map[int32]int{} // port → index of its first listener
	for i := range s.Listeners {
		l := &s.Listeners[i]
		p := spec.Child("listeners").Index(i)
		for _, msg := range validation.IsDNS1123Label(l.Name) {
			errs = append(errs, field.Invalid(p.Child("name"), l.Name, msg))
		}
		if names[l.Name] {
			errs = append(errs, field.Duplicate(p.Child("name"), l.Name))
		}
		names[l.Name] = true
		errs = append(errs, validatePort(l.Port, p.Child("port"))...)
		errs = append(errs, validateEnum(l.Protocol, true, p.Child("protocol"))...)
		errs = append(errs, l.validateTLS(s.Type, p)...)
		if s.Type != GatewayEastWest && l.Protocol != ListenerTCP && len(l.Hosts) == 0 {
			errs = append(errs, field.Required(p.Child("hosts"), `list the hosts served, or "*"`))
		}
		errs = append(errs, validateHosts(l.Hosts, true, p.Child("hosts"))...)
		if j, ok := byPort[l.Port]; ok {
			errs = append(errs, sharedPort(&s.Listeners[j], l, p)...)
		} else {
			byPort[l.Port] = i
		}
	}
	return errs
}

func (l *Listener) validateTLS(typ GatewayType, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	needsTLS := l.Protocol == ListenerHTTPS || l.Protocol == ListenerTLS || typ == GatewayEastWest
	switch {
	case needsTLS && l.TLS == nil:
		return field.ErrorList{field.Required(p.Child("tls"), "HTTPS, TLS and east-west listeners need tls settings")}
	case !needsTLS && l.TLS != nil:
		return field.ErrorList{field.Forbidden(p.Child("tls"), "use protocol HTTPS or TLS for a TLS listener")}
	case l.TLS == nil:
		return nil
	}
	t := l.TLS
	tp := p.Child("tls")
	errs = append(errs, validateEnum(t.Mode, true, tp.Child("mode"))...)
	switch t.Mode {
	case ServerTLSSimple, ServerTLSMutual:
		if t.CredentialName == "" {
			errs = append(errs, field.Required(tp.Child("credentialName"), "terminating TLS needs a certificate"))
		}
	case ServerTLSPassthrough, ServerTLSMesh:
		if l.Protocol != ListenerTLS {
			errs = append(errs, field.Invalid(tp.Child("mode"), t.Mode, "passthrough and mesh route by SNI: the listener's protocol must be TLS"))
		}
		if t.CredentialName != "" {
			errs = append(errs, field.Forbidden(tp.Child("credentialName"), "TLS passed through is not terminated here"))
		}
	}
	if typ == GatewayEastWest && t.Mode != ServerTLSMesh && t.Mode != ServerTLSPassthrough {
		errs = append(errs, field.Invalid(tp.Child("mode"), t.Mode, "east-west gateways pass mTLS through: use mesh or passthrough"))
	}
	if t.CredentialName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(t.CredentialName) {
			errs = append(errs, field.Invalid(tp.Child("credentialName"), t.CredentialName, msg))
		}
	}
	if t.MinVersion != "" && t.MinVersion != "1.2" && t.MinVersion != "1.3" {
		errs = append(errs, field.NotSupported(tp.Child("minVersion"), t.MinVersion, []string{"1.2", "1.3"}))
	}
	return errs
}

// sharedPort checks a listener that reuses an earlier listener's port: the
// same protocol, told apart by host (SNI or Host header).
func sharedPort(first, l *Listener, p *field.Path) field.ErrorList {
	if first.Protocol != l.Protocol {
		return field.ErrorList{field.Invalid(p.Child("protocol"), l.Protocol, "listener "+first.Name+" already serves this port with protocol "+string(first.Protocol))}
	}
	if l.Protocol == ListenerTCP {
		return field.ErrorList{field.Duplicate(p.Child("port"), l.Port)}
	}
	for _, h := range l.Hosts {
		if slices.Contains(first.Hosts, h) || h == "*" || slices.Contains(first.Hosts, "*") {
			return field.ErrorList{field.Invalid(p.Child("hosts"), h, "listener "+first.Name+" on the same port already serves this host")}
		}
	}
	return nil
}
