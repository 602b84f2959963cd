// Package daemon assembles meridiand: its configuration (a YAML file and
// flags that override it), the parts every component shares, the components
// themselves, and their life from start to a clean stop.
//
//	Config ──New──► store (etcd: embedded, or external)
//	                registry (the local cluster's segment)
//	                gRPC server ◄── Workload API, health, reflection (and later xDS, ...)
//	                admin mux   ◄── /healthz /readyz /metrics /debug/registry
//	                components  ◄── workload, kube discovery, ...
//	       ──Run──► serve until the context ends (SIGTERM), then stop taking
//	                requests, stop every component and wait for it, close etcd
//
// Adding a component (xDS server, federation, trust, policy API) is one file
// here, wire_NAME.go or NAME.go, with a func(ctx, *Daemon) error that builds
// the component with its own package's New and then uses the daemon's
// fields and hooks:
//
//   - d.GRPC (register services), d.Admin (admin handlers), d.Registry,
//     d.Store, d.Metrics (a prometheus.Registerer), d.Log;
//   - d.Go(name, run) for its Run(ctx) error, started and stopped by Run;
//   - d.AddReadyCheck(name, check) for /readyz;
//   - d.OnClose(fn) for what must be released after every runner stopped;
//
// and one line in the wiring list in daemon.go. Its configuration is a
// field of Config (with a flag in flags.go when users need one), defaulted
// in DefaultConfig and checked in Config.Validate, so that a bad value is
// reported with its field and flag before anything starts.
//
// What it must not do: hold the logic of a component. Wiring files only
// translate configuration and connect parts; anything worth a test of its
// own belongs in the component's package.
//
// Departures from DESIGN.md: Kubernetes discovery is off unless asked for
// (--kube), because the lab and on-prem control planes run without
// Kubernetes and a missing kubeconfig must not stop them.
package daemon
