package mtls

import (
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/trust/sds"
)

// InboundChain is one filter chain of a sidecar's inbound listener as the
// mode needs it: what it matches and its transport socket (nil for
// plaintext). The xDS server adds the filters (and the listener's
// tls_inspector, which transport_protocol matching needs).
type InboundChain struct {
	Match           *listener.FilterChainMatch
	TransportSocket *core.TransportSocket
}

// InboundChains gives the inbound chains of a workload running as self on
// a port under mode: an mTLS chain, plus under PERMISSIVE a plaintext one.
// Under STRICT, a plaintext connection matches no chain and Envoy closes
// it.
func InboundChains(mode v1alpha1.MTLSMode, self spiffeid.ID) ([]InboundChain, error) {
	ts, err := sds.DownstreamTLS(self)
	if err != nil {
		return nil, err
	}
	out := []InboundChain{{Match: &listener.FilterChainMatch{TransportProtocol: "tls"}, TransportSocket: ts}}
	if mode == v1alpha1.MTLSPermissive {
		out = append(out, InboundChain{Match: &listener.FilterChainMatch{TransportProtocol: "raw_buffer"}})
	}
	return out, nil
}
