// Package daemontest runs meridian-proxy against a real meridiand,
// in-process (package daemon, as cmd/meridiand assembles it): workloads
// registered and policies applied through meridianctl's own code, the
// proxy configured from its command-line flags. It holds only tests, kept
// apart from package sidecar's so that the daemon's dependencies (etcd,
// Kubernetes clients, federation) do not weigh on every sidecar test run.
package daemontest
