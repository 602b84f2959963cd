// Command meridian-proxy is Meridian's data plane: a sidecar beside a
// workload, or an ingress, egress or east-west gateway. It takes its
// configuration from meridiand over xDS; the assembly lives in package
// sidecar, and this is only the command line.
package main
