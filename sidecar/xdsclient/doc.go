// Package xdsclient is meridian-proxy's xDS client: one aggregated (ADS)
// stream to the control plane, incremental (delta) xDS preferred, falling
// back to state of the world when the server does not implement delta.
//
//	control plane ══ADS══► Client.Run ──Decoder──► accepted State ──Updates()──► data plane
//	                 ◄── ACK / NACK (error detail), subscriptions from References
//
// What it owns: the stream's life (connect, reconnect with jittered
// exponential backoff, reset once a stream delivered something), the
// protocol (versions, nonces, ACK and NACK, subscriptions), and the last
// accepted set of resources. Listeners and clusters are subscribed by
// wildcard; route configurations, load assignments and secrets by the
// names the accepted listeners and clusters reference, so the client asks
// for exactly what it needs, as Envoy does.
//
// What it must not do: interpret resources. The Decoder (package
// sidecar/xdsconfig) turns each one into an immutable value and says what it
// references; a response with any resource the decoder refuses is NACKed
// whole, with every error in the detail, and the previous resources of that
// type stay in force. When the control plane goes away the last accepted
// State keeps serving: nothing is dropped until a server says so.
//
// Delivery follows the coalescing habit of the project: Updates() is a
// one-slot channel and State() always returns the newest accepted value, so
// a slow data plane never holds the stream back.
//
// Node identity: NodeConfig builds the core.Node with the metadata keys
// xds/translate documents (mode, cluster, namespace, service_account,
// inbound_ports, listener_port) and the locality; cmd/meridian-proxy fills
// it from flags and MERIDIAN_* environment variables.
package xdsclient
