package daemon

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

// flags maps each configuration field to the flag that sets it, so that
// validation errors can name both.
var flags = map[string]string{
	"cluster.name":        "--cluster",
	"cluster.region":      "--region",
	"cluster.network":     "--network",
	"cluster.labels":      "--labels",
	"cluster.gateways":    "--gateways",
	"dataDir":             "--data-dir",
	"etcd.endpoints":      "--etcd-endpoints",
	"etcd.certFile":       "--etcd-cert",
	"etcd.keyFile":        "--etcd-key",
	"etcd.caFile":         "--etcd-ca",
	"etcd.prefix":         "--etcd-prefix",
	"etcd.listenClient":   "--etcd-listen-client",
	"grpcAddr":            "--grpc-addr",
	"adminAddr":           "--admin-addr",
	"kube.enabled":        "--kube",
	"kube.kubeconfig":     "--kubeconfig",
	"kube.context":        "--context",
	"kube.namespace":      "--kube-namespace",
	"workload.defaultTTL": "--workload-ttl",
	"workload.grace":      "--workload-grace",
	"log.format":          "--log-format",
	"log.level":           "--log-level",
	"shutdownTimeout":     "--shutdown-timeout",
	"xds.tlsAddr":         "--xds-tls-addr",
}

// flagOf returns the flag that sets a field path ("etcd.endpoints[1]" →
// "--etcd-endpoints"), or "".
func flagOf(path string) string {
	for path != "" {
		if f, ok := flags[path]; ok {
			return f
		}
		if f, ok := federationFlags[path]; ok {
			return f
		}
		if f, ok := trustFlags[path]; ok {
			return f
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return ""
		}
		path = path[:i]
	}
	return ""
}

// BindFlags adds meridiand's flags to fs, with c's values as defaults, so
// that parsing sets c. The --config flag is not among them: see
// ConfigFromArgs.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Cluster.Name, "cluster", c.Cluster.Name, "name of this cluster, unique in the mesh (a DNS label)")
	fs.StringVar(&c.Cluster.Region, "region", c.Cluster.Region, "region of this cluster (us-east-1, onprem-east)")
	fs.StringVar(&c.Cluster.Network, "network", c.Cluster.Network, "network of this cluster; clusters on different networks reach each other through gateways")
	fs.StringToStringVar(&c.Cluster.Labels, "labels", c.Cluster.Labels, "labels of this cluster, for failover and residency policies (provider=eks,jurisdiction=eu)")
	fs.StringSliceVar(&c.Cluster.Gateways, "gateways", c.Cluster.Gateways, "host:port of this cluster's east-west gateways")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory of the embedded etcd's data (default CLUSTER.meridian)")
	fs.StringSliceVar(&c.Etcd.Endpoints, "etcd-endpoints", c.Etcd.Endpoints, "URLs of an external etcd cluster to use instead of the embedded one")
	fs.StringVar(&c.Etcd.CertFile, "etcd-cert", c.Etcd.CertFile, "client certificate for the external etcd")
	fs.StringVar(&c.Etcd.KeyFile, "etcd-key", c.Etcd.KeyFile, "client key for the external etcd")
	fs.StringVar(&c.Etcd.CAFile, "etcd-ca", c.Etcd.CAFile, "CA bundle that signs the external etcd's certificate")
	fs.StringVar(&c.Etcd.Prefix, "etcd-prefix", c.Etcd.Prefix, "prefix of every etcd key (default /meridian/)")
	fs.StringVar(&c.Etcd.ListenClient, "etcd-listen-client", c.Etcd.ListenClient, "host:port where the embedded etcd serves clients (default 127.0.0.1:0)")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "host:port of the gRPC server (Workload API); port 0 picks a free port")
	fs.StringVar(&c.XDS.TLSAddr, "xds-tls-addr", c.XDS.TLSAddr, "host:port of xDS over TLS, with trust on: proxies attested by their SVIDs as client certificates (default grpc-addr's host, port 15011; - for none)")
	fs.StringVar(&c.AdminAddr, "admin-addr", c.AdminAddr, "host:port of the admin HTTP server (/healthz, /readyz, /metrics, /debug/registry)")
	fs.BoolVar(&c.Kube.Enabled, "kube", c.Kube.Enabled, "discover Services and endpoints from Kubernetes")
	fs.StringVar(&c.Kube.Kubeconfig, "kubeconfig", c.Kube.Kubeconfig, "path to a kubeconfig file (default $KUBECONFIG, ~/.kube/config, or in-cluster)")
	fs.StringVar(&c.Kube.Context, "context", c.Kube.Context, "kubeconfig context to use (default the file's current context)")
	fs.StringVar(&c.Kube.Namespace, "kube-namespace", c.Kube.Namespace, "discover Services in this namespace only (default all)")
	fs.DurationVar(&c.Workload.DefaultTTL.Duration, "workload-ttl", c.Workload.DefaultTTL.Duration, "TTL of workload registrations that give none")
	fs.DurationVar(&c.Workload.Grace.Duration, "workload-grace", c.Workload.Grace.Duration, "how long an expired workload stays, unhealthy, before it is removed")
	fs.StringVar(&c.Log.Format, "log-format", c.Log.Format, "log format: text or json")
	fs.StringVar(&c.Log.Level, "log-level", c.Log.Level, "log level: debug, info, warn or error")
	fs.DurationVar(&c.ShutdownTimeout.Duration, "shutdown-timeout", c.ShutdownTimeout.Duration, "how long in-flight requests may finish on SIGTERM")
	c.Federation.bindFlags(fs)
	c.Trust.bindFlags(fs)
}

// ConfigFromArgs returns the configuration meridiand's command line asks
// for: the defaults, then the file named by --config, then every flag given
// — flags win, as with the kubelet. The result is validated.
func ConfigFromArgs(args []string) (Config, error) {
	parse := func(cfg *Config) (string, error) {
		fs := pflag.NewFlagSet("meridiand", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var file string
		fs.StringVar(&file, "config", "", "")
		cfg.BindFlags(fs)
		if err := fs.Parse(args); err != nil {
			return "", fmt.Errorf("daemon: %w", err)
		}
		if fs.NArg() > 0 {
			return "", fmt.Errorf("daemon: unexpected argument %q (meridiand takes only flags)", fs.Arg(0))
		}
		return file, nil
	}
	cfg := DefaultConfig()
	file, err := parse(&cfg)
	if err != nil {
		return cfg, err
	}
	if file != "" {
		if cfg, err = LoadConfigFile(file); err != nil {
			return cfg, err
		}
		if _, err := parse(&cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, cfg.Validate()
}
