// Package sds builds the Envoy Secret resources (SDS) that carry workload
// identity on the same ADS stream as the rest of xDS, and the transport
// sockets that reference them. Everything here but Provider is a pure
// function, validated with the protos' ValidateAll.
//
//	secret name                    content
//	spiffe://TD/ns/NS/sa/SA        tls_certificate: the SVID chain and its key (SVIDSecret)
//	ROOTCA                         validation_context: Envoy's SPIFFE validator,
//	                               one trust bundle per trust domain (BundleSecret)
//
// DownstreamTLS (a sidecar's inbound: present the SVID, require a client
// SVID) and UpstreamTLS (outbound: present the SVID, accept only the given
// peer IDs) reference both secrets over ADS. Exact peer IDs sit in the
// transport socket's default validation context rather than in ROOTCA,
// because Envoy merges the two and a trust-domain-wide matcher in the
// secret would widen them.
//
// meridian-proxy reads the same resources: ParseSVIDSecret and
// ParseBundleSecret turn them back into go-spiffe values for its own TLS.
//
// Provider is the adapter for the xDS server (which this package does not
// import): Secrets(id) gives a proxy's two secrets from the SVID manager and
// the bundle source, Subscribe signals rotations. A tls_certificate secret
// holds a private key, so the server must know the stream's workload before
// publishing it: AttestStream reviews the service-account token the proxy
// sends in its stream metadata.
package sds
