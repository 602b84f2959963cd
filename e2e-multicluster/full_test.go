package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/lab"
	"github.com/meridian-mesh/meridian/policyapi/policyapipb"
)

// TestZoneFailover: users in us-east-1's first zone call inventory, which
// runs in both zones; when the first zone's inventory turns not ready, the
// second zone serves — same region, nothing leaves it — and when it is
// ready again, traffic comes back.
func TestZoneFailover(t *testing.T) {
	fullOnly(t)
	m := theMesh(t)
	use1 := m.cluster(t, "eks-use1")
	kc := m.kube[use1.Name].Clientset()
	z0, z1 := use1.Zones[0], use1.Zones[1]
	g := m.users(t, use1.Name, z0, 100, lab.Inventory)
	waitServed(t, g, lab.Inventory, use1.Name, 30*time.Second)
	moved(t, g, lab.Inventory, time.Now().Add(-time.Second), servedBy(use1.Name, z0))
	for _, step := range []struct {
		ready bool
		zone  string
	}{{false, z1}, {true, z0}} {
		at := time.Now()
		if err := setReady(t.Context(), kc, lab.Inventory, []string{z0}, step.ready); err != nil {
			t.Fatal(err)
		}
		took := moved(t, g, lab.Inventory, at, servedBy(use1.Name, step.zone))
		r, _ := g.Between(at, time.Now()).Target(lab.Inventory)
		if out := servedOutside(r, use1.Name); out > 0 {
			t.Errorf("%d inventory calls left us-east-1 during a zone failover", out)
		}
		t.Logf("inventory in %s ready=%t: all traffic of users in %s in zone %s %v later; calls meanwhile %s", z0, step.ready, z0, step.zone, took, r.Summary())
	}
}

// policyNames lists the names of the policies a cluster's policy API
// holds.
func policyNames(ctx context.Context, c *lab.ClusterState) ([]string, error) {
	conn, err := grpc.NewClient(c.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := policyapipb.NewPolicyServiceClient(conn).List(ctx, &policyapipb.ListRequest{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range resp.GetObjects() {
		md, _ := o.GetManifest().AsMap()["metadata"].(map[string]any)
		name, _ := md["name"].(string)
		out = append(out, name)
	}
	slices.Sort(out)
	return out, nil
}

// destinationPolicy is a harmless policy of its own for one host.
func destinationPolicy(name, host string) string {
	return `apiVersion: meridian.io/v1alpha1
kind: DestinationPolicy
metadata:
  name: ` + name + `
  namespace: shop
spec:
  host: ` + host + `
  connectionPool:
    connectTimeout: 2s
`
}

// TestPartitionHeal partitions eu-west-1 from the other clusters (the
// host still reaches everyone), writes a policy on each side, heals, and
// checks every cluster ends with both: no policy lost.
func TestPartitionHeal(t *testing.T) {
	fullOnly(t)
	m := theMesh(t)
	if err := m.lab.State.Partition(t.Context(), "eks-euw1"); err != nil {
		t.Fatal(err)
	}
	healed := false
	heal := func() {
		if !healed {
			healed = true
			if err := m.lab.State.Unpartition(context.Background(), "eks-euw1"); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(heal)
	t.Cleanup(func() {
		// Leave the mesh as the other scenarios expect it, everywhere.
		if err := deletePolicies(m, "partition-side-a", "partition-side-b"); err != nil {
			t.Error(err)
		}
		for i := range m.lab.State.Clusters {
			c := &m.lab.State.Clusters[i]
			testutil.Eventually(t, 30*time.Second, func() error {
				names, err := policyNames(context.Background(), c)
				if err == nil && (slices.Contains(names, "partition-side-a") || slices.Contains(names, "partition-side-b")) {
					err = fmt.Errorf("%s still holds %v", c.Name, names)
				}
				return err
			})
		}
	})
	// Both sides declare the other dead before anything is written.
	partitioned := time.Now()
	for _, side := range []struct{ observer, other string }{{"onprem-dc1", "eks-euw1"}, {"eks-euw1", "onprem-dc1"}} {
		testutil.Eventually(t, 60*time.Second, func() error {
			d, err := m.cluster(t, side.observer).Registry(t.Context())
			if err != nil {
				return err
			}
			for _, c := range d.Clusters {
				if c.Name == side.other && c.Status.State != "dead" {
					return fmt.Errorf("%s sees %s %s", side.observer, side.other, c.Status.State)
				}
			}
			return nil
		})
	}
	t.Logf("partition: both sides declared the other dead %v after it began", time.Since(partitioned).Round(10*time.Millisecond))
	if err := m.apply(t.Context(), "onprem-dc1", destinationPolicy("partition-side-a", lab.Inventory)); err != nil {
		t.Fatal(err)
	}
	if err := m.apply(t.Context(), "eks-euw1", destinationPolicy("partition-side-b", lab.Frontend)); err != nil {
		t.Fatal(err)
	}
	// Really apart: for 3s, neither side gets the other's write.
	consistently(t, 3*time.Second, func() error {
		for _, side := range []struct{ cluster, absent string }{{"onprem-dc1", "partition-side-b"}, {"eks-euw1", "partition-side-a"}} {
			names, err := policyNames(t.Context(), m.cluster(t, side.cluster))
			if err != nil {
				return err
			}
			if slices.Contains(names, side.absent) {
				return fmt.Errorf("%s holds %s during the partition", side.cluster, side.absent)
			}
		}
		return nil
	})
	at := time.Now()
	heal()
	for i := range m.lab.State.Clusters {
		c := &m.lab.State.Clusters[i]
		testutil.Eventually(t, 60*time.Second, func() error {
			names, err := policyNames(t.Context(), c)
			if err != nil {
				return err
			}
			for _, want := range []string{"partition-side-a", "partition-side-b", "shop-failover", "customer-records-in-eu", "checkout-failover"} {
				if !slices.Contains(names, want) {
					return fmt.Errorf("%s holds %v, not %s", c.Name, names, want)
				}
			}
			return nil
		})
	}
	t.Logf("partition of eks-euw1 healed: every cluster holds the policies written on both sides within %v of the heal", time.Since(at).Round(10*time.Millisecond))
}

func deletePolicies(m *mesh, names ...string) error {
	conn, err := grpc.NewClient(m.lab.State.Clusters[0].GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	req := &policyapipb.DeleteRequest{}
	for _, n := range names {
		req.Refs = append(req.Refs, &policyapipb.ObjectRef{Kind: "DestinationPolicy", Namespace: lab.Namespace, Name: n})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = policyapipb.NewPolicyServiceClient(conn).Delete(ctx, req)
	return err
}

// TestCrashRestart kills us-east-1's meridiand (SIGKILL) under traffic,
// starts it again on the same data, and checks that nothing was lost:
// the policies, the registry, and the users' xDS (a change after the
// restart reaches them).
func TestCrashRestart(t *testing.T) {
	fullOnly(t)
	m := theMesh(t)
	use1 := m.cluster(t, "eks-use1")
	before, err := policyNames(t.Context(), use1)
	if err != nil {
		t.Fatal(err)
	}
	g := m.users(t, use1.Name, use1.Zones[0], 100, lab.Inventory)
	waitServed(t, g, lab.Inventory, use1.Name, 30*time.Second)
	at := time.Now()
	if err := m.lab.RestartMeridiand(t.Context(), use1.Name); err != nil {
		t.Fatal(err)
	}
	restarted := time.Since(at)
	after, err := policyNames(t.Context(), use1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before, after) {
		t.Errorf("policies before the crash %v, after %v", before, after)
	}
	eps, err := endpointsSeen(t, use1)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, c := range m.lab.State.Clusters {
		total += len(c.Instances)
	}
	if len(eps) != total {
		t.Errorf("after the restart eks-use1 sees %d of %d endpoints", len(eps), total)
	}
	// The users' xDS stream is back: a zone change after the restart
	// reaches them.
	kc := m.kube[use1.Name].Clientset()
	t.Cleanup(func() { _ = setReady(context.Background(), kc, lab.Inventory, use1.Zones[:1], true) })
	if err := setReady(t.Context(), kc, lab.Inventory, use1.Zones[:1], false); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		r := last(g, lab.Inventory, time.Second)
		for path := range r.Paths {
			if path == "inventory@"+use1.Name+"/"+use1.Zones[0] {
				return fmt.Errorf("still served by the not-ready zone: %v", r.Paths)
			}
		}
		return nil
	})
	r, _ := g.Between(at, at.Add(restarted)).Target(lab.Inventory)
	t.Logf("meridiand of eks-use1 crashed and restarted: ready again in %v with %d policies (none lost) and all %d endpoints; calls during the restart %s",
		restarted.Round(10*time.Millisecond), len(after), total, r.Summary())
}

const canary = `apiVersion: meridian.io/v1alpha1
kind: DestinationPolicy
metadata:
  name: catalog
  namespace: shop
spec:
  host: catalog
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
---
apiVersion: meridian.io/v1alpha1
kind: TrafficRoute
metadata:
  name: catalog-canary
  namespace: shop
spec:
  hosts: [catalog]
  http:
  - name: canary
    route:
    - host: catalog
      subset: v1
      weight: 90
    - host: catalog
      subset: v2
      cluster: eks-euw1
      weight: 10
`

// TestCanary sends 90% of on-prem users' catalog calls to v1 and 10% to
// v2 in eu-west-1, across clusters, and measures the split.
func TestCanary(t *testing.T) {
	fullOnly(t)
	m := theMesh(t)
	onprem := m.cluster(t, "onprem-dc1")
	g := m.users(t, onprem.Name, onprem.Zones[0], 200, lab.Catalog)
	waitServed(t, g, lab.Catalog, onprem.Name, 30*time.Second)
	if err := m.apply(t.Context(), "", canary); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := grpc.NewClient(onprem.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = policyapipb.NewPolicyServiceClient(conn).Delete(context.Background(), &policyapipb.DeleteRequest{Refs: []*policyapipb.ObjectRef{
			{Kind: "TrafficRoute", Namespace: lab.Namespace, Name: "catalog-canary"}, {Kind: "DestinationPolicy", Namespace: lab.Namespace, Name: "catalog"}}})
	})
	testutil.Eventually(t, 30*time.Second, func() error {
		if r := last(g, lab.Catalog, time.Second); r.Served["eks-euw1"] == 0 {
			return fmt.Errorf("no canary traffic yet: %s", r.Summary())
		}
		return nil
	})
	from := time.Now()
	collect(t, g, 10*time.Second)
	r, _ := g.Between(from, from.Add(10*time.Second)).Target(lab.Catalog)
	v2 := float64(r.Served["eks-euw1"]) / float64(r.OK)
	if r.SuccessRate() < 0.99 || v2 < 0.07 || v2 > 0.13 {
		t.Errorf("canary: %s; want ≈10%% in eks-euw1", r.Summary())
	}
	t.Logf("90/10 canary across clusters over %d calls: %s (v2 in eks-euw1 %.1f%%)", r.Requests, sharesLine(r.Served), 100*v2)
}
