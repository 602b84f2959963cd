package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/lab"
)

// rotationSVIDTTL is the rotation lab's SVID lifetime: every proxy renews
// its own SVID (and with it the bundle its xDS connection trusts) at half
// of it, and `meridianctl trust rotate` waits half of it after prepare and
// all of it after activate, so the rotation takes seconds, not hours.
const rotationSVIDTTL = 8 * time.Second

// rotationTopology keeps the rotation lab small: both clusters run
// frontend and inventory, only the root holder catalog, so that users in
// eks-use1 cross clusters (sidecar to sidecar, under intermediates of
// different clusters) on every call.
func rotationTopology(c lab.Cluster) []lab.Instance {
	z0 := c.Zones[0]
	in := func(svc, version string, upstreams ...string) lab.Instance {
		return lab.Instance{Service: svc, Version: version, Zone: z0, Upstreams: upstreams}
	}
	if c.Name == "onprem-dc1" {
		return []lab.Instance{in(lab.Frontend, "", lab.Catalog), in(lab.Catalog, "v1", lab.Inventory), in(lab.Inventory, "")}
	}
	return []lab.Instance{in(lab.Frontend, "", lab.Catalog), in(lab.Inventory, "")}
}

// TestRootRotation rotates the mesh's root with `meridianctl trust
// rotate` on the root holder while users in both clusters call frontend
// through their meridian-proxy, every hop mTLS between enrolled proxies
// (STRICT): not one call may fail. It runs a lab of its own, two clusters
// whose first holds the root (lab.Options.RootHolder), so that the shared
// mesh keeps the root its later proxies enroll with.
func TestRootRotation(t *testing.T) {
	fullOnly(t)
	requireNetns(t)
	began := time.Now()
	l, err := lab.Start(t.Context(), lab.Options{
		StateDir: filepath.Join(t.TempDir(), "lab"), Clusters: lab.Known[:2], Netns: "true", Prefix: "me2erot", Subnet: "10.252",
		BinDir: bins, Rate: -1, Sidecars: true, RootHolder: true, Instances: rotationTopology, Progress: tlog{t},
		Configure: func(_ *lab.ClusterState, cfg *daemon.Config) error {
			cfg.Trust.SVIDTTL.Duration = rotationSVIDTTL
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	t.Logf("rotation lab up (%v)", time.Since(began).Round(100*time.Millisecond))

	holder := l.State.Clusters[0]
	var users []*userGroup
	for _, c := range l.State.Clusters {
		users = append(users, &userGroup{c.Name, proxiedUsers(t, l, l.RootCert(), c.Name, c.Zones[0], 50, lab.Frontend)})
	}
	for _, u := range users {
		waitServed(t, u.g, lab.Frontend, u.cluster, 30*time.Second)
	}

	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	out, err := l.LocalCtl(ctx, holder.Name, "trust", "rotate", "--poll", "200ms", "--wait-timeout", "30s")
	t.Logf("meridianctl trust rotate on %s:\n%s", holder.Name, out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "root rotated") {
		t.Fatal("meridianctl trust rotate did not say the root rotated")
	}
	rotated := time.Now()
	// Calls after retire too: a proxy still presenting an SVID under the
	// retired root, or trusting only it, fails from there on.
	for _, u := range users {
		collect(t, u.g, 3*time.Second)
	}
	total, failed := 0, 0
	for _, u := range users {
		r, _ := u.g.Between(start, rotated.Add(3*time.Second)).Target(lab.Frontend)
		total += r.Requests
		failed += r.Requests - r.OK
		if r.Requests == 0 || r.OK != r.Requests {
			t.Errorf("users in %s → frontend during the rotation: %s; errors %v, last: %s", u.cluster, r.Summary(), r.Errors, r.LastError)
		}
		t.Logf("users in %s → frontend during the rotation: %s; paths %s", u.cluster, r.Summary(), sharesLine(r.Paths))
	}
	// New handshakes under the new root alone: users enrolled now trust
	// only the bundle of after the rotation (`meridianctl trust bundle`),
	// so they get an SVID only if the CA service serves under the new
	// root, and their calls succeed only if frontend's sidecar presents an
	// SVID under it and takes theirs.
	pems := t.TempDir()
	if out, err := l.LocalCtl(ctx, holder.Name, "trust", "bundle", "--pem-dir", pems); err != nil {
		t.Fatalf("meridianctl trust bundle: %v\n%s", err, out)
	}
	site := l.State.Clusters[1]
	late := proxiedUsers(t, l, filepath.Join(pems, lab.TrustDomain+".pem"), site.Name, site.Zones[0], 50, lab.Frontend)
	waitServed(t, late, lab.Frontend, site.Name, 30*time.Second)
	collect(t, late, 2*time.Second)
	after := last(late, lab.Frontend, 2*time.Second)
	if after.OK != after.Requests {
		t.Errorf("users enrolled under the new root alone → frontend: %s; errors %v, last: %s", after.Summary(), after.Errors, after.LastError)
	}
	t.Logf("users in %s enrolled after the rotation, trusting the new root alone → frontend: %s", site.Name, after.Summary())
	t.Logf("root rotation under traffic (SVID TTL %v, 2 clusters, every hop mTLS through meridian-proxy): rotate took %v; %d of %d calls failed (from prepare to 3s after retire)",
		rotationSVIDTTL, rotated.Sub(start).Round(100*time.Millisecond), failed, total)
}
