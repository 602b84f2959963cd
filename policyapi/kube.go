package policyapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/federation/policy"
)

// KubeConfig selects the Kubernetes API server whose Meridian custom
// resources are policies.
type KubeConfig struct {
	REST *rest.Config
	// Namespace limits the source to one namespace; empty reads all.
	Namespace string
	// RetryInterval is how often to look again for the CRDs while they are
	// not installed. Default 30s.
	RetryInterval time.Duration
}

// lastApplied is kubectl's annotation holding the whole object again: not
// worth replicating.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// RunKube reads the custom resources of every kind (deploy/crds) with a
// dynamic informer and writes them into the policy store as policies of
// source "kubernetes/CLUSTER", until ctx ends: each object is validated
// alone as an applied one is (an invalid one is logged, counted and not
// written; the last valid version stays in force); set-level problems are
// logged but not refused, since the API server already accepted the
// object. A deleted resource deletes its policy, and after each start the
// policies this cluster's Kubernetes wrote that no longer exist there are
// deleted. Until the CRDs are installed, it waits for them.
func (s *Server) RunKube(ctx context.Context, kc KubeConfig) error {
	if kc.RetryInterval <= 0 {
		kc.RetryInterval = 30 * time.Second
	}
	dyn, err := dynamic.NewForConfig(kc.REST)
	if err != nil {
		return fmt.Errorf("policyapi: kube: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(kc.REST)
	if err != nil {
		return fmt.Errorf("policyapi: kube: %w", err)
	}
	kinds := s.servedKinds(ctx, disc, kc.RetryInterval)
	if len(kinds) == 0 {
		return nil // ctx ended
	}
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, kc.Namespace, nil)
	defer factory.Shutdown()
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[policy.Key]())
	defer q.ShutDown()
	indexers := map[string]cache.Indexer{}
	var synced []cache.InformerSynced
	for _, k := range kinds {
		inf := factory.ForResource(v1alpha1.GroupVersion.WithResource(k.Plural)).Informer()
		enqueue := func(obj any) {
			if u, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = u.Obj
			}
			if m, ok := obj.(*unstructured.Unstructured); ok {
				q.Add(policy.Key{Kind: k.Name, Namespace: m.GetNamespace(), Name: m.GetName()})
			}
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: enqueue, UpdateFunc: func(_, n any) { enqueue(n) }, DeleteFunc: enqueue,
		}); err != nil {
			return fmt.Errorf("policyapi: kube: %w", err)
		}
		indexers[k.Name] = inf.GetIndexer()
		synced = append(synced, inf.HasSynced)
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil
	}
	// Policies written from here that Kubernetes no longer has.
	for _, r := range s.sourcedFrom(s.kubeSource()) {
		if _, ok := indexers[r.Kind]; ok {
			q.Add(r.Key)
		}
	}
	s.kubeSynced.Store(true)
	s.log.Info("reading policies from Kubernetes", "kinds", len(kinds), "namespace", kc.Namespace)
	go func() { <-ctx.Done(); q.ShutDown() }()
	for {
		k, shutdown := q.Get()
		if shutdown {
			return nil
		}
		if err := s.syncKube(ctx, k, indexers[k.Kind]); err != nil && ctx.Err() == nil {
			s.log.Warn("policy from Kubernetes not written yet; retrying", "object", k.String(), "err", err)
			q.AddRateLimited(k)
		} else {
			q.Forget(k)
		}
		q.Done(k)
	}
}

// KubeSynced reports an error until RunKube has read every kind once.
func (s *Server) KubeSynced(context.Context) error {
	if !s.kubeSynced.Load() {
		return errors.New("policies not read from Kubernetes yet (are the CRDs installed?)")
	}
	return nil
}

func (s *Server) kubeSource() string { return sourceKubePrefix + s.cfg.Cluster }

// servedKinds waits until the API server serves the group and returns
// the kinds it serves; nil if ctx ends first.
func (s *Server) servedKinds(ctx context.Context, disc discovery.DiscoveryInterface, retry time.Duration) []v1alpha1.Kind {
	logged := false
	for {
		list, err := disc.ServerResourcesForGroupVersion(v1alpha1.APIVersion)
		if err == nil {
			var out []v1alpha1.Kind
			var missing []string
			for _, k := range v1alpha1.Kinds() {
				if slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == k.Plural }) {
					out = append(out, k)
				} else {
					missing = append(missing, k.Plural)
				}
			}
			if len(missing) > 0 {
				s.log.Warn("some Meridian CRDs are not installed: those kinds are read from the policy API only", "missing", missing)
			}
			if len(out) > 0 {
				return out
			}
		}
		if !logged {
			logged = true
			if err != nil && !apierrors.IsNotFound(err) {
				s.log.Warn("cannot list Meridian's CRDs; retrying", "err", err, "every", retry)
			} else {
				s.log.Warn("Meridian's CRDs are not installed: Kubernetes policies are ignored until they are (deploy/crds)", "every", retry)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retry):
		}
	}
}

// sourcedFrom lists the store's policies written by one source.
func (s *Server) sourcedFrom(source string) []*policy.Resource {
	var out []*policy.Resource
	snap := s.cfg.Policies.Snapshot()
	for _, k := range v1alpha1.Kinds() {
		for _, r := range snap.List(k.Name) {
			if _, src, err := Decode(r); err == nil && src == source {
				out = append(out, r)
			}
		}
	}
	return out
}

// syncKube makes the store agree with Kubernetes about one object.
func (s *Server) syncKube(ctx context.Context, k policy.Key, idx cache.Indexer) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	snap := s.cfg.Policies.Snapshot()
	obj, exists, err := idx.GetByKey(k.Namespace + "/" + k.Name)
	if err != nil {
		return err
	}
	if !exists {
		r, ok := snap.Get(k)
		if !ok {
			return nil
		}
		if _, src, err := Decode(r); err != nil || src != s.kubeSource() {
			return nil // written through the API since: not Kubernetes' to delete
		}
		if _, err := s.cfg.Policies.Delete(ctx, k); err != nil && !errors.Is(err, policy.ErrNotFound) {
			return err
		}
		s.m.kube.WithLabelValues("deleted").Inc()
		s.log.Info("policy deleted from Kubernetes", "object", k.String())
		return nil
	}
	b, err := obj.(*unstructured.Unstructured).MarshalJSON()
	if err != nil {
		return err
	}
	objs, err := v1alpha1.Load(b, v1alpha1.LoadOptions{})
	if err != nil {
		s.m.kube.WithLabelValues("invalid").Inc()
		s.log.Warn("custom resource not applied: it is invalid (the last valid version stays in force)", "object", k.String(), "err", err)
		return nil
	}
	o := objs[0]
	if a := o.GetAnnotations(); a[lastApplied] != "" {
		delete(a, lastApplied)
		o.SetAnnotations(a)
	}
	key, val, err := Encode(o, s.kubeSource())
	if err != nil {
		return err
	}
	if old, ok := snap.Get(key); ok && bytes.Equal(old.Spec, val) {
		return nil
	}
	current, _ := s.dec.objects(snap)
	errs, _ := admission{view: s.cfg.Registry.View(), current: current, put: []v1alpha1.Object{o}}.check()
	for _, e := range errs {
		s.log.Warn("policy from Kubernetes applied despite a problem with the policy set", "object", k.String(), "problem", e.Field+": "+e.Description)
	}
	if _, err := s.cfg.Policies.Put(ctx, key, val); err != nil {
		return err
	}
	s.m.kube.WithLabelValues("written").Inc()
	s.log.Info("policy written from Kubernetes", "object", k.String())
	return nil
}
