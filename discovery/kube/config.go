package kube

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meridian-mesh/meridian/registry"
)

// Defaults for Config's durations.
const (
	// DefaultResyncPeriod is how often the informers replay their caches,
	// after which every Service is converted again and only differences
	// are applied: a safety net, not a source of changes.
	DefaultResyncPeriod = 10 * time.Minute
	// DefaultBatchWindow is how long events are collected before one batch
	// is applied. It is short because it only has to gather the few events
	// one change raises (a slice, its Pods); the xDS server coalesces the
	// bursts that follow a push over its own 100ms window, so a rollout
	// that touches many slices still becomes a few pushes. At 100ms (Istio's
	// debounce) this window alone was half the Kubernetes path's p99
	// budget of 250ms (bench/xds.sh measures both).
	DefaultBatchWindow = 20 * time.Millisecond
)

// Config configures a Source. Cluster is required; everything else has a
// default.
type Config struct {
	// Cluster is the registry segment the source feeds: the local
	// cluster's name. The caller adds it (Registry.SetCluster) before New;
	// its region is the locality of endpoints whose Node has no region
	// label.
	Cluster string

	// Kubeconfig and Context select the API server as kubectl does: an
	// explicit file, else $KUBECONFIG, else ~/.kube/config, else the
	// in-cluster configuration when running in a pod; Context overrides
	// the file's current context. Ignored when RESTConfig is set.
	Kubeconfig string
	Context    string
	// RESTConfig, when set, is used as is (tests, embedding programs).
	RESTConfig *rest.Config

	// Namespace limits discovery to one namespace; empty watches all.
	Namespace string
	// ResyncPeriod: zero means DefaultResyncPeriod, negative disables
	// resyncs.
	ResyncPeriod time.Duration
	// BatchWindow: zero means DefaultBatchWindow, negative applies each
	// batch as soon as events arrive (still one batch for everything that
	// arrived meanwhile).
	BatchWindow time.Duration

	// Foreign reports whether an endpoint of the segment belongs to
	// another source (meridiand: the Workload API's). Each run starts by
	// taking every other endpoint of the segment as its own — what a
	// previous run, or a previous leader's, put there — so that what
	// Kubernetes no longer has is removed. Nil: the source is the
	// segment's only writer.
	Foreign func(*registry.Endpoint) bool

	// Logger gets a "component=kube" attribute; nil means slog.Default().
	Logger *slog.Logger
	// Metrics registers the source's metrics; nil registers none.
	Metrics prometheus.Registerer
}

func (c Config) withDefaults() Config {
	switch {
	case c.ResyncPeriod == 0:
		c.ResyncPeriod = DefaultResyncPeriod
	case c.ResyncPeriod < 0:
		c.ResyncPeriod = 0 // informers: no resync
	}
	switch {
	case c.BatchWindow == 0:
		c.BatchWindow = DefaultBatchWindow
	case c.BatchWindow < 0:
		c.BatchWindow = 0
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Foreign == nil {
		c.Foreign = func(*registry.Endpoint) bool { return false }
	}
	return c
}

// LoadRESTConfig builds a client configuration the way kubectl does: the
// explicit kubeconfig path if given, else the files in $KUBECONFIG, else
// ~/.kube/config, else the in-cluster service account when running in a
// pod. context overrides the current context.
func LoadRESTConfig(kubeconfig, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kube: load client configuration (kubeconfig %q, context %q): %w", kubeconfig, context, err)
	}
	return cfg, nil
}

// PolicyRules are the permissions the source needs, for a ClusterRole bound
// to meridiand's service account: it only lists and watches.
func PolicyRules() []rbacv1.PolicyRule {
	lw := []string{"list", "watch"}
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "pods", "nodes"}, Verbs: lw},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: lw},
	}
}
