//go:build tools

// Package kubeapiserver pins the Kubernetes release whose kube-apiserver the
// tests run. It lives in its own module so that k8s.io/kubernetes and its
// replace lines never reach the main go.mod.
package kubeapiserver

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
