package trust

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// WorkloadID returns spiffe://TD/ns/NAMESPACE/sa/SERVICEACCOUNT, the
// identity of every workload in the mesh.
func WorkloadID(td spiffeid.TrustDomain, namespace, serviceAccount string) (spiffeid.ID, error) {
	id, err := spiffeid.FromSegments(td, "ns", namespace, "sa", serviceAccount)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("trust: workload id for %s/%s: %w", namespace, serviceAccount, err)
	}
	return id, nil
}

// ClusterID returns spiffe://TD/meridian/cluster/NAME: the identity of a
// cluster's control plane. It is the URI SAN of the cluster's intermediate CA
// and of the certificate meridiand presents to other members.
func ClusterID(td spiffeid.TrustDomain, cluster string) (spiffeid.ID, error) {
	id, err := spiffeid.FromSegments(td, "meridian", "cluster", cluster)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("trust: cluster id for %q: %w", cluster, err)
	}
	return id, nil
}

// ParseWorkloadID returns the namespace and service account of a workload
// ID, and false for any other shape of ID.
func ParseWorkloadID(id spiffeid.ID) (namespace, serviceAccount string, ok bool) {
	seg := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(seg) != 4 || seg[0] != "ns" || seg[2] != "sa" || seg[1] == "" || seg[3] == "" {
		return "", "", false
	}
	return seg[1], seg[3], true
}

// ParseClusterID returns the cluster name of a cluster ID, and false for any
// other shape of ID.
func ParseClusterID(id spiffeid.ID) (cluster string, ok bool) {
	seg := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(seg) != 3 || seg[0] != "meridian" || seg[1] != "cluster" || seg[2] == "" {
		return "", false
	}
	return seg[2], true
}
