package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/lab"
)

// TestIngressGateway: a call from outside the mesh, through a cluster's
// ingress gateway (meridian-proxy in ingress mode, configured by that
// cluster's meridiand from Kubernetes discovery), is served by the
// cluster's own frontend; on-prem's ingress sends checkout, which on-prem
// does not run, to us-east-1 as the failover policy orders; and
// customer-records asked for at the US ingress is served in the EU, never
// by the stray copy in us-east-1 — residency holds through gateways.
func TestIngressGateway(t *testing.T) {
	m := theMesh(t)
	for _, tc := range []struct{ ingress, service, servedIn string }{
		{"onprem-dc1", lab.Frontend, "onprem-dc1"},
		{"eks-use1", lab.Frontend, "eks-use1"},
		{"eks-euw1", lab.Frontend, "eks-euw1"},
		{"onprem-dc1", Checkout, "eks-use1"},
		{"eks-use1", lab.CustomerRecords, "eks-euw1"},
	} {
		c := m.cluster(t, tc.ingress)
		start := time.Now()
		var calls int
		testutil.Eventually(t, 30*time.Second, func() error {
			calls++
			reply, err := lab.CallThrough(t.Context(), c.Ingress, tc.service)
			if err != nil {
				return fmt.Errorf("%s through the ingress gateway of %s: %w", tc.service, tc.ingress, err)
			}
			if h := reply.GetHops(); len(h) == 0 || h[0].GetCluster() != tc.servedIn {
				return fmt.Errorf("%s through the ingress gateway of %s: path %v, want it served in %s", tc.service, tc.ingress, h, tc.servedIn)
			}
			return nil
		})
		// Once right, it stays right: twenty calls in a row.
		for range 20 {
			reply, err := lab.CallThrough(t.Context(), c.Ingress, tc.service)
			if err != nil || reply.GetHops()[0].GetCluster() != tc.servedIn {
				t.Fatalf("%s through the ingress gateway of %s: %v %v, want it served in %s", tc.service, tc.ingress, reply.GetHops(), err, tc.servedIn)
			}
		}
		t.Logf("%-16s through the ingress of %-10s → served in %s (%d calls to settle, %v)", tc.service, tc.ingress, tc.servedIn, calls, time.Since(start).Round(time.Millisecond))
	}
}
