package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/meridian-mesh/meridian/registry"
)

// retryDelay is how long the batch loop waits after the registry refused a
// batch before it tries again.
const retryDelay = time.Second

// Index names on the informers' caches.
const (
	byService = "service" // EndpointSlices by "namespace/service"
	byPod     = "pod"     // EndpointSlices by the "namespace/name" of the Pods they list
	byNode    = "node"    // EndpointSlices and Pods by node name
)

// Source discovers Services and their endpoints from one Kubernetes API
// server and keeps the local cluster's registry segment up to date.
type Source struct {
	cfg    Config
	reg    *registry.Registry
	log    *slog.Logger
	m      *metrics
	client kubernetes.Interface

	ready   atomic.Pointer[chan struct{}] // of the newest run
	running atomic.Bool

	// Touched only by the Run goroutine, and rebuilt by each Run.
	q        *queue
	factory  informers.SharedInformerFactory
	synced   []cache.InformerSynced
	services corelisters.ServiceLister
	slices   cache.Indexer
	pods     cache.Indexer
	nodes    corelisters.NodeLister
	owned    map[registry.ServiceKey]ownedService
	problems map[registry.ServiceKey]string
}

// ownedService is what the source last put into the segment for one
// Service: the source only ever deletes what it put, because the segment
// is shared with the workload API.
type ownedService struct {
	service   bool
	endpoints map[registry.EndpointKey]struct{}
}

// New builds a source for reg's segment cfg.Cluster, which must exist. It
// connects nothing and starts nothing: Run does, and may again after it
// returned.
func New(cfg Config, reg *registry.Registry) (*Source, error) {
	if cfg.Cluster == "" {
		return nil, errors.New("kube: Config.Cluster is required")
	}
	if reg == nil {
		return nil, errors.New("kube: a registry is required")
	}
	if reg.View().Segment(cfg.Cluster) == nil {
		return nil, fmt.Errorf("kube: cluster %q is not in the registry (add it with SetCluster first)", cfg.Cluster)
	}
	cfg = cfg.withDefaults()
	rc := cfg.RESTConfig
	if rc == nil {
		var err error
		if rc, err = LoadRESTConfig(cfg.Kubeconfig, cfg.Context); err != nil {
			return nil, err
		}
	}
	rc = rest.CopyConfig(rc)
	rc.UserAgent = "meridiand/kube-discovery"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kube: client for %s: %w", rc.Host, err)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, reg: reg, m: m, client: client, log: cfg.Logger.With("component", "kube", "cluster", cfg.Cluster)}
	ready := make(chan struct{})
	s.ready.Store(&ready)
	return s, nil
}

// setupInformers builds the state of one run: queue, informers with their
// indexes and handlers, and empty records of what the run put.
func (s *Source) setupInformers(client kubernetes.Interface) error {
	s.q = newQueue()
	s.owned = map[registry.ServiceKey]ownedService{}
	s.problems = map[registry.ServiceKey]string{}
	s.factory = informers.NewSharedInformerFactoryWithOptions(client, s.cfg.ResyncPeriod,
		informers.WithNamespace(s.cfg.Namespace), informers.WithTransform(strip))
	svcInf := s.factory.Core().V1().Services()
	sliceInf := s.factory.Discovery().V1().EndpointSlices()
	podInf := s.factory.Core().V1().Pods()
	nodeInf := s.factory.Core().V1().Nodes()
	s.services, s.nodes = svcInf.Lister(), nodeInf.Lister()
	s.slices, s.pods = sliceInf.Informer().GetIndexer(), podInf.Informer().GetIndexer()

	if err := sliceInf.Informer().AddIndexers(cache.Indexers{byService: sliceServiceIndex, byPod: slicePodIndex, byNode: sliceNodeIndex}); err != nil {
		return fmt.Errorf("kube: index EndpointSlices: %w", err)
	}
	if err := podInf.Informer().AddIndexers(cache.Indexers{byNode: podNodeIndex}); err != nil {
		return fmt.Errorf("kube: index Pods: %w", err)
	}
	for _, h := range []struct {
		inf cache.SharedIndexInformer
		h   handler
	}{
		{svcInf.Informer(), handler{kind: "Service", refs: serviceRefs}},
		{sliceInf.Informer(), handler{kind: "EndpointSlice", refs: sliceRefs}},
		{podInf.Informer(), handler{kind: "Pod", refs: podRefs, relevant: podChanged}},
		{nodeInf.Informer(), handler{kind: "Node", refs: nodeRefs, relevant: nodeChanged}},
	} {
		h.h.q, h.h.events = s.q, s.m.events
		reg, err := h.inf.AddEventHandler(h.h)
		if err != nil {
			return fmt.Errorf("kube: %s informer: %w", h.h.kind, err)
		}
		s.synced = append(s.synced, reg.HasSynced)
	}
	return nil
}

// Run starts the informers, waits for their caches, converts every Service
// and applies the result as one batch, reports ready, then applies one
// batch per batch window of events until ctx ends. It returns nil when ctx
// ends, and stops every goroutine it started before returning.
//
// Run may be called again once it returned: meridiand runs it for each
// term its replica leads the cluster. Each run starts over — new
// informers, a full list — and takes over what the segment holds as it
// converts: values equal to the conversion are not put again.
func (s *Source) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("kube: Run is already running")
	}
	defer s.running.Store(false)
	if s.HasSynced() {
		ready := make(chan struct{})
		s.ready.Store(&ready)
	}
	if err := s.setupInformers(s.client); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer s.factory.Shutdown() // after cancel: waits for the informers to stop
	defer cancel()
	s.factory.Start(ctx.Done())
	s.log.Info("waiting for informer caches", "namespace", s.cfg.Namespace)
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return nil
	}
	// The first batch converts everything, whatever events came before,
	// and everything the segment holds that is not another source's.
	s.adopt()
	s.q.addAll()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.q.wake:
		}
		if s.cfg.BatchWindow > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(s.cfg.BatchWindow):
			}
		}
		refs, all, first := s.q.take()
		keys := s.resolve(refs, all)
		if err := s.applyBatch(keys, first); err != nil {
			s.m.errors.Inc()
			s.log.Error("registry refused a batch; retrying", "services", len(keys), "err", err)
			for k := range keys {
				s.q.add(ref{kindService, k.Namespace, k.Name})
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(retryDelay):
			}
			continue
		}
		if !s.HasSynced() {
			close(*s.ready.Load())
			seg := s.reg.View().Segment(s.cfg.Cluster)
			s.log.Info("synced", "services", len(s.owned), "segment_endpoints", seg.EndpointCount())
		}
	}
}

// adopt takes what the segment holds and is not another source's
// (Config.Foreign) as put by this source: a previous run, or a previous
// leader, put it. The first batch then converts those Services too and
// removes what Kubernetes no longer has. A Service definition is taken
// only when none of its endpoints is another source's.
func (s *Source) adopt() {
	seg := s.reg.View().Segment(s.cfg.Cluster)
	if seg == nil {
		return
	}
	foreign := map[registry.ServiceKey]bool{}
	seg.EachEndpoint(func(e *registry.Endpoint) bool {
		if s.cfg.Foreign(e) {
			foreign[e.Service] = true
			return true
		}
		o := s.owned[e.Service]
		if o.endpoints == nil {
			o.endpoints = map[registry.EndpointKey]struct{}{}
		}
		o.endpoints[e.Key()] = struct{}{}
		s.owned[e.Service] = o
		return true
	})
	seg.EachService(func(sv *registry.Service) bool {
		if k := sv.Key(); !foreign[k] {
			o := s.owned[k]
			o.service = true
			s.owned[k] = o
		}
		return true
	})
}

// Ready is closed once the first full conversion of the newest run is in
// the registry.
func (s *Source) Ready() <-chan struct{} { return *s.ready.Load() }

// HasSynced reports whether the first full conversion is in the registry,
// for the daemon's /readyz.
func (s *Source) HasSynced() bool {
	select {
	case <-s.Ready():
		return true
	default:
		return false
	}
}

// resolve turns queued refs into the Services to convert again.
func (s *Source) resolve(refs map[ref]struct{}, all bool) map[registry.ServiceKey]struct{} {
	keys := map[registry.ServiceKey]struct{}{}
	if all {
		svcs, _ := s.services.List(labels.Everything()) // the cache's List does not fail
		for _, svc := range svcs {
			keys[registry.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}] = struct{}{}
		}
		for k := range s.owned {
			keys[k] = struct{}{}
		}
	}
	for r := range refs {
		switch r.kind {
		case kindService:
			keys[registry.ServiceKey{Namespace: r.namespace, Name: r.name}] = struct{}{}
		case kindPod:
			s.slicesServices(keys, byPod, r.namespace+"/"+r.name)
		case kindNode:
			s.slicesServices(keys, byNode, r.name)
			// Slices that do not name the node reach it through their Pods.
			pods, _ := s.pods.ByIndex(byNode, r.name)
			for _, p := range pods {
				p := p.(*corev1.Pod)
				s.slicesServices(keys, byPod, p.Namespace+"/"+p.Name)
			}
		}
	}
	return keys
}

// slicesServices adds the Services of the slices under one index value.
func (s *Source) slicesServices(keys map[registry.ServiceKey]struct{}, index, value string) {
	objs, _ := s.slices.ByIndex(index, value) // the index exists: no error
	for _, o := range objs {
		for _, r := range sliceRefs(o) {
			keys[registry.ServiceKey{Namespace: r.namespace, Name: r.name}] = struct{}{}
		}
	}
}

// applyBatch converts the given Services from the caches and applies the
// difference to the segment as one registry batch.
func (s *Source) applyBatch(keys map[registry.ServiceKey]struct{}, first time.Time) error {
	start := time.Now()
	seg := s.reg.View().Segment(s.cfg.Cluster)
	if seg == nil {
		return fmt.Errorf("kube: %w %q", registry.ErrUnknownCluster, s.cfg.Cluster)
	}
	t := target{Cluster: s.cfg.Cluster, Region: seg.Cluster().Region}
	var changes []registry.Change
	next := make(map[registry.ServiceKey]ownedService, len(keys))
	for k := range keys {
		conv, errs := convert(t, s.input(k))
		s.report(k, errs)
		changes = append(changes, diffService(seg, k, s.owned[k], conv)...)
		next[k] = owns(conv)
	}
	if len(changes) > 0 {
		if _, err := s.reg.Apply(s.cfg.Cluster, changes...); err != nil {
			return fmt.Errorf("kube: apply %d changes: %w", len(changes), err)
		}
		s.m.batches.Inc()
		s.m.batchSize.Observe(float64(len(changes)))
	}
	for k, o := range next {
		if o.service || len(o.endpoints) > 0 {
			s.owned[k] = o
		} else {
			delete(s.owned, k)
		}
	}
	s.m.applyTime.Observe(time.Since(start).Seconds())
	if !first.IsZero() {
		s.m.batchDelay.Observe(time.Since(first).Seconds())
	}
	if len(changes) > 0 {
		s.log.Debug("applied batch", "services", len(keys), "changes", len(changes))
	}
	return nil
}

// input reads one Service's objects from the caches.
func (s *Source) input(k registry.ServiceKey) serviceInput {
	in := serviceInput{
		Pod: func(ns, name string) *corev1.Pod {
			o, ok, _ := s.pods.GetByKey(ns + "/" + name)
			if !ok {
				return nil
			}
			return o.(*corev1.Pod)
		},
		Node: func(name string) *corev1.Node {
			n, _ := s.nodes.Get(name)
			return n
		},
	}
	in.Service, _ = s.services.Services(k.Namespace).Get(k.Name)
	objs, _ := s.slices.ByIndex(byService, k.Namespace+"/"+k.Name)
	for _, o := range objs {
		in.Slices = append(in.Slices, o.(*discoveryv1.EndpointSlice))
	}
	return in
}

// report logs what a Service's conversion left out, once per distinct set
// of problems, and counts every problem on every conversion.
func (s *Source) report(k registry.ServiceKey, errs field.ErrorList) {
	s.m.rejected.Add(float64(len(errs)))
	msg := ""
	if len(errs) > 0 {
		msg = errs.ToAggregate().Error()
	}
	if msg == s.problems[k] {
		return
	}
	if msg == "" {
		delete(s.problems, k)
		s.log.Info("service converts cleanly again", "service", k.String())
		return
	}
	s.problems[k] = msg
	s.log.Warn("left parts of a service out of the registry", "service", k.String(), "problems", msg)
}

// diffService returns the changes that make the segment hold conv for one
// Service, given what the source put there before: puts of what differs,
// deletes of what it put and no longer wants. Values already equal in the
// segment are not sent again, so a relist after an API server restart
// changes only what really changed.
func diffService(seg *registry.Segment, k registry.ServiceKey, prev ownedService, conv converted) []registry.Change {
	var out []registry.Change
	if conv.Service != nil {
		if cur, ok := seg.Service(k); !ok || !cur.Equal(conv.Service) {
			out = append(out, registry.PutService(conv.Service))
		}
	} else if _, ok := seg.Service(k); ok && prev.service {
		out = append(out, registry.DeleteService(k))
	}
	want := make(map[registry.EndpointKey]struct{}, len(conv.Endpoints))
	for _, e := range conv.Endpoints {
		want[e.Key()] = struct{}{}
		if cur, ok := seg.Endpoint(e.Key()); !ok || !cur.Equal(e) {
			out = append(out, registry.PutEndpoint(e))
		}
	}
	for ek := range prev.endpoints {
		if _, keep := want[ek]; keep {
			continue
		}
		if _, ok := seg.Endpoint(ek); ok {
			out = append(out, registry.DeleteEndpoint(ek))
		}
	}
	return out
}

func owns(conv converted) ownedService {
	o := ownedService{service: conv.Service != nil, endpoints: make(map[registry.EndpointKey]struct{}, len(conv.Endpoints))}
	for _, e := range conv.Endpoints {
		o.endpoints[e.Key()] = struct{}{}
	}
	return o
}

// strip keeps only what conversion reads from Pods and Nodes, which are the
// bulk of a large cluster's objects, and drops managed fields from the
// rest: the caches hold every object for the life of the process.
func strip(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion, Labels: o.Labels},
			Spec:       corev1.PodSpec{ServiceAccountName: o.Spec.ServiceAccountName, NodeName: o.Spec.NodeName},
		}, nil
	case *corev1.Node:
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: o.Name, UID: o.UID, ResourceVersion: o.ResourceVersion, Labels: o.Labels}}, nil
	case metav1.Object:
		o.SetManagedFields(nil)
	}
	return obj, nil
}

func sliceServiceIndex(obj any) ([]string, error) {
	var out []string
	for _, r := range sliceRefs(obj) {
		out = append(out, r.namespace+"/"+r.name)
	}
	return out, nil
}

func slicePodIndex(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	var out []string
	for _, ep := range s.Endpoints {
		if r := ep.TargetRef; r != nil && r.Kind == "Pod" && r.Name != "" {
			out = append(out, s.Namespace+"/"+r.Name)
		}
	}
	return out, nil
}

func sliceNodeIndex(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	var out []string
	for _, ep := range s.Endpoints {
		if ep.NodeName != nil && *ep.NodeName != "" {
			out = append(out, *ep.NodeName)
		}
	}
	return out, nil
}

func podNodeIndex(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.NodeName == "" {
		return nil, nil
	}
	return []string{p.Spec.NodeName}, nil
}
