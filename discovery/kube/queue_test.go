package kube

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func newHandler(kind string, refs func(any) []ref, relevant func(old, new any) bool) (handler, *queue) {
	q := newQueue()
	m, _ := newMetrics(nil)
	return handler{kind: kind, q: q, events: m.events, refs: refs, relevant: relevant}, q
}

func takeRefs(q *queue) (map[ref]struct{}, bool) {
	refs, all, _ := q.take()
	return refs, all
}

func TestHandlerTombstones(t *testing.T) {
	h, q := newHandler("EndpointSlice", sliceRefs, nil)
	sl := slice("web-a", discoveryv1.AddressTypeIPv4, nil)

	// A tombstone carries the last known object: its Service is queued.
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "shop/web-a", Obj: sl})
	refs, all := takeRefs(q)
	if _, ok := refs[ref{kindService, "shop", "web"}]; !ok || all || len(refs) != 1 {
		t.Fatalf("tombstone queued %v (all=%v), want shop/web", refs, all)
	}
	// One without it cannot say which Service it touched: everything.
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "shop/web-a"})
	if _, all := takeRefs(q); !all {
		t.Fatal("tombstone without an object did not ask for a full conversion")
	}
	h.OnDelete(sl)
	if got := promtest.ToFloat64(h.events.WithLabelValues("EndpointSlice", "tombstone")); got != 2 {
		t.Fatalf("tombstones counted %v, want 2", got)
	}
	if got := promtest.ToFloat64(h.events.WithLabelValues("EndpointSlice", "delete")); got != 1 {
		t.Fatalf("deletes counted %v, want 1", got)
	}
}

func TestHandlerSliceMovesService(t *testing.T) {
	h, q := newHandler("EndpointSlice", sliceRefs, nil)
	old := slice("web-a", discoveryv1.AddressTypeIPv4, nil)
	moved := old.DeepCopy()
	moved.Labels[discoveryv1.LabelServiceName] = "api"
	h.OnUpdate(old, moved)
	refs, _ := takeRefs(q)
	if len(refs) != 2 {
		t.Fatalf("queued %v, want both the old and the new Service", refs)
	}
}

func TestHandlerFiltersIrrelevantUpdates(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", Labels: map[string]string{"version": "v1"}}}
	status := pod.DeepCopy()
	status.Status.Phase = corev1.PodRunning
	relabelled := pod.DeepCopy()
	relabelled.Labels["version"] = "v2"
	h, q := newHandler("Pod", podRefs, podChanged)
	h.OnUpdate(pod, status)
	if refs, _ := takeRefs(q); len(refs) != 0 {
		t.Fatalf("a status update queued %v", refs)
	}
	h.OnUpdate(pod, relabelled)
	if refs, _ := takeRefs(q); len(refs) != 1 {
		t.Fatalf("a label change queued %v, want the pod", refs)
	}

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{LabelZone: "a", "other": "x"}}}
	other := node.DeepCopy()
	other.Labels["other"] = "y"
	moved := node.DeepCopy()
	moved.Labels[LabelZone] = "b"
	if nodeChanged(node, other) || !nodeChanged(node, moved) {
		t.Fatal("nodeChanged must follow topology labels only")
	}
}

func TestMetricsRegister(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if _, err := newMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := newMetrics(reg); err == nil {
		t.Fatal("registering twice must fail, not panic")
	}
}
