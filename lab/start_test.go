package lab

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/lab/demopb"
)

// progress collects a lab's progress lines.
type progress struct {
	mu sync.Mutex
	b  strings.Builder
}

func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.b.Write(b)
}

func (p *progress) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.b.String()
}

// TestStartLoopback runs a two-cluster lab on loopback, the mode of
// machines without network namespaces, with sidecars as `lab up` runs
// them: traffic flows and stays local, the sidecars take only mTLS from
// proxies with SVIDs (a plaintext call straight to one is refused), an
// outage (stopped processes) fails the EU-only service without it leaving
// the EU, and a lab whose supervisor died is cleaned up by the next Start.
// The netns mode is exercised by the e2e-multicluster suite.
func TestStartLoopback(t *testing.T) {
	dir := t.TempDir()
	opts := Options{StateDir: dir, Clusters: Known[1:], Netns: "false", Prefix: "mltest", Subnet: "127.78", Rate: 20, Sidecars: true}
	var p progress
	opts.Progress = &p
	l, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("%v\n%s", err, p.String())
	}
	defer l.Close()
	if l.State.Network.Mode != modeLoopback {
		t.Fatalf("mode %q", l.State.Network.Mode)
	}
	users := func(cluster, target string) string {
		for _, tr := range l.State.Traffic(context.Background(), 2*time.Second) {
			if tr.Cluster != cluster {
				continue
			}
			for _, r := range tr.Targets {
				if r.Target == target {
					return fmt.Sprintf("ok=%.0f%% served=%v", 100*r.SuccessRate(), r.Served)
				}
			}
		}
		return "nothing"
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		for _, want := range [][3]string{{"eks-use1", Frontend, "eks-use1"}, {"eks-use1", CustomerRecords, "eks-euw1"}, {"eks-euw1", Frontend, "eks-euw1"}} {
			if got := users(want[0], want[1]); !strings.HasPrefix(got, "ok=100% served=map["+want[2]+":") {
				return fmt.Errorf("users of %s calling %s: %s", want[0], want[1], got)
			}
		}
		return nil
	})

	// Through the ingress gateways: the frontend of the gateway's own
	// cluster answers, and customer-records stays in the EU even when
	// asked for at the US ingress.
	for _, want := range [][3]string{{"eks-use1", Frontend, "eks-use1"}, {"eks-euw1", Frontend, "eks-euw1"}, {"eks-use1", CustomerRecords, "eks-euw1"}} {
		c, err := l.State.Cluster(want[0])
		if err != nil {
			t.Fatal(err)
		}
		reply, err := CallThrough(t.Context(), c.Ingress, want[1])
		if err != nil {
			t.Fatalf("%s through the ingress gateway of %s (%s): %v", want[1], c.Name, c.Ingress, err)
		}
		if h := reply.GetHops(); len(h) == 0 || h[0].GetService() != want[1] || h[0].GetCluster() != want[2] {
			t.Errorf("%s through the ingress gateway of %s: path %v, want it served in %s", want[1], c.Name, h, want[2])
		}
	}

	// STRICT: the sidecars took the calls above over mTLS, with SVIDs of
	// the services' accounts; plaintext straight to a sidecar's inbound
	// port is refused.
	for _, c := range l.State.Clusters {
		in := c.Instances[0]
		ip, _, _ := net.SplitHostPort(in.Address)
		dump, err := get(t.Context(), "http://"+net.JoinHostPort(ip, strconv.Itoa(proxyAdminPort))+"/config_dump")
		if err != nil {
			t.Fatal(err)
		}
		if id := "spiffe://" + TrustDomain + "/ns/" + Namespace + "/sa/" + in.Service; !strings.Contains(string(dump), id) {
			t.Errorf("sidecar of %s/%s: config_dump lacks its SVID %s", c.Name, in.Service, id)
		}
		conn, err := grpc.NewClient("passthrough:///"+in.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		reply, err := demopb.NewDemoClient(conn).Call(ctx, &demopb.CallRequest{Caller: "plaintext"})
		cancel()
		conn.Close()
		if err == nil {
			t.Errorf("a plaintext call to the sidecar of %s/%s at %s was served: %v", c.Name, in.Service, in.Address, reply.GetHops())
		}
	}

	// Every east-west gateway holds its listener and the mesh's clusters
	// it routes SNI to, and its address is what the cluster publishes to
	// the others.
	for _, c := range l.State.Clusters {
		ip, _, _ := net.SplitHostPort(c.EastWest)
		dump, err := get(t.Context(), "http://"+net.JoinHostPort(ip, strconv.Itoa(proxyAdminPort))+"/config_dump")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"east-west_15443", "outbound|9090||frontend.shop.svc.cluster.local"} {
			if !strings.Contains(string(dump), want) {
				t.Errorf("east-west gateway of %s: config_dump lacks %q", c.Name, want)
			}
		}
		if !slices.Equal(c.Gateways, []string{c.EastWest}) {
			t.Errorf("%s publishes gateways %v, want its east-west gateway %s", c.Name, c.Gateways, c.EastWest)
		}
	}

	st, err := GetStatus(t.Context(), dir, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Clusters {
		if c.Meridiand != "ready" || c.Gateways != "ready" || c.Ingress == "" {
			t.Errorf("lab status of %s: meridiand %q, gateways %q, ingress %q", c.Name, c.Meridiand, c.Gateways, c.Ingress)
		}
	}

	if err := l.State.Cut(t.Context(), "eks-euw1"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if got := users("eks-use1", CustomerRecords); got != "ok=0% served=map[]" {
			return fmt.Errorf("during the EU outage, customer-records from us-east-1: %s", got)
		}
		return nil
	})
	if err := l.State.Heal(t.Context(), "eks-euw1"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if got := users("eks-use1", CustomerRecords); !strings.HasPrefix(got, "ok=100% served=map[eks-euw1:") {
			return fmt.Errorf("after the EU outage, customer-records from us-east-1: %s", got)
		}
		return nil
	})

	// Residency held from the first call on: the stray copy in us-east-1
	// never answered anyone.
	for _, tr := range l.State.Traffic(context.Background(), 10*time.Minute) {
		for _, r := range tr.Targets {
			if r.Target == CustomerRecords && r.Served["eks-use1"] > 0 {
				t.Errorf("users of %s: %d customer-records calls served in eks-use1", tr.Cluster, r.Served["eks-use1"])
			}
		}
	}

	// The supervisor dies: its lock goes, its processes stay.
	l.lock.Close()
	l.lock = nil
	left := l.procs
	var p2 progress
	opts.Progress = &p2
	l2, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("%v\n%s", err, p2.String())
	}
	if !strings.Contains(p2.String(), "cleaned up a lab that did not stop cleanly: stopped") {
		t.Errorf("the second start did not report cleaning up:\n%s", p2.String())
	}
	for name, p := range left {
		if !p.exited() {
			t.Errorf("%s of the dead lab still runs", name)
		}
	}
	running := l2.procs
	if err := l2.Close(); err != nil {
		t.Error(err)
	}
	for name, p := range running {
		if !p.exited() {
			t.Errorf("%s still runs after Close", name)
		}
	}
}
