package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/xds"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/internal/kubetest"
	"github.com/meridian-mesh/meridian/lab"
	"github.com/meridian-mesh/meridian/lab/demo"
	"github.com/meridian-mesh/meridian/lab/demopb"
	"github.com/meridian-mesh/meridian/lab/traffic"
	"github.com/meridian-mesh/meridian/policyapi/policyapipb"
	"github.com/meridian-mesh/meridian/registry"
)

// Network of the suite: its own prefix and subnet, so that it never
// touches a lab a user runs beside it.
const (
	prefix = "me2e"
	subnet = "10.251"
)

// Checkout is the e2e's service that on-prem does not run: on-prem users
// reach it in us-east-1, and in eu-west-1 when us-east-1 is gone.
const Checkout = "checkout"

// topology is the suite's demo instances per cluster.
func topology(c lab.Cluster) []lab.Instance {
	z0, z1 := c.Zones[0], c.Zones[1]
	in := func(svc, version, zone string, upstreams ...string) lab.Instance {
		return lab.Instance{Service: svc, Version: version, Zone: zone, Upstreams: upstreams}
	}
	switch c.Name {
	case "onprem-dc1":
		return []lab.Instance{in(lab.Frontend, "", z0, lab.Catalog), in(lab.Catalog, "v1", z0, lab.Inventory),
			in(lab.Inventory, "", z0), in(lab.Inventory, "", z1)}
	case "eks-use1":
		stray := in(lab.CustomerRecords, "", z0)
		stray.Stray = true
		return []lab.Instance{in(lab.Frontend, "", z0, lab.Catalog), in(lab.Catalog, "v1", z0, lab.Inventory), in(lab.Catalog, "v2", z1, lab.Inventory),
			in(lab.Inventory, "", z0), in(lab.Inventory, "", z1), in(Checkout, "", z0), in(Checkout, "", z1), stray}
	default: // eks-euw1
		return []lab.Instance{in(lab.Frontend, "", z0, lab.Catalog), in(lab.Catalog, "v2", z0, lab.Inventory), in(lab.Inventory, "", z0),
			in(Checkout, "", z0), in(lab.CustomerRecords, "", z0), in(lab.CustomerRecords, "", z1)}
	}
}

// suitePolicies are applied on top of the lab's own (FailoverPolicy for
// frontend, catalog and inventory; ResidencyRule for customer-records).
const suitePolicies = `apiVersion: meridian.io/v1alpha1
kind: FailoverPolicy
metadata:
  name: checkout-failover
  namespace: shop
spec:
  selector:
    services: [checkout]
  failover:
  - from: onprem-east
    to: [us-east-1, eu-west-1]
  - from: us-east-1
    to: [onprem-east, eu-west-1]
  - from: eu-west-1
    to: [us-east-1, onprem-east]
`

// mesh is the suite's three clusters.
type mesh struct {
	root string // every file of the mesh
	lab  *lab.Lab
	kube map[string]*kubetest.APIServer
	fwds []net.Listener
}

var shared struct {
	sync.Mutex
	m   *mesh
	err error
}

// requireNetns skips when the machine does not let this process build
// network namespaces: the one privilege the suite needs.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the multi-cluster suite needs root, for a network namespace per cluster")
	}
	if os.Getenv(kubetest.SkipEnv) == "1" {
		t.Skip(kubetest.SkipEnv + "=1: skipping the multi-cluster suite, which needs real kube-apiservers")
	}
}

// theMesh returns the suite's mesh, started by the first test that needs
// it and stopped by the last cleanup of the package (see TestMain).
func theMesh(t *testing.T) *mesh {
	t.Helper()
	requireNetns(t)
	shared.Lock()
	defer shared.Unlock()
	if shared.m == nil && shared.err == nil {
		shared.m, shared.err = startMesh(t)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.m
}

// stopMesh stops the shared mesh (TestMain calls it); keep leaves its
// files, logs included, for a failed run.
func stopMesh(keep bool) {
	shared.Lock()
	defer shared.Unlock()
	if shared.m == nil {
		return
	}
	shared.m.close()
	if keep {
		fmt.Fprintf(os.Stderr, "e2e: the mesh's files (kube-apiserver logs) are kept in %s\n", shared.m.root)
	} else {
		os.RemoveAll(shared.m.root)
	}
	shared.m = nil
}

func (m *mesh) close() {
	if m.lab != nil {
		m.lab.Close()
	}
	for _, l := range m.fwds {
		l.Close()
	}
	for _, k := range m.kube {
		k.Stop()
	}
}

// tlog sends the lab's progress lines to the test log.
type tlog struct{ t *testing.T }

func (w tlog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func startMesh(t *testing.T) (_ *mesh, err error) {
	began := time.Now()
	root, err := os.MkdirTemp("", "meridian-e2e-")
	if err != nil {
		return nil, err
	}
	m := &mesh{root: root, kube: map[string]*kubetest.APIServer{}}
	defer func() {
		if err != nil {
			m.close()
			t.Logf("the mesh's files are kept in %s", root)
		}
	}()
	// Three API servers at once: each takes seconds to start.
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(lab.Known))
	for i, c := range lab.Known {
		wg.Go(func() {
			dir := filepath.Join(root, "kube-"+c.Name)
			if errs[i] = os.MkdirAll(dir, 0o755); errs[i] != nil {
				return
			}
			k, err := kubetest.New(context.Background(), kubetest.Options{Dir: dir})
			errs[i] = err
			mu.Lock()
			if k != nil {
				m.kube[c.Name] = k
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	t.Logf("3 kube-apiservers ready (%v)", time.Since(began).Round(100*time.Millisecond))
	// Permissive: the sidecars take mTLS from proxies with SVIDs (the
	// gateways, proxiedUsers' meridian-proxy) and plaintext from the
	// suite's proxyless gRPC users, which have none.
	m.lab, err = lab.Start(context.Background(), lab.Options{
		StateDir: filepath.Join(root, "lab"), Netns: "true", Prefix: prefix, Subnet: subnet, BinDir: bins, Rate: -1, Sidecars: true, Permissive: true,
		Instances: topology, Configure: m.configure, Publish: m.publish, Progress: tlog{t},
	})
	if err != nil {
		return nil, err
	}
	if err := m.apply(context.Background(), "", suitePolicies); err != nil {
		return nil, err
	}
	return m, nil
}

// configure turns Kubernetes discovery on, through a forwarder on the
// host's side of the lab network: the API servers listen on the host's
// loopback, which a cluster's namespace cannot reach.
func (m *mesh) configure(c *lab.ClusterState, cfg *daemon.Config) error {
	k := m.kube[c.Name]
	lis, err := net.Listen("tcp", subnet+".0.1:0")
	if err != nil {
		return err
	}
	m.fwds = append(m.fwds, lis)
	go forward(lis, strings.TrimPrefix(k.RESTConfig().Host, "https://"))
	fwd := lis.Addr().String()
	path := filepath.Join(c.DataDir, "kubeconfig")
	if err := reachableKubeconfig(k.Kubeconfig(), path, fwd); err != nil {
		return err
	}
	cfg.Kube = daemon.Kube{Enabled: true, Kubeconfig: path}
	return nil
}

func (m *mesh) publish(ctx context.Context, c *lab.ClusterState) error {
	return publish(ctx, m.kube[c.Name].Clientset(), c)
}

// forward pipes every connection lis accepts to target, until lis is
// closed (mesh.close); a piped connection ends with either side.
func forward(lis net.Listener, target string) {
	for {
		in, err := lis.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			out, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer out.Close()
			go func() { _, _ = io.Copy(out, in); _ = out.(*net.TCPConn).CloseWrite() }()
			_, _ = io.Copy(in, out)
		}()
	}
}

// cluster returns a cluster of the mesh.
func (m *mesh) cluster(t *testing.T, name string) *lab.ClusterState {
	t.Helper()
	c, err := m.lab.State.Cluster(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// apply applies policies through a cluster's policy API (the first when
// cluster is empty).
func (m *mesh) apply(ctx context.Context, cluster, yaml string) error {
	c := &m.lab.State.Clusters[0]
	if cluster != "" {
		var err error
		if c, err = m.lab.State.Cluster(cluster); err != nil {
			return err
		}
	}
	conn, err := grpc.NewClient(c.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err = policyapipb.NewPolicyServiceClient(conn).Apply(ctx, &policyapipb.ApplyRequest{
		Sources: []*policyapipb.Source{{Name: "e2e.yaml", Data: []byte(yaml)}}}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("applying policies through %s: %w", c.Name, err)
	}
	return nil
}

// target is the xds:/// name of a demo service.
func target(service string) string {
	return fmt.Sprintf("xds:///%s.%s.svc.cluster.local:%d", service, lab.Namespace, lab.DemoPort)
}

var userSeq struct {
	sync.Mutex
	n int
}

// users starts a traffic generator calling services from a zone of a
// cluster, through grpc-go's xDS client bootstrapped against that
// cluster's meridiand; it stops when the test ends.
func (m *mesh) users(t *testing.T, cluster, zone string, rate float64, services ...string) *traffic.Generator {
	t.Helper()
	c := m.cluster(t, cluster)
	userSeq.Lock()
	userSeq.n++
	id := fmt.Sprintf("e2e-users-%s-%d", cluster, userSeq.n)
	userSeq.Unlock()
	b, err := demo.Bootstrap(c.GRPC, demo.Node{ID: id, Cluster: c.Name, Namespace: lab.Namespace, Locality: registry.Locality{Region: c.Region, Zone: zone}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := xds.NewXDSResolverWithConfigForTesting(b)
	if err != nil {
		t.Fatal(err)
	}
	cfg := traffic.Config{Caller: id, Rate: rate, Timeout: time.Second}
	for _, s := range services {
		conn, err := grpc.NewClient(target(s), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(res))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		cfg.Targets = append(cfg.Targets, traffic.Target{Name: s, Client: demopb.NewDemoClient(conn)})
	}
	return runUsers(t, cfg)
}

// runUsers runs a traffic generator until the test ends.
func runUsers(t *testing.T, cfg traffic.Config) *traffic.Generator {
	t.Helper()
	g, err := traffic.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return g
}
