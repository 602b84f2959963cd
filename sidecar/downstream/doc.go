// Package downstream describes the client side of a proxied connection:
// which listener took it, in which direction, from where, to which original
// destination, and with which verified identity. The listener layer fills
// it in; the HTTP and TCP proxies read it for routing, authorization,
// metrics and logs.
package downstream
