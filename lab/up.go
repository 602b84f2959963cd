package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meridian-mesh/meridian/daemon"
	"github.com/meridian-mesh/meridian/lab/demo"
	"github.com/meridian-mesh/meridian/lab/demopb"
	"github.com/meridian-mesh/meridian/policyapi/policyapipb"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/trust/service"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// Options configures a lab. StateDir is required.
type Options struct {
	// StateDir holds everything the lab writes: lab.json, configurations,
	// etcd data, logs, pid files, built binaries.
	StateDir string
	// Clusters of the lab; default Known.
	Clusters []Cluster
	// Netns is "auto" (the default: a network namespace per cluster when
	// running as root where ip netns works, loopback otherwise), "true"
	// (namespaces or fail) or "false" (loopback).
	Netns string
	// Prefix starts the names of network namespaces and links; default
	// "mlab", at most 8 characters. Two labs at once need two prefixes.
	Prefix string
	// Subnet is the first two octets of every lab address; default
	// "10.250" with namespaces, "127.77" on loopback.
	Subnet string
	// BinDir holds meridiand and meridian-demo; default: see findBinaries.
	BinDir string
	// Rate is each traffic generator's calls per second to each entry
	// service. Default 20; negative starts no generator.
	Rate float64
	// Instances replaces the demo's instances of a cluster (the e2e
	// suite's own topology); nil keeps the demo's.
	Instances func(c Cluster) []Instance
	// Publish, when set, publishes a cluster's instances instead of their
	// registering through the Workload API (the e2e suite writes them to
	// Kubernetes). It is called once the cluster's meridiand is ready.
	Publish func(ctx context.Context, c *ClusterState) error
	// Configure adjusts a cluster's meridiand configuration before it
	// starts (the e2e suite turns Kubernetes discovery on).
	Configure func(c *ClusterState, cfg *daemon.Config) error
	// Sidecars puts a meridian-proxy in front of every demo instance and
	// the users (explicit ports, no capture); without, they are proxyless
	// gRPC clients of their cluster's meridiand. Every proxy of the lab,
	// sidecar or gateway, enrolls with a join token for an SVID and talks
	// mTLS: the sidecars take nothing else (STRICT, the mesh's default).
	Sidecars bool
	// Permissive lets plaintext into the sidecars too (PeerAuthentication
	// PERMISSIVE in the demo's namespace): for clients without SVIDs, as
	// the e2e suite's proxyless gRPC users.
	Permissive bool
	// RootHolder starts the first cluster's meridiand from the lab's root
	// directory (trust.rootDir) instead of its intermediate, so that it
	// holds the root and can rotate it (`meridianctl trust rotate`): for
	// the e2e suite's root rotation. Off, the root stays offline.
	RootHolder bool
	// Progress receives a line per step; nil discards them.
	Progress io.Writer
}

// Lab is a running lab, owned by whoever started it: Close stops it.
type Lab struct {
	State *State
	opts  Options
	lock  *os.File
	bins  string
	keys  keys

	mu    sync.Mutex
	procs map[string]*proc
}

// ErrRunning is returned by Start when the state directory holds a lab
// whose supervisor is alive.
var ErrRunning = errors.New("lab: a lab is already running")

// Start brings a lab up: network, one meridiand per cluster, gossip
// between them, the demo application, its policies and the traffic
// generators, and returns once traffic flows. Leftovers of a lab that
// crashed in the same state directory are cleaned up first. On error,
// everything started is stopped again (logs stay, for the post-mortem).
func Start(ctx context.Context, opts Options) (_ *Lab, err error) {
	began := time.Now()
	if opts.StateDir == "" {
		return nil, errors.New("lab: a state directory is required")
	}
	dir, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("lab: state directory: %w", err)
	}
	opts.StateDir = dir
	if opts.Clusters == nil {
		opts.Clusters = Known
	}
	if opts.Prefix == "" {
		opts.Prefix = "mlab"
	}
	if len(opts.Prefix) > 8 {
		return nil, fmt.Errorf("lab: prefix %q: at most 8 characters (interface names are short)", opts.Prefix)
	}
	if opts.Rate == 0 {
		opts.Rate = 20
	}
	say := func(format string, args ...any) {
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, format+"\n", args...)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	lock, err := acquire(dir)
	if err != nil {
		return nil, err
	}
	l := &Lab{opts: opts, lock: lock, procs: map[string]*proc{}}
	defer func() {
		if err != nil {
			l.close(context.WithoutCancel(ctx), true)
		}
	}()
	if left := cleanLeftovers(ctx, dir, opts.Prefix); left != "" {
		say("  cleaned up a lab that did not stop cleanly: %s", left)
	}
	for _, sub := range []string{"logs", "pids", "clusters"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
	}

	netw, note, err := chooseNetwork(ctx, opts)
	if err != nil {
		return nil, err
	}
	l.State = plan(dir, opts.Clusters, netw, opts.Instances, opts.Sidecars, opts.Permissive)
	l.State.Supervisor = os.Getpid()
	l.State.Started = began
	if note != "" {
		l.State.Notes = append(l.State.Notes, note)
	}
	if opts.Sidecars {
		l.State.Notes = append(l.State.Notes, "every cluster is on one network: cross-cluster mTLS goes direct, not through the east-west gateways")
	}
	if l.State.Permissive {
		l.State.Notes = append(l.State.Notes, "PeerAuthentication shop/lab-plaintext-clients makes the namespace PERMISSIVE: sidecars also take plaintext, from clients without SVIDs")
	}
	if err := l.State.save(); err != nil {
		return nil, err
	}
	say("Meridian lab: %d clusters, %s, state in %s", len(opts.Clusters), describeNetwork(netw), dir)

	if l.bins, err = findBinaries(ctx, opts.BinDir, dir, func(s string) { say("  %s", s) }); err != nil {
		return nil, err
	}
	if netw.Mode == modeNetns {
		t := time.Now()
		note, err := setupNetns(ctx, l.State)
		if err != nil {
			return nil, err
		}
		if note != "" {
			l.State.Notes = append(l.State.Notes, note)
		}
		say("  network: %d namespaces routed through %s (%s)", len(opts.Clusters), coreNS(netw.Prefix), since(t))
		if l.State.Network.Latency != "" {
			say("  latency: %s", l.State.Network.Latency)
		}
	}
	for _, n := range l.State.Notes {
		say("  note: %s", n)
	}

	if err := l.startControlPlanes(ctx, say); err != nil {
		return nil, err
	}
	if err := l.startDemo(ctx, say); err != nil {
		return nil, err
	}
	if err := l.startGateways(ctx, say); err != nil {
		return nil, err
	}
	if err := l.applyPolicies(ctx, say); err != nil {
		return nil, err
	}
	if err := l.startTraffic(ctx, say); err != nil {
		return nil, err
	}
	if err := l.State.save(); err != nil {
		return nil, err
	}
	say("Lab is up (%s).", since(began))
	return l, nil
}

func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }

// acquire takes the state directory's lock, held while the lab runs: it
// dies with the process, so a crashed lab never looks running.
func acquire(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w in %s", ErrRunning, dir)
		}
		return nil, fmt.Errorf("lab: locking %s: %w", dir, err)
	}
	return f, nil
}

// running reports whether a supervisor holds dir's lock.
func running(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

func chooseNetwork(ctx context.Context, opts Options) (Network, string, error) {
	n := Network{Mode: modeLoopback, Prefix: opts.Prefix, Subnet: opts.Subnet}
	var note string
	switch opts.Netns {
	case "", "auto", "true":
		err := netnsProbe(ctx, opts.Prefix)
		switch {
		case err == nil:
			n.Mode = modeNetns
		case opts.Netns == "true":
			return n, "", fmt.Errorf("lab: --netns=true, but network namespaces are unavailable: %w", err)
		default:
			note = "clusters share loopback (network namespaces unavailable: " + err.Error() + "); an outage stops a cluster's processes"
		}
	case "false":
	default:
		return n, "", fmt.Errorf("lab: --netns %q: want auto, true or false", opts.Netns)
	}
	if n.Subnet == "" {
		n.Subnet = map[string]string{modeNetns: "10.250", modeLoopback: "127.77"}[n.Mode]
	}
	return n, note, nil
}

func describeNetwork(n Network) string {
	if n.Mode == modeNetns {
		return "a network namespace each (" + n.Subnet + ".0.0/16)"
	}
	return "on loopback (" + n.Subnet + ".0.0/16)"
}

func (l *Lab) binary(name string) string { return filepath.Join(l.bins, name) }

// spawn starts a process of cluster c and remembers it.
func (l *Lab) spawn(c *ClusterState, role, bin string, args ...string) error {
	return l.spawnEnv(c, role, nil, bin, args...)
}

// spawnEnv starts a process of cluster c with extra environment.
func (l *Lab) spawnEnv(c *ClusterState, role string, env []string, bin string, args ...string) error {
	p, err := start(l.State.StateDir, procSpec{name: c.Name + "." + role, cluster: c.Name, netns: c.Netns, path: l.binary(bin), args: args, env: env})
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.procs[p.name] = p
	l.mu.Unlock()
	return nil
}

// proc returns a process the lab started, by name.
func (l *Lab) proc(name string) *proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.procs[name]
}

// logTail names a process's log, for errors.
func (l *Lab) logFile(name string) string {
	return filepath.Join(l.State.StateDir, "logs", name+".log")
}

// startControlPlanes starts every meridiand, waits until each is ready
// and until every one sees every other cluster alive through gossip.
func (l *Lab) startControlPlanes(ctx context.Context, say func(string, ...any)) error {
	var err error
	if l.keys, err = makeKeys(l.State.StateDir, l.State.Clusters); err != nil {
		return err
	}
	if l.opts.RootHolder {
		say("  trust: one root CA (trust domain %s, in %s), held by %s's meridiand; an intermediate per other cluster; gossip keyring-gated", TrustDomain, l.keys.caDir, l.State.Clusters[0].Name)
	} else {
		say("  trust: one root CA (trust domain %s, kept offline in %s), an intermediate per cluster; gossip keyring-gated", TrustDomain, l.keys.caDir)
	}
	// The first cluster starts the mesh; the others join it.
	t := time.Now()
	first := &l.State.Clusters[0]
	for i := range l.State.Clusters {
		c := &l.State.Clusters[i]
		if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		if i > 0 {
			if err := l.join(ctx, c, first); err != nil {
				return err
			}
		}
		if err := l.startMeridiand(c, i); err != nil {
			return err
		}
		if i == 0 {
			if err := l.waitMeridiand(ctx, c); err != nil {
				return err
			}
		}
	}
	if n := len(l.State.Clusters); n > 1 {
		say("  %d clusters joined %s's mesh with meridianctl join (seeds and keyring from %s; intermediates issued offline)", n-1, first.Name, first.Name)
	}
	g, gctx := errgroup.WithContext(ctx)
	for i := range l.State.Clusters {
		c := &l.State.Clusters[i]
		g.Go(func() error {
			if err := l.waitMeridiand(gctx, c); err != nil {
				return err
			}
			if serves(gctx, c.Admin+"/ui/") {
				c.Dashboard = c.Admin + "/ui/"
			}
			say("  %-11s %-12s meridiand ready (%s)  gRPC %s  admin %s", c.Name, c.Region, since(t), c.GRPC, c.Admin)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	t = time.Now()
	n := len(l.State.Clusters)
	for i := range l.State.Clusters {
		c := &l.State.Clusters[i]
		err := poll(ctx, 60*time.Second, func(ctx context.Context) error {
			d, err := registryDump(ctx, c.Admin, false)
			if err != nil {
				return err
			}
			if got := aliveClusters(d); got < n {
				return fmt.Errorf("%s sees %d of %d clusters alive", c.Name, got, n)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("lab: gossip did not join the clusters within 60s: %w (see %s)", err, l.logFile(c.Name+".meridiand"))
		}
	}
	say("  gossip: every cluster sees all %d alive (%s)", n, since(t))
	return nil
}

// configPath is where a cluster's meridiand configuration lives.
func configPath(c *ClusterState) string { return filepath.Join(c.DataDir, "meridiand.yaml") }

// startMeridiand starts cluster i's meridiand; a cluster that joined has
// its configuration written already.
func (l *Lab) startMeridiand(c *ClusterState, i int) error {
	if i == 0 {
		if err := l.writeMeridiandConfig(c, i); err != nil {
			return err
		}
	}
	return l.spawn(c, "meridiand", "meridiand", "--config", configPath(c))
}

func (l *Lab) writeMeridiandConfig(c *ClusterState, i int) error {
	cfg := meridiandConfig(l.State, i, l.keys, l.opts.RootHolder)
	if l.opts.Configure != nil {
		if err := l.opts.Configure(c, &cfg); err != nil {
			return fmt.Errorf("lab: configuring %s: %w", c.Name, err)
		}
	}
	return writeConfig(configPath(c), cfg)
}

// join writes cluster c's configuration, then has `meridianctl join`
// merge into it what joining first's mesh takes — gossip seeds and the
// keyring; the intermediate is the lab's, issued offline, so no join
// token (--trust-token=false) — as a user adding a cluster would.
func (l *Lab) join(ctx context.Context, c, first *ClusterState) error {
	i := slices.IndexFunc(l.State.Clusters, func(o ClusterState) bool { return o.Name == c.Name })
	if err := l.writeMeridiandConfig(c, i); err != nil {
		return err
	}
	args := []string{"join", "--cluster", c.Name, "--mesh", first.GRPC, "--gossip-key-file", l.keys.gossip, "--trust-token=false",
		"--dir", filepath.Join(c.DataDir, "join"), "--config", configPath(c), "-o", "json"}
	// Retried while the first meridiand's gossip starts.
	err := poll(ctx, 30*time.Second, func(ctx context.Context) error {
		cmd := exec.CommandContext(ctx, l.binary("meridianctl"), args...)
		cmd.Env = append(os.Environ(), labEnv+"="+l.State.StateDir)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("lab: meridianctl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// waitMeridiand waits for one meridiand's /readyz, failing early when
// the process exits.
func (l *Lab) waitMeridiand(ctx context.Context, c *ClusterState) error {
	name := c.Name + ".meridiand"
	p := l.proc(name)
	err := poll(ctx, 90*time.Second, func(ctx context.Context) error {
		if p.exited() {
			return fmt.Errorf("exited (%v)", p.err)
		}
		return ready(ctx, c.Admin)
	})
	if err != nil {
		return fmt.Errorf("lab: meridiand of %s: %w (see %s)", c.Name, err, l.logFile(name))
	}
	return nil
}

// xdsEnv is the environment of a proxyless gRPC process of cluster c:
// grpc-go's xDS bootstrap pointing at the cluster's meridiand.
func xdsEnv(c *ClusterState, id, zone string) ([]string, error) {
	b, err := demo.Bootstrap(c.GRPC, demo.Node{ID: id, Cluster: c.Name, Namespace: Namespace, Locality: registry.Locality{Region: c.Region, Zone: zone}})
	if err != nil {
		return nil, err
	}
	return []string{"GRPC_XDS_BOOTSTRAP_CONFIG=" + string(b)}, nil
}

// demoTarget is the xds:/// target of a demo service.
func demoTarget(service string) string {
	host := translate.Host(registry.ServiceKey{Namespace: Namespace, Name: service}, translate.DefaultDomain)
	return "xds:///" + translate.Target(host, DemoPort)
}

// startDemo starts every demo instance and waits until every control
// plane sees every instance.
func (l *Lab) startDemo(ctx context.Context, say func(string, ...any)) error {
	t := time.Now()
	total := 0
	for i := range l.State.Clusters {
		c := &l.State.Clusters[i]
		for j, in := range c.Instances {
			role := fmt.Sprintf("%s-%d", in.Service, j)
			if err := l.startInstance(ctx, c, role, in); err != nil {
				return err
			}
			total++
		}
	}
	if l.State.Sidecars {
		for i := range l.State.Clusters {
			c := &l.State.Clusters[i]
			for j, in := range c.Instances {
				ip, _, _ := net.SplitHostPort(in.Address)
				if err := l.waitProxy(ctx, c, fmt.Sprintf("%s-%d-proxy", in.Service, j), ip); err != nil {
					return err
				}
			}
		}
	}
	if l.opts.Publish != nil {
		for i := range l.State.Clusters {
			if err := l.opts.Publish(ctx, &l.State.Clusters[i]); err != nil {
				return fmt.Errorf("lab: publishing the instances of %s: %w", l.State.Clusters[i].Name, err)
			}
		}
	}
	for i := range l.State.Clusters {
		c := &l.State.Clusters[i]
		err := poll(ctx, 60*time.Second, func(ctx context.Context) error {
			d, err := registryDump(ctx, c.Admin, true)
			if err != nil {
				return err
			}
			if got := servingEndpoints(d, Namespace); got < total {
				return fmt.Errorf("%s sees %d of %d demo instances", c.Name, got, total)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("lab: demo instances not registered everywhere within 60s: %w (see %s/logs)", err, l.State.StateDir)
		}
	}
	how := "proxyless gRPC (xds:///)"
	if l.State.Sidecars {
		how = "each behind a meridian-proxy sidecar with an SVID of its service account, mTLS only (STRICT)"
		if l.State.Permissive {
			how = "each behind a meridian-proxy sidecar with an SVID of its service account, mTLS or plaintext (PERMISSIVE)"
		}
	}
	say("  demo app: %d instances, %s; every cluster sees them all (%s)", total, how, since(t))
	return nil
}

// startInstance starts one demo instance: proxyless, calling its
// upstreams over xds:///; or behind a meridian-proxy sidecar, which serves
// its inbound port and one upstream port per upstream service.
func (l *Lab) startInstance(ctx context.Context, c *ClusterState, role string, in Instance) error {
	args := []string{"serve", "--service", in.Service, "--cluster", c.Name, "--namespace", Namespace,
		"--locality", c.Region + "/" + in.Zone}
	if in.Version != "" {
		args = append(args, "--version", in.Version)
	}
	if l.opts.Publish == nil {
		args = append(args, "--register", c.GRPC, "--ttl", workloadTTL.String(), "--service-account", in.ServiceAccount())
	}
	if !l.State.Sidecars {
		env, err := xdsEnv(c, c.Name+"/"+role, in.Zone)
		if err != nil {
			return err
		}
		args = append(args, "--listen", in.Address)
		for _, u := range in.Upstreams {
			args = append(args, "--upstream", u+"="+demoTarget(u))
		}
		return l.spawnEnv(c, role, env, "meridian-demo", args...)
	}
	ip, _, _ := net.SplitHostPort(in.Address)
	_, appPort, _ := net.SplitHostPort(in.App)
	proxy, err := l.sidecarArgs(ctx, c, role, in.ServiceAccount(), ip, in.Zone)
	if err != nil {
		return err
	}
	proxy = append(proxy, "--inbound", in.Address+"="+appPort, "--inbound-ports", appPort)
	args = append(args, "--listen", in.App, "--advertise", in.Address)
	for k, u := range in.Upstreams {
		up := net.JoinHostPort(ip, strconv.Itoa(upstreamPortBase+k))
		proxy = append(proxy, "--upstream", up+"="+demoHost(u))
		args = append(args, "--upstream", u+"="+up)
	}
	if err := l.spawn(c, role+"-proxy", "meridian-proxy", proxy...); err != nil {
		return err
	}
	return l.spawn(c, role, "meridian-demo", args...)
}

// sidecarArgs are the flags of a meridian-proxy sidecar without capture
// whose ports live on ip, running as service account sa of the demo's
// namespace.
func (l *Lab) sidecarArgs(ctx context.Context, c *ClusterState, role, sa, ip, zone string) ([]string, error) {
	args, err := l.proxyArgs(ctx, c, role, Namespace, sa, ip, zone)
	return append(args, "--mode", "sidecar", "--capture", "false"), err
}

// proxyArgs are the flags every meridian-proxy of the lab shares, sidecar
// or gateway: its node, its own ports on ip, and its identity — a join
// token for service account sa of namespace ns, spent at the CA service on
// the proxy's first SVID, with which it connects to meridiand's TLS xDS
// port, is attested, and gets its secrets over SDS.
func (l *Lab) proxyArgs(ctx context.Context, c *ClusterState, role, ns, sa, ip, zone string) ([]string, error) {
	token, err := l.JoinToken(ctx, c.Name, role, ns, sa)
	if err != nil {
		return nil, err
	}
	at := func(port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }
	return []string{"--xds-address", c.XDS, "--xds-tls", "--ca-url", c.CA, "--root-cert", l.RootCert(), "--join-token-file", token,
		"--cluster", c.Name, "--namespace", ns, "--service-account", sa,
		"--id", c.Name + "/" + role, "--locality", c.Region + "/" + zone,
		"--admin-address", at(proxyAdminPort), "--metrics-address", at(proxyMetricsPort), "--health-address", at(proxyHealthPort),
		"--access-log", "off", "--log-format", "text"}, nil
}

// RootCert is the file holding the lab's root certificate (PEM): what a
// proxy verifies the CA service and meridiand by (meridian-proxy
// --root-cert).
func (l *Lab) RootCert() string { return filepath.Join(l.keys.caDir, service.RootCertFile) }

// JoinToken mints a workload join token for service account sa of
// namespace ns from a cluster's meridiand with `meridianctl trust
// join-token`, and writes it to a file for a proxy's --join-token-file
// (named after role, in the cluster's directory). meridiand mints only for
// callers on its loopback: in netns mode meridianctl runs inside the
// cluster's namespace and asks its loopback address.
func (l *Lab) JoinToken(ctx context.Context, cluster, role, ns, sa string) (string, error) {
	c, err := l.State.Cluster(cluster)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := l.LocalCtl(ctx, cluster, "trust", "join-token", "--namespace", ns, "--service-account", sa, "--ttl", "10m", "-o", "json")
	if err != nil {
		return "", fmt.Errorf("lab: a join token for %s/%s from %s: %w", ns, sa, c.Name, err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(out, &tok); err != nil || tok.Token == "" {
		return "", fmt.Errorf("lab: no token in meridianctl's answer for %s/%s from %s (%v): %s", ns, sa, c.Name, err, out)
	}
	dir := filepath.Join(c.DataDir, "tokens")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	file := filepath.Join(dir, role+".token")
	if err := os.WriteFile(file, []byte(tok.Token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	return file, nil
}

// LocalCtl runs meridianctl ARGS --server ADDR as a caller on a
// cluster's meridiand's own host, as the trust component's sensitive
// steps (join tokens, root rotation) require: in netns mode inside the
// cluster's namespace, asking its loopback address. It returns what
// meridianctl wrote to stdout; an error carries its stderr.
func (l *Lab) LocalCtl(ctx context.Context, cluster string, args ...string) ([]byte, error) {
	c, err := l.State.Cluster(cluster)
	if err != nil {
		return nil, err
	}
	server := c.GRPC
	path, pre := l.binary("meridianctl"), []string{}
	if c.Netns != "" {
		server = net.JoinHostPort("127.0.0.1", strconv.Itoa(GRPCPort))
		path, pre = "ip", []string{"netns", "exec", c.Netns, path}
	}
	args = append(append(pre, args...), "--server", server)
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), labEnv+"="+l.State.StateDir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", path, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// startGateways starts every cluster's ingress and east-west gateways
// (meridian-proxy in those modes, configured by their meridiand with the
// default listeners: ingress routes every HTTP and gRPC mesh service by
// authority, east-west passes mTLS through by SNI), waits until each has
// applied its first complete configuration, and until the frontend
// answers through every ingress gateway.
func (l *Lab) startGateways(ctx context.Context, say func(string, ...any)) error {
	t := time.Now()
	for i := range l.State.Clusters {
		c := &l.State.Clusters[i]
		for _, gw := range []struct {
			mode, addr string
			port       uint32
		}{{string(translate.ModeIngress), c.Ingress, IngressPort}, {string(translate.ModeEastWest), c.EastWest, EastWestPort}} {
			ip, _, _ := net.SplitHostPort(gw.addr)
			role := gw.mode + "-gateway"
			args, err := l.proxyArgs(ctx, c, role, GatewayNamespace, role, ip, c.Zones[0])
			if err != nil {
				return err
			}
			args = append(args, "--mode", gw.mode,
				"--listener-port", strconv.Itoa(int(gw.port)),
				"--bind", translate.GatewayName(translate.Mode(gw.mode), gw.port)+"="+gw.addr)
			if err := l.spawn(c, role, "meridian-proxy", args...); err != nil {
				return err
			}
		}
	}
	hasFrontend := slices.ContainsFunc(l.State.Clusters, func(c ClusterState) bool {
		return slices.ContainsFunc(c.Instances, func(in Instance) bool { return in.Service == Frontend })
	})
	for i := range l.State.Clusters {
		c := &l.State.Clusters[i]
		for role, addr := range map[string]string{"ingress-gateway": c.Ingress, "east-west-gateway": c.EastWest} {
			ip, _, _ := net.SplitHostPort(addr)
			if err := l.waitProxy(ctx, c, role, ip); err != nil {
				return err
			}
		}
		if !hasFrontend {
			continue // a topology of its own (the e2e suite's)
		}
		err := poll(ctx, 60*time.Second, func(ctx context.Context) error {
			_, err := CallThrough(ctx, c.Ingress, Frontend)
			return err
		})
		if err != nil {
			return fmt.Errorf("lab: %s does not answer through the ingress gateway of %s: %w (see %s)", Frontend, c.Name, err, l.logFile(c.Name+".ingress-gateway"))
		}
	}
	how := "ready"
	if hasFrontend {
		how = "ready; " + Frontend + " answers through every ingress"
	}
	say("  gateways: an ingress and an east-west gateway per cluster, %s (%s)", how, since(t))
	return nil
}

// waitProxy waits until the meridian-proxy whose ports live on ip has
// applied its first complete configuration (its /ready), failing early
// when the process exits.
func (l *Lab) waitProxy(ctx context.Context, c *ClusterState, role, ip string) error {
	name := c.Name + "." + role
	p := l.proc(name)
	health := "http://" + net.JoinHostPort(ip, strconv.Itoa(proxyHealthPort)) + "/ready"
	err := poll(ctx, 60*time.Second, func(ctx context.Context) error {
		if p != nil && p.exited() {
			return fmt.Errorf("exited (%v)", p.err)
		}
		_, err := get(ctx, health)
		return err
	})
	if err != nil {
		return fmt.Errorf("lab: meridian-proxy %s is not ready after 60s: %w (see %s)", name, err, l.logFile(name))
	}
	return nil
}

// CallThrough calls a demo service once through a gateway (an ingress
// gateway's address), naming it by its mesh host as the gRPC authority,
// and returns the path the call took.
func CallThrough(ctx context.Context, gateway, service string) (*demopb.CallReply, error) {
	conn, err := grpc.NewClient("passthrough:///"+gateway, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(demoHost(service)))
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return demopb.NewDemoClient(conn).Call(ctx, &demopb.CallRequest{Caller: "lab-ingress-check"})
}

// demoHost is a demo service's mesh host and port.
func demoHost(service string) string {
	return translate.Host(registry.ServiceKey{Namespace: Namespace, Name: service}, translate.DefaultDomain) + ":" + strconv.Itoa(DemoPort)
}

// servingEndpoints counts the serving endpoints of one namespace.
func servingEndpoints(d daemon.RegistryDump, ns string) int {
	n := 0
	for _, s := range d.Services {
		if s.Namespace != ns {
			continue
		}
		for _, e := range s.Endpoints {
			if e.EffectiveHealth.Serving() {
				n++
			}
		}
	}
	return n
}

// applyPolicies applies the demo's policies through the first cluster's
// policy API, and waits until federation carried them to every cluster:
// no user may call before the residency rule is in force everywhere.
func (l *Lab) applyPolicies(ctx context.Context, say func(string, ...any)) error {
	t := time.Now()
	c := &l.State.Clusters[0]
	conn, err := grpc.NewClient(c.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer conn.Close()
	actx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	resp, err := policyapipb.NewPolicyServiceClient(conn).Apply(actx, &policyapipb.ApplyRequest{
		Sources: []*policyapipb.Source{{Name: "lab-policies.yaml", Data: []byte(l.State.Policies)}},
	}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("lab: applying the demo's policies through %s: %w", c.Name, err)
	}
	var applied []string
	want := map[string]string{} // "Kind ns/name" → resourceVersion
	for _, r := range resp.GetResults() {
		ref := r.GetRef().GetKind() + " " + r.GetRef().GetNamespace() + "/" + r.GetRef().GetName()
		applied = append(applied, ref)
		want[ref] = r.GetResourceVersion()
	}
	for _, w := range resp.GetWarnings() {
		say("  policy warning: %s %s: %s", w.GetObject(), w.GetField(), w.GetMessage())
	}
	stray := slices.ContainsFunc(l.State.Clusters, func(c ClusterState) bool {
		return slices.ContainsFunc(c.Instances, func(in Instance) bool { return in.Stray })
	})
	for i := range l.State.Clusters {
		c := &l.State.Clusters[i]
		err := poll(ctx, 60*time.Second, func(ctx context.Context) error {
			if err := holds(ctx, c, want); err != nil || !stray {
				return err
			}
			return blocksStray(ctx, c)
		})
		if err != nil {
			return fmt.Errorf("lab: the demo's policies are not in force in every cluster after 60s: %w", err)
		}
	}
	say("  policies: %s, in force in every cluster (%s)", strings.Join(applied, ", "), since(t))
	return nil
}

// blocksStray reports nil when the residency rule is in force in a
// cluster's engine — the one its xDS server pushes: explain shows the stray
// customer-records blocked for the cluster's own clients.
func blocksStray(ctx context.Context, c *ClusterState) error {
	conn, err := grpc.NewClient(c.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := policyapipb.NewLocalityServiceClient(conn).Explain(ctx, &policyapipb.ExplainRequest{Service: CustomerRecords + "." + Namespace, From: c.Name})
	if err != nil {
		return err
	}
	b, err := resp.GetExplanation().MarshalJSON()
	if err != nil {
		return err
	}
	var ex struct {
		Blocked []json.RawMessage `json:"blocked"`
	}
	if err := json.Unmarshal(b, &ex); err != nil {
		return err
	}
	if len(ex.Blocked) == 0 {
		return fmt.Errorf("%s does not block the stray %s yet", c.Name, CustomerRecords)
	}
	return nil
}

// holds reports nil when a cluster's policy API holds every object of
// want at its resourceVersion.
func holds(ctx context.Context, c *ClusterState, want map[string]string) error {
	conn, err := grpc.NewClient(c.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := policyapipb.NewPolicyServiceClient(conn).List(ctx, &policyapipb.ListRequest{Namespace: Namespace})
	if err != nil {
		return err
	}
	got := map[string]string{}
	for _, o := range resp.GetObjects() {
		m := o.GetManifest().AsMap()
		md, _ := m["metadata"].(map[string]any)
		kind, _ := m["kind"].(string)
		ns, _ := md["namespace"].(string)
		name, _ := md["name"].(string)
		rv, _ := md["resourceVersion"].(string)
		got[kind+" "+ns+"/"+name] = rv
	}
	for ref, rv := range want {
		if got[ref] != rv {
			return fmt.Errorf("%s holds %s at version %q, not %q", c.Name, ref, got[ref], rv)
		}
	}
	return nil
}

// entryServices are what the traffic generators call.
func (l *Lab) entryServices() []string {
	out := []string{Frontend}
	for _, c := range l.State.Clusters {
		if isEU(c.Cluster) {
			return append(out, CustomerRecords)
		}
	}
	return out
}

// startTraffic starts a traffic generator in every cluster ("its users")
// and waits until each has had an answer from every entry service.
func (l *Lab) startTraffic(ctx context.Context, say func(string, ...any)) error {
	if l.opts.Rate < 0 {
		return nil
	}
	entries := l.entryServices()
	t := time.Now()
	for i := range l.State.Clusters {
		c := &l.State.Clusters[i]
		args := []string{"load", "--caller", "users@" + c.Name, "--stats", c.Users,
			"--rate", strconv.FormatFloat(l.opts.Rate, 'f', -1, 64), "--print", "0"}
		var env []string
		if l.State.Sidecars {
			ip, _, _ := net.SplitHostPort(c.Users)
			proxy, err := l.sidecarArgs(ctx, c, "users", "users", ip, c.Zones[0])
			if err != nil {
				return err
			}
			for k, e := range entries {
				up := net.JoinHostPort(ip, strconv.Itoa(upstreamPortBase+k))
				proxy = append(proxy, "--upstream", up+"="+demoHost(e))
				args = append(args, "--target", e+"="+up)
			}
			if err := l.spawn(c, "users-proxy", "meridian-proxy", proxy...); err != nil {
				return err
			}
			// The users' first calls find their sidecar configured.
			if err := l.waitProxy(ctx, c, "users-proxy", ip); err != nil {
				return err
			}
		} else {
			var err error
			if env, err = xdsEnv(c, c.Name+"/users", c.Zones[0]); err != nil {
				return err
			}
			for _, e := range entries {
				args = append(args, "--target", e+"="+demoTarget(e))
			}
		}
		if err := l.spawnEnv(c, "users", env, "meridian-demo", args...); err != nil {
			return err
		}
	}
	for i := range l.State.Clusters {
		c := &l.State.Clusters[i]
		err := poll(ctx, 60*time.Second, func(ctx context.Context) error {
			r, err := fetchUsers(ctx, c.Users, 2*time.Second)
			if err != nil {
				return err
			}
			for _, e := range entries {
				if tr, _ := r.Target(e); tr.OK == 0 {
					return fmt.Errorf("no answer yet from %s for the users of %s (%s; last error: %s)", e, c.Name, tr.Summary(), tr.LastError)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("lab: traffic does not flow: %w (see %s)", err, l.logFile(c.Name+".users"))
		}
	}
	say("  traffic: users in every cluster call %s, %g calls/s each; all answered (%s)", strings.Join(entries, " and "), l.opts.Rate, since(t))
	return nil
}

// RestartMeridiand crashes a cluster's meridiand (SIGKILL: no clean
// shutdown, no deregistration, no goodbye to gossip) and starts it again
// with the same configuration and etcd data; it returns once it is ready.
func (l *Lab) RestartMeridiand(ctx context.Context, cluster string) error {
	c, err := l.State.Cluster(cluster)
	if err != nil {
		return err
	}
	name := c.Name + ".meridiand"
	if p := l.proc(name); p != nil {
		_ = p.signalGroup(syscall.SIGKILL)
		<-p.done
	}
	if err := l.spawn(c, "meridiand", "meridiand", "--config", configPath(c)); err != nil {
		return err
	}
	return l.waitMeridiand(ctx, c)
}
