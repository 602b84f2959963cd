// Package kubetest runs a real kube-apiserver for tests: the binary that
// scripts/kube-apiserver.sh builds from the k8s.io/kubernetes module and
// caches, on a free loopback port, against an embedded etcd (store.Open)
// that the harness owns.
//
// Each server gets a throwaway CA that signs its serving certificate and
// every client certificate; the same CA is the server's client CA, so
// RESTConfigAs mints credentials for any user and groups at any time and
// RBAC (the only authorizer) applies to them. The admin user is in
// system:masters. A service-account signing key is generated too, so the
// server runs as a real cluster's would. Kubeconfig writes the admin
// credentials in the form kubectl reads.
//
// Start gives a test its own server (needed to Restart it, or to Halt it
// and change etcd behind its back); Shared gives every test of a package one
// server, stopped by Main from TestMain. Both wait for /readyz through the
// client before returning and write the server's output to a file whose
// tail is printed when a test fails.
//
// Start-up is kept short (about 3.5s here): admission is cut to
// NamespaceLifecycle, priority-and-fairness, profiling and the endpoint
// reconciler are off. No controller runs: tests create what controllers
// would (EndpointSlices, service accounts) themselves.
//
// Tests never skip on their own. Only MERIDIAN_SKIP_KUBE=1 skips them, with
// a message saying so; a missing binary is built, and a failed build fails
// the test.
//
// The package is for tests only and must not be imported by production
// code.
package kubetest
