package server

import (
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/xds/translate"
)

// Settings are the xDS server's knobs in meridiand's configuration file
// (the "xds" section).
type Settings struct {
	// OutboundTrafficPolicy is the mesh's default for proxies whose node
	// does not set one: ALLOW_ANY (default) passes unknown hosts through,
	// REGISTRY_ONLY refuses every host that is neither a mesh service nor
	// declared by a ServiceEntry.
	OutboundTrafficPolicy string `json:"outboundTrafficPolicy,omitempty"`
	// CredentialsDir holds the certificates Gateways and
	// DestinationPolicies name by credentialName, as
	// DIR/NAMESPACE/NAME/{tls.crt,tls.key,ca.crt} (mounted Kubernetes TLS
	// Secrets have this layout). Empty: no credentials.
	CredentialsDir string `json:"credentialsDir,omitempty"`
}

// Validate checks the policy's spelling.
func (s *Settings) Validate(path *field.Path) field.ErrorList {
	switch s.OutboundTrafficPolicy {
	case "", translate.AllowAny, translate.RegistryOnly:
		return nil
	}
	return field.ErrorList{field.NotSupported(path.Child("outboundTrafficPolicy"), s.OutboundTrafficPolicy, []string{translate.AllowAny, translate.RegistryOnly})}
}

// Apply sets the config fields the settings describe.
func (s Settings) Apply(cfg *Config) {
	cfg.RegistryOnly = s.OutboundTrafficPolicy == translate.RegistryOnly
	if s.CredentialsDir != "" {
		cfg.Credentials = FileCredentials(s.CredentialsDir)
	}
}
