package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Ports every cluster's meridiand and traffic generator use, each on the
// cluster's own IP.
const (
	GRPCPort = 15010
	// XDSTLSPort is meridiand's TLS xDS port (xds.tlsAddr), where the
	// lab's proxies connect with their SVIDs.
	XDSTLSPort     = 15011
	AdminPort      = 15014
	GossipPort     = 7946
	FederationPort = 7947
	UsersPort      = 15080
	// IngressPort is where each cluster's ingress gateway takes traffic
	// into the mesh (plaintext HTTP and gRPC, routed by Host/authority);
	// EastWestPort is where its east-west gateway takes other networks'
	// mTLS by SNI (translate's default east-west port).
	IngressPort  = 8080
	EastWestPort = 15443
	// Ports of a sidecar on its instance's IP: the upstream ports its
	// application dials (one per upstream service), and its admin,
	// metrics and health ports.
	upstreamPortBase = 15101
	proxyAdminPort   = 15000
	proxyMetricsPort = 15090
	proxyHealthPort  = 15021
	// appPortBase numbers the applications' loopback ports behind
	// sidecars.
	appPortBase = 20000
)

// State is lab.json: everything a script needs to drive a running lab.
type State struct {
	// StateDir is the lab's directory, absolute.
	StateDir string `json:"stateDir"`
	// Supervisor is the pid of `meridianctl lab up`, which stops the lab
	// on Ctrl-C or SIGTERM.
	Supervisor int            `json:"supervisor"`
	Started    time.Time      `json:"started"`
	Network    Network        `json:"network"`
	Clusters   []ClusterState `json:"clusters"`
	// Policies are the YAML documents applied at start.
	Policies string `json:"policies"`
	// Sidecars says the demo instances and users run behind meridian-proxy.
	Sidecars bool `json:"sidecars,omitempty"`
	// Permissive says the sidecars also take plaintext (Options.Permissive).
	Permissive bool `json:"permissive,omitempty"`
	// Notes are what the lab could not do on this machine, and why.
	Notes []string `json:"notes,omitempty"`
}

// Network is how the clusters are connected.
type Network struct {
	// Mode is "netns" (a network namespace per cluster, routed through a
	// core namespace) or "loopback" (one loopback address range per
	// cluster; an outage stops the cluster's processes).
	Mode string `json:"mode"`
	// Prefix starts the names of the lab's namespaces and links.
	Prefix string `json:"prefix"`
	// Subnet holds every lab address: SUBNET.I.H, cluster I, host H.
	Subnet string `json:"subnet"`
	// Latency is the one-way delay added on each cluster's link (netns
	// with sch_netem only), empty when none.
	Latency string `json:"latency,omitempty"`
}

// ClusterState is one cluster of a running lab.
type ClusterState struct {
	Cluster
	// Netns is the cluster's network namespace (netns mode).
	Netns string `json:"netns,omitempty"`
	IP    string `json:"ip"`
	// GRPC is meridiand's gRPC address: Workload API, xDS, policy API
	// (meridianctl --server).
	GRPC string `json:"grpc"`
	// XDS is meridiand's TLS xDS address, and CA its CA service's URL:
	// where the lab's proxies enroll with a join token and get their
	// configuration as workloads with SVIDs.
	XDS string `json:"xds"`
	CA  string `json:"ca"`
	// Admin is meridiand's admin URL (/readyz, /metrics, /debug/...).
	Admin string `json:"admin"`
	// Dashboard is meridiand's dashboard URL, when it serves one.
	Dashboard  string `json:"dashboard,omitempty"`
	Gossip     string `json:"gossip"`
	Federation string `json:"federation"`
	DataDir    string `json:"dataDir"`
	// Users is the traffic generator's /stats address: "the users" of
	// this cluster calling the demo's entry services.
	Users string `json:"users"`
	// Ingress is the ingress gateway's address: gRPC and HTTP into the
	// mesh, routed by authority (Host), for example
	// frontend.shop.svc.cluster.local:9090.
	Ingress string `json:"ingress"`
	// EastWest is the east-west gateway's address, published as the
	// cluster's gateway (cluster.gateways) for clusters on other networks.
	EastWest  string     `json:"eastWest"`
	Instances []Instance `json:"instances"`
}

// plan lays the lab out: addresses of every cluster, meridiand and
// instance. Cluster i (from 1) owns SUBNET.i.0/24: .1 meridiand, .2 the
// traffic generator, .3 the ingress gateway, .4 the east-west gateway, .10
// and up the demo instances.
func plan(dir string, cs []Cluster, net Network, custom func(Cluster) []Instance, sidecars, permissive bool) *State {
	permissive = permissive && sidecars
	s := &State{StateDir: dir, Network: net, Policies: policies(cs, permissive), Sidecars: sidecars, Permissive: permissive}
	eu := false
	for _, c := range cs {
		eu = eu || isEU(c)
	}
	for i, c := range cs {
		ip := func(host int) string { return fmt.Sprintf("%s.%d.%d", net.Subnet, i+1, host) }
		hp := func(host, port int) string { return ip(host) + ":" + strconv.Itoa(port) }
		// One network: the lab routes every address to every cluster, so
		// the east-west gateways are published but traffic between
		// clusters goes direct (see the package doc).
		c.Network = "lab"
		c.Gateways = []string{hp(4, EastWestPort)}
		cl := ClusterState{
			Cluster: c, IP: ip(1), GRPC: hp(1, GRPCPort), XDS: hp(1, XDSTLSPort), CA: "https://" + hp(1, TrustPort), Admin: "http://" + hp(1, AdminPort),
			Gossip: hp(1, GossipPort), Federation: hp(1, FederationPort),
			DataDir: filepath.Join(dir, "clusters", c.Name), Users: hp(2, UsersPort),
			Ingress: hp(3, IngressPort), EastWest: hp(4, EastWestPort),
		}
		if net.Mode == modeNetns {
			cl.Netns = net.Prefix + "-" + c.Name
		}
		ins := instances(c, eu)
		if custom != nil {
			ins = custom(c)
		}
		for j, in := range ins {
			in.Address = hp(10+j, DemoPort)
			if sidecars {
				// Every application of every cluster shares loopback on
				// a loopback lab: one port each.
				in.App = fmt.Sprintf("127.0.0.1:%d", appPortBase+100*(i+1)+j)
			}
			cl.Instances = append(cl.Instances, in)
		}
		s.Clusters = append(s.Clusters, cl)
	}
	return s
}

// Cluster returns the named cluster of the lab.
func (s *State) Cluster(name string) (*ClusterState, error) {
	for i := range s.Clusters {
		if s.Clusters[i].Name == name {
			return &s.Clusters[i], nil
		}
	}
	names := make([]string, len(s.Clusters))
	for i, c := range s.Clusters {
		names[i] = c.Name
	}
	return nil, fmt.Errorf("lab: no cluster %q in this lab (it has %v)", name, names)
}

const stateFile = "lab.json"

// ErrNotRunning is returned when a state directory holds no running lab.
var ErrNotRunning = errors.New("lab: no lab is running")

// ErrDied is returned (wrapping ErrNotRunning) for a lab whose supervisor
// died without cleaning up: Down, or the next Start, cleans up after it.
var ErrDied = fmt.Errorf("%w: its supervisor died without cleaning up", ErrNotRunning)

// Load reads a lab's lab.json.
func Load(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNotRunning, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", filepath.Join(dir, stateFile), err)
	}
	return &s, nil
}

func (s *State) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	tmp := filepath.Join(s.StateDir, stateFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return os.Rename(tmp, filepath.Join(s.StateDir, stateFile))
}
