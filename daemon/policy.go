package daemon

import (
	"context"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/discovery/kube"
	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/policyapi"
)

// Wired by the policy API's helper (package policyapi).

// Policy configures the policy API and live drills (package policyapi).
type Policy struct {
	// DrillLeaseTTL is how long a live drill outlives the last heartbeat
	// of the meridianctl that started it. Default 10s; at least 2s.
	DrillLeaseTTL metav1.Duration `json:"drillLeaseTTL,omitempty"`
	// MaxDrillDuration bounds live drills. Default 1h.
	MaxDrillDuration metav1.Duration `json:"maxDrillDuration,omitempty"`
}

func (c *Policy) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if d := c.DrillLeaseTTL.Duration; d != 0 && (d < 2*time.Second || d > time.Hour) {
		errs = append(errs, field.Invalid(path.Child("drillLeaseTTL"), d.String(), "must be between 2s (etcd's shortest lease) and 1h"))
	}
	if d := c.MaxDrillDuration.Duration; d < 0 || (d > 0 && d < time.Second) {
		errs = append(errs, field.Invalid(path.Child("maxDrillDuration"), d.String(), "must be at least 1s"))
	}
	return errs
}

// wirePolicy serves the policy API (apply, get, delete, explain, drill)
// on the shared gRPC server, compiles the replicated store's policies and
// live drills into what the xDS server pushes, and reads policies from
// Kubernetes custom resources when Kubernetes discovery is on. /readyz
// waits for the first compiled set.
func wirePolicy(ctx context.Context, d *Daemon) error {
	store, err := policyStore(ctx, d)
	if err != nil {
		return err
	}
	d.Policies = store
	cfg := policyapi.Config{
		Cluster: d.Config.Cluster.Name, Registry: d.Registry, Policies: store, Etcd: d.Store,
		DrillLeaseTTL: d.Config.Policy.DrillLeaseTTL.Duration, MaxDrillDuration: d.Config.Policy.MaxDrillDuration.Duration,
		Logger: d.Log, Metrics: d.Metrics, Apply: d.XDS.SetCompiledPolicies,
	}
	srv, err := policyapi.New(cfg)
	if err != nil {
		return err
	}
	srv.Register(d.GRPC)
	d.PolicyAPI = srv
	d.Go("policy", srv.Run)
	d.AddReadyCheck("policies", srv.Ready)
	if d.Config.Kube.Enabled {
		rc, err := kube.LoadRESTConfig(d.Config.Kube.Kubeconfig, d.Config.Kube.Context)
		if err != nil {
			return err
		}
		kc := policyapi.KubeConfig{REST: rc, Namespace: d.Config.Kube.Namespace}
		// One replica writes what Kubernetes holds (and its status).
		d.GoLeader("policy-kube", func(ctx context.Context) error { return srv.RunKube(ctx, kc) })
	}
	return nil
}

// policyStore is the federation's replicated store; without federation,
// a store in this cluster's etcd alone, under the same keys, so that
// turning federation on later replicates what it holds.
func policyStore(ctx context.Context, d *Daemon) (policyapi.Store, error) {
	if d.Federation != nil {
		return d.Federation.Policies(), nil
	}
	replica := d.Config.Federation.Replica
	if replica == "" {
		replica, _ = os.Hostname()
	}
	s, err := policy.Open(ctx, policy.Options{
		Node: d.Config.Cluster.Name + "/" + replica, Client: d.Store.Client, Prefix: d.Store.Key("policies") + "/", Logger: d.Log,
	})
	if err != nil {
		return nil, err
	}
	d.OnClose(func() error { s.Close(); return nil })
	return s, nil
}
