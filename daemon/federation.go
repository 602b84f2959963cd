package daemon

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/federation"
	"github.com/meridian-mesh/meridian/registry"
)

// Federation configures gossip with the other clusters' control planes
// (package federation): membership, registry and policy replication,
// leader election among this cluster's replicas.
type Federation struct {
	// Enabled joins this control plane to the mesh. Off by default, so
	// that a single cluster runs without gossip keys.
	Enabled bool `json:"enabled,omitempty"`
	// Replica names this meridiand among its cluster's replicas (default
	// the host name); the gossip name is CLUSTER/REPLICA.
	Replica string `json:"replica,omitempty"`
	// GossipAddr is where gossip listens, UDP and TCP. Default ":7946".
	GossipAddr string `json:"gossipAddr,omitempty"`
	// AdvertiseAddr is the IP other control planes reach this one at,
	// when it differs from the listen address.
	AdvertiseAddr string `json:"advertiseAddr,omitempty"`
	// GRPCAddr is where the members-only replication service listens
	// (mutual TLS from the gossip keys). Default ":7947".
	GRPCAddr string `json:"grpcAddr,omitempty"`
	// AdvertiseGRPCAddr is what other control planes dial, when it
	// differs from GRPCAddr.
	AdvertiseGRPCAddr string `json:"advertiseGRPCAddr,omitempty"`
	// AdvertiseAPIAddr is where the other replicas of this cluster send
	// clients of what only the leader serves (the Workload API): this
	// meridiand's gRPC address as they reach it. Default grpcAddr, with
	// advertiseAddr as host when grpcAddr's is unspecified.
	AdvertiseAPIAddr string `json:"advertiseAPIAddr,omitempty"`
	// Seeds are gossip addresses (host:port) of other control planes.
	Seeds []string `json:"seeds,omitempty"`
	// KeyFile holds the gossip keys: base64, one per line, the first used
	// to send. Required unless Insecure.
	KeyFile string `json:"keyFile,omitempty"`
	// Insecure runs gossip and replication without keys: throwaway labs.
	Insecure bool `json:"insecure,omitempty"`
	// Preset tunes failure detection: lan (default), wan or local.
	Preset string `json:"preset,omitempty"`
}

var federationFlags = map[string]string{
	"federation.enabled":           "--federate",
	"federation.replica":           "--replica",
	"federation.gossipAddr":        "--gossip-addr",
	"federation.advertiseAddr":     "--advertise-addr",
	"federation.grpcAddr":          "--federation-grpc-addr",
	"federation.advertiseGRPCAddr": "--advertise-federation-grpc-addr",
	"federation.advertiseAPIAddr":  "--advertise-api-addr",
	"federation.seeds":             "--seeds",
	"federation.keyFile":           "--gossip-key-file",
	"federation.insecure":          "--gossip-insecure",
	"federation.preset":            "--gossip-preset",
}

func (c *Federation) bindFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&c.Enabled, "federate", c.Enabled, "join the mesh: gossip with the other clusters' control planes")
	fs.StringVar(&c.Replica, "replica", c.Replica, "name of this replica among the cluster's meridiands (default the host name)")
	fs.StringVar(&c.GossipAddr, "gossip-addr", c.GossipAddr, "host:port where gossip listens, UDP and TCP (default :7946)")
	fs.StringVar(&c.AdvertiseAddr, "advertise-addr", c.AdvertiseAddr, "IP other control planes reach this one's gossip at")
	fs.StringVar(&c.GRPCAddr, "federation-grpc-addr", c.GRPCAddr, "host:port of the members-only replication service (default :7947)")
	fs.StringVar(&c.AdvertiseGRPCAddr, "advertise-federation-grpc-addr", c.AdvertiseGRPCAddr, "host:port other control planes dial for replication")
	fs.StringVar(&c.AdvertiseAPIAddr, "advertise-api-addr", c.AdvertiseAPIAddr, "host:port where the cluster's other replicas send Workload API clients while this one leads (default --grpc-addr)")
	fs.StringSliceVar(&c.Seeds, "seeds", c.Seeds, "gossip addresses (host:port) of other control planes to join through")
	fs.StringVar(&c.KeyFile, "gossip-key-file", c.KeyFile, "file of base64 gossip keys, one per line, the first used to send")
	fs.BoolVar(&c.Insecure, "gossip-insecure", c.Insecure, "gossip and replicate without keys (throwaway labs only)")
	fs.StringVar(&c.Preset, "gossip-preset", c.Preset, "failure-detection timing: lan, wan or local")
}

// validate checks what can be checked before anything starts; the
// federation package checks the rest when it is built.
func (c *Federation) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if !c.Enabled {
		return nil
	}
	if _, err := federation.Preset(c.Preset); err != nil {
		errs = append(errs, field.NotSupported(path.Child("preset"), c.Preset, []string{"lan", "wan", "local"}))
	}
	if c.KeyFile == "" && !c.Insecure {
		errs = append(errs, field.Required(path.Child("keyFile"), "gossip needs keys (or insecure, for a throwaway lab)"))
	}
	if c.KeyFile != "" {
		if _, err := os.Stat(c.KeyFile); err != nil {
			errs = append(errs, field.Invalid(path.Child("keyFile"), c.KeyFile, err.Error()))
		}
	}
	for name, addr := range map[string]string{"gossipAddr": c.GossipAddr, "grpcAddr": c.GRPCAddr} {
		if addr != "" {
			errs = append(errs, validateListen(addr, path.Child(name))...)
		}
	}
	if c.AdvertiseAPIAddr != "" {
		if err := registry.ValidateHostPort(c.AdvertiseAPIAddr); err != nil {
			errs = append(errs, field.Invalid(path.Child("advertiseAPIAddr"), c.AdvertiseAPIAddr, err.Error()))
		}
	}
	return errs
}

// wireFederation joins the mesh: gossip and replication on their own
// ports, /debug/federation on the admin server, the status service (for
// meridianctl status) on the shared gRPC server. The leader runners
// (GoLeader) run from OnLead. With trust, members prove their cluster with
// the member SVID (trust/member) on the replication gRPC, and a member
// whose certificate does not chain to the mesh root, or names another
// cluster than it claims, is refused and counted; the keyring still
// encrypts gossip. Without trust, holding a gossip key is the proof.
func wireFederation(_ context.Context, d *Daemon) error {
	c := d.Config.Federation
	if !c.Enabled {
		return nil
	}
	var keys [][]byte
	if c.KeyFile != "" {
		b, err := os.ReadFile(c.KeyFile)
		if err != nil {
			return fmt.Errorf("federation.keyFile: %w", err)
		}
		if keys, err = federation.ParseKeys(b); err != nil {
			return fmt.Errorf("federation.keyFile %s: %w", c.KeyFile, err)
		}
	}
	preset, err := federation.Preset(c.Preset)
	if err != nil {
		return err
	}
	apiAddr := c.AdvertiseAPIAddr
	if apiAddr == "" {
		apiAddr = d.GRPCAddr()
	}
	fc := federation.Config{
		Cluster: d.Config.Cluster, Replica: c.Replica, Registry: d.Registry, Store: d.Store,
		GossipAddr: c.GossipAddr, AdvertiseAddr: c.AdvertiseAddr, GRPCAddr: c.GRPCAddr, AdvertiseGRPCAddr: c.AdvertiseGRPCAddr,
		APIAddr: apiAddr, Seeds: c.Seeds, Keys: keys, Insecure: c.Insecure, Gossip: preset,
		OnLead: d.lead, Logger: d.Log, Metrics: d.Metrics,
	}
	if d.Trust != nil {
		fc.Credentials, fc.Authenticator = d.Trust.Member, d.Trust.Member
	}
	f, err := federation.New(fc)
	if err != nil {
		return err
	}
	d.Federation = f
	f.RegisterStatus(d.GRPC)
	d.Admin.Handle("/debug/federation", f.Handler())
	d.Go("federation", f.Run)
	d.OnClose(func() error { f.Close(); return nil })
	return nil
}
