package kube

import (
	"maps"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// kind is what a queued ref names. EndpointSlice events queue the Service
// they belong to; Pod and Node refs are resolved to Services by the batch
// loop, through the informers' indexes.
type kind uint8

const (
	kindService kind = iota
	kindPod
	kindNode
)

type ref struct {
	kind            kind
	namespace, name string
}

// queue collects what informer events touched until the batch loop takes
// it. Adding never blocks: the set absorbs repeats, and the one-slot wake
// channel coalesces signals. Memory is bounded by the number of objects,
// not by the rate of events.
type queue struct {
	mu    sync.Mutex
	refs  map[ref]struct{}
	all   bool      // convert every Service: first sync, unknown tombstones
	first time.Time // when the oldest untaken entry arrived
	wake  chan struct{}
}

func newQueue() *queue {
	return &queue{refs: map[ref]struct{}{}, wake: make(chan struct{}, 1)}
}

func (q *queue) add(refs ...ref) {
	if len(refs) == 0 {
		return
	}
	q.mu.Lock()
	for _, r := range refs {
		q.refs[r] = struct{}{}
	}
	q.signal()
	q.mu.Unlock()
}

// addAll asks for every Service to be converted again.
func (q *queue) addAll() {
	q.mu.Lock()
	q.all = true
	q.signal()
	q.mu.Unlock()
}

// signal wakes the batch loop; callers hold q.mu.
func (q *queue) signal() {
	if q.first.IsZero() {
		q.first = time.Now()
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take empties the queue and returns what it held.
func (q *queue) take() (refs map[ref]struct{}, all bool, first time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	refs, all, first = q.refs, q.all, q.first
	q.refs, q.all, q.first = make(map[ref]struct{}, len(refs)), false, time.Time{}
	return refs, all, first
}

// handler turns one informer's events into queued refs and counts them. Its
// methods run on the informer's goroutine and only enqueue.
type handler struct {
	kind   string
	q      *queue
	events *prometheus.CounterVec
	// refs returns what an object touches; nil for an unexpected type.
	refs func(obj any) []ref
	// relevant says whether an update matters; nil: every update does.
	relevant func(old, new any) bool
}

func (h handler) OnAdd(obj any, _ bool) {
	h.events.WithLabelValues(h.kind, "add").Inc()
	h.q.add(h.refs(obj)...)
}

func (h handler) OnUpdate(old, new any) {
	h.events.WithLabelValues(h.kind, "update").Inc()
	if h.relevant != nil && !h.relevant(old, new) {
		return
	}
	// Both: an EndpointSlice may have moved to another Service.
	h.q.add(append(h.refs(old), h.refs(new)...)...)
}

// OnDelete handles deletes seen on the watch and tombstones: objects the
// informer found missing when it listed again (after a watch gap, such as
// an API server restart). A tombstone holds the last state the informer
// knew; one without it leaves no way to tell which Service it touched, so
// everything is converted again.
func (h handler) OnDelete(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		h.events.WithLabelValues(h.kind, "tombstone").Inc()
		if tomb.Obj == nil {
			h.q.addAll()
			return
		}
		obj = tomb.Obj
	} else {
		h.events.WithLabelValues(h.kind, "delete").Inc()
	}
	h.q.add(h.refs(obj)...)
}

func serviceRefs(obj any) []ref {
	s, ok := obj.(*corev1.Service)
	if !ok {
		return nil
	}
	return []ref{{kindService, s.Namespace, s.Name}}
}

func sliceRefs(obj any) []ref {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || s.Labels[discoveryv1.LabelServiceName] == "" {
		return nil
	}
	return []ref{{kindService, s.Namespace, s.Labels[discoveryv1.LabelServiceName]}}
}

func podRefs(obj any) []ref {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return nil
	}
	return []ref{{kindPod, p.Namespace, p.Name}}
}

func nodeRefs(obj any) []ref {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return nil
	}
	return []ref{{kind: kindNode, name: n.Name}}
}

// podChanged: only what endpoints carry from a Pod matters; Pods update
// their status often, and readiness reaches Meridian through the slices.
func podChanged(old, new any) bool {
	o, ok1 := old.(*corev1.Pod)
	n, ok2 := new.(*corev1.Pod)
	return !ok1 || !ok2 || o.Spec.ServiceAccountName != n.Spec.ServiceAccountName ||
		o.Spec.NodeName != n.Spec.NodeName || !maps.Equal(o.Labels, n.Labels)
}

// nodeChanged: Nodes update their status every few seconds; only the
// topology labels matter here.
func nodeChanged(old, new any) bool {
	o, ok1 := old.(*corev1.Node)
	n, ok2 := new.(*corev1.Node)
	if !ok1 || !ok2 {
		return true
	}
	for _, l := range []string{LabelRegion, LabelZone, LabelSubzone, LabelIstioSubzone} {
		if o.Labels[l] != n.Labels[l] {
			return true
		}
	}
	return false
}
