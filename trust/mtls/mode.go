package mtls

import (
	"slices"
	"strconv"
	"strings"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/trust/authz"
)

// DefaultMode is the mesh's mode when no PeerAuthentication says
// otherwise.
const DefaultMode = v1alpha1.MTLSStrict

// ModeFor resolves the mTLS mode of a workload's port from the
// PeerAuthentications among objs: the port-level mode of a policy selecting
// the workload, else that policy's mode, else its namespace's selector-less
// policy, else the mesh namespace's, else STRICT. When several policies
// select the workload, the first by name wins (as Istio picks the oldest;
// names are stable across clusters, creation times are not).
func ModeFor(objs []v1alpha1.Object, w authz.Workload, port uint32) v1alpha1.MTLSMode {
	var selecting, namespace, mesh []*v1alpha1.PeerAuthentication
	for _, o := range objs {
		pa, ok := o.(*v1alpha1.PeerAuthentication)
		if !ok || !authz.Applies(pa.ObjectMeta, pa.Spec.Selector, w) {
			continue
		}
		switch {
		case pa.Spec.Selector != nil:
			selecting = append(selecting, pa)
		case pa.Namespace == w.Namespace:
			namespace = append(namespace, pa)
		default:
			mesh = append(mesh, pa)
		}
	}
	for _, level := range [][]*v1alpha1.PeerAuthentication{selecting, namespace, mesh} {
		slices.SortFunc(level, func(a, b *v1alpha1.PeerAuthentication) int { return strings.Compare(a.Name, b.Name) })
		if len(level) == 0 {
			continue
		}
		pa := level[0]
		if m, ok := pa.Spec.PortLevelMTLS[strconv.Itoa(int(port))]; ok && m != "" {
			return m
		}
		if pa.Spec.Mode != "" {
			return pa.Spec.Mode
		}
	}
	return DefaultMode
}
