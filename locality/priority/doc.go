// Package priority is Envoy's load-balancing arithmetic across priority
// levels and localities: the priority load with overprovisioning and
// panic (PriorityLoad), and a locality's weight scaled by its
// availability (LocalityWeight). Package locality uses it to explain and
// drill assignments; meridian-proxy's load balancer (sidecar/lb) uses it to
// pick hosts, so that both agree with each other and with Envoy.
//
// It is plain arithmetic over host counts: it must not import the
// registry, the policy API or anything of Kubernetes, so that the proxy
// can link it without the control plane (cmd/meridian-proxy tests its
// dependency graph).
package priority
