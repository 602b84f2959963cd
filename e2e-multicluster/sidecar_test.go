package e2e

import (
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meridian-mesh/meridian/internal/proxytest"
	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/lab"
	"github.com/meridian-mesh/meridian/lab/demopb"
	"github.com/meridian-mesh/meridian/lab/traffic"
)

// proxiedUsers starts a meridian-proxy in sidecar mode, from its flags,
// for users in a zone of a cluster — enrolled with a join token as the
// lab's proxies are (service account users), its xDS over TLS from that
// cluster's meridiand, an explicit upstream port for the service — and a
// generator calling through it; both stop when the test ends. Its calls
// to the instances' sidecars are mTLS.
func (m *mesh) proxiedUsers(t *testing.T, cluster, zone string, rate float64, service string) *traffic.Generator {
	t.Helper()
	return proxiedUsers(t, m.lab, m.lab.RootCert(), cluster, zone, rate, service)
}

// proxiedUsers is mesh.proxiedUsers in any lab, the proxy trusting the
// roots in rootCert (PEM) until its first SVID brings the mesh's bundle.
func proxiedUsers(t *testing.T, l *lab.Lab, rootCert, cluster, zone string, rate float64, service string) *traffic.Generator {
	t.Helper()
	c, err := l.State.Cluster(cluster)
	if err != nil {
		t.Fatal(err)
	}
	up := testutil.FreeAddr(t).String()
	userSeq.Lock()
	userSeq.n++
	id := fmt.Sprintf("e2e-proxy-%s-%d", cluster, userSeq.n)
	userSeq.Unlock()
	token, err := l.JoinToken(t.Context(), c.Name, id, lab.Namespace, "users")
	if err != nil {
		t.Fatal(err)
	}
	p := proxytest.Start(t, slog.New(slog.DiscardHandler), "--xds-address", c.XDS, "--xds-tls", "--ca-url", c.CA,
		"--root-cert", rootCert, "--join-token-file", token,
		"--mode", "sidecar", "--capture", "false", "--id", id, "--cluster", c.Name, "--namespace", lab.Namespace,
		"--service-account", "users", "--locality", c.Region+"/"+zone,
		"--upstream", up+"="+service+"."+lab.Namespace+".svc.cluster.local:"+strconv.Itoa(lab.DemoPort),
		"--admin-address", "", "--metrics-address", "", "--health-address", "", "--access-log", "off")
	if got, want := proxytest.SDSIdentity(p), "spiffe://"+lab.TrustDomain+"/ns/"+lab.Namespace+"/sa/users"; got != want {
		t.Fatalf("the users' meridian-proxy has SVID %q, want %q", got, want)
	}
	conn, err := grpc.NewClient("passthrough:///"+up, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runUsers(t, traffic.Config{Caller: id, Rate: rate, Timeout: time.Second,
		Targets: []traffic.Target{{Name: service, Client: demopb.NewDemoClient(conn)}}})
}

// TestSidecarRegionFailover is TestRegionFailover with meridian-proxy in
// the path: users on-prem call checkout through their sidecar, which
// follows the on-prem meridiand's xDS.
func TestSidecarRegionFailover(t *testing.T) {
	m := theMesh(t)
	onprem := m.cluster(t, "onprem-dc1")
	regionFailover(t, m, m.proxiedUsers(t, onprem.Name, onprem.Zones[0], 200, Checkout), "through meridian-proxy")
}
