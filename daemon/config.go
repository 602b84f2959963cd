package daemon

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/meridian-mesh/meridian/inject"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/ui"
	xdsserver "github.com/meridian-mesh/meridian/xds/server"
)

// Config is meridiand's configuration: a YAML file (Kubernetes YAML
// semantics, unknown fields rejected), overridden by flags. Durations are
// written as "30s". DefaultConfig gives every default.
type Config struct {
	// Cluster describes this control plane's cluster: name and region are
	// required; network, labels (for example jurisdiction: eu) and the
	// east-west gateways' addresses are optional.
	Cluster registry.Cluster `json:"cluster"`
	// DataDir holds the embedded etcd's data. Default "CLUSTER.meridian" in
	// the working directory, as etcd defaults to "NAME.etcd". Unused with
	// an external etcd.
	DataDir string `json:"dataDir,omitempty"`
	Etcd    Etcd   `json:"etcd,omitempty"`
	// GRPCAddr is where meridiand serves gRPC in plaintext (xDS, the
	// Workload API, the policy and trust admin APIs): "host:port", port 0
	// for any free port. Default ":15010". With trust on, xDS is also
	// served over TLS on xds.tlsAddr.
	GRPCAddr string `json:"grpcAddr,omitempty"`
	// AdminAddr is where meridiand serves /healthz, /readyz, /metrics and
	// /debug/registry over HTTP. Default ":15014".
	AdminAddr string   `json:"adminAddr,omitempty"`
	Kube      Kube     `json:"kube,omitempty"`
	Workload  Workload `json:"workload,omitempty"`
	Log       Log      `json:"log,omitempty"`
	// Inject configures the sidecar-injection webhook (package inject).
	Inject inject.Settings `json:"inject,omitzero"`
	// UI configures the /ui dashboard (package ui).
	UI ui.Settings `json:"ui,omitzero"`
	// Federation joins this control plane to the mesh (package federation).
	Federation Federation `json:"federation,omitzero"`
	// Trust runs this cluster's CA and hands out identities (package
	// trust/service).
	Trust Trust `json:"trust,omitzero"`
	// Policy configures the policy API and live drills (package policyapi).
	Policy Policy `json:"policy,omitzero"`
	// XDS configures the xDS server (package xds/server): the mesh's
	// outbound traffic policy, where gateway credentials are read, and
	// its TLS port.
	XDS XDS `json:"xds,omitzero"`
	// ShutdownTimeout bounds how long in-flight requests may finish after
	// SIGTERM before they are cut. Default 10s.
	ShutdownTimeout metav1.Duration `json:"shutdownTimeout,omitempty"`
}

// XDS is the "xds" section: the xDS server's own settings, and where
// meridiand serves it over TLS.
type XDS struct {
	xdsserver.Settings `json:",inline"`
	// TLSAddr is where meridiand serves xDS over TLS when trust is on,
	// with its member SVID as server certificate; a proxy presenting its
	// SVID as client certificate is attested by it (meridian-proxy
	// --xds-tls). Default: grpcAddr's host, port 15011 (port 0 when
	// grpcAddr's is 0); "-" for nowhere. Istio serves TLS xDS on 15012;
	// here 15012 is the CA service's (trust.caAddr), so the TLS xDS port
	// takes 15011, Istio's former mTLS xDS port, beside the plaintext 15010.
	TLSAddr string `json:"tlsAddr,omitempty"`
}

// DefaultXDSTLSPort is the TLS xDS port when xds.tlsAddr is not set.
const DefaultXDSTLSPort = "15011"

// xdsTLSAddr returns where the TLS xDS server listens, "" for nowhere:
// it needs trust's member SVID.
func (c *Config) xdsTLSAddr() string {
	switch a := c.XDS.TLSAddr; {
	case !c.Trust.Enabled || a == "-":
		return ""
	case a != "":
		return a
	}
	host, port, err := net.SplitHostPort(c.GRPCAddr)
	if err != nil {
		return ""
	}
	if port != "0" {
		port = DefaultXDSTLSPort
	}
	return net.JoinHostPort(host, port)
}

// Etcd selects an external etcd cluster instead of the embedded one.
type Etcd struct {
	// Endpoints of an external etcd ("https://10.0.0.5:2379"). Empty
	// starts an embedded single-node etcd in DataDir.
	Endpoints []string `json:"endpoints,omitempty"`
	// TLS for the external etcd: client certificate and key, CA bundle.
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	CAFile   string `json:"caFile,omitempty"`
	// Prefix of every key; clusters sharing one etcd need distinct ones.
	// Default "/meridian/".
	Prefix string `json:"prefix,omitempty"`
	// ListenClient is where the embedded etcd listens for clients, so that
	// other replicas can use it. Default "127.0.0.1:0".
	ListenClient string `json:"listenClient,omitempty"`
}

// Kube configures discovery from a Kubernetes API server.
type Kube struct {
	// Enabled turns Kubernetes discovery on. Off by default: meridiand runs
	// without Kubernetes (the lab, on-prem) and learns workloads from the
	// Workload API.
	Enabled bool `json:"enabled,omitempty"`
	// Kubeconfig and Context select the API server as kubectl does: the
	// file, else $KUBECONFIG, else ~/.kube/config, else the in-cluster
	// service account; Context overrides the file's current context.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	Context    string `json:"context,omitempty"`
	// Namespace limits discovery to one namespace; empty watches all.
	Namespace string `json:"namespace,omitempty"`
}

// Workload configures the Workload API.
type Workload struct {
	// DefaultTTL applies to registrations that give none. Default 30s.
	DefaultTTL metav1.Duration `json:"defaultTTL,omitempty"`
	// Grace is how long a workload whose TTL ran out stays, unhealthy,
	// before it is removed. Default 1m.
	Grace metav1.Duration `json:"grace,omitempty"`
}

// Log configures the process's structured logs.
type Log struct {
	// Format is "text" (default) or "json".
	Format string `json:"format,omitempty"`
	// Level is debug, info (default), warn or error.
	Level string `json:"level,omitempty"`
}

// DefaultConfig returns the defaults, with no cluster name or region:
// those have none.
func DefaultConfig() Config {
	return Config{
		GRPCAddr:        ":15010",
		AdminAddr:       ":15014",
		Workload:        Workload{DefaultTTL: metav1.Duration{Duration: 30 * time.Second}, Grace: metav1.Duration{Duration: time.Minute}},
		Log:             Log{Format: "text", Level: "info"},
		ShutdownTimeout: metav1.Duration{Duration: 10 * time.Second},
		Inject:          inject.DefaultSettings(),
	}
}

// LoadConfigFile returns the defaults overridden by a YAML file.
func LoadConfigFile(path string) (Config, error) {
	cfg := DefaultConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("daemon: config file: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		return cfg, fmt.Errorf("daemon: config file %s: %w", path, err)
	}
	return cfg, nil
}

// dataDir returns DataDir or its default.
func (c *Config) dataDir() string {
	if c.DataDir != "" {
		return c.DataDir
	}
	return c.Cluster.Name + ".meridian"
}

// Validate reports every problem with the configuration, each naming the
// field and the flag that sets it ("cluster.region (--region): Required
// value").
func (c *Config) Validate() error {
	errs := registry.ValidateCluster(c.Cluster, field.NewPath("cluster"))
	errs = append(errs, validateListen(c.GRPCAddr, field.NewPath("grpcAddr"))...)
	errs = append(errs, validateListen(c.AdminAddr, field.NewPath("adminAddr"))...)
	if c.GRPCAddr == c.AdminAddr && !strings.HasSuffix(c.GRPCAddr, ":0") {
		errs = append(errs, field.Duplicate(field.NewPath("adminAddr"), c.AdminAddr))
	}
	etcd := field.NewPath("etcd")
	for i, e := range c.Etcd.Endpoints {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, field.Invalid(etcd.Child("endpoints").Index(i), e, "want a URL such as https://10.0.0.5:2379"))
		}
	}
	if (c.Etcd.CertFile == "") != (c.Etcd.KeyFile == "") {
		errs = append(errs, field.Required(etcd.Child("keyFile"), "a client certificate needs its key, and a key its certificate"))
	}
	for name, f := range map[string]string{"certFile": c.Etcd.CertFile, "keyFile": c.Etcd.KeyFile, "caFile": c.Etcd.CAFile} {
		if f == "" {
			continue
		}
		if len(c.Etcd.Endpoints) == 0 {
			errs = append(errs, field.Forbidden(etcd.Child(name), "TLS files apply to an external etcd: give etcd.endpoints too"))
		} else if _, err := os.Stat(f); err != nil {
			errs = append(errs, field.Invalid(etcd.Child(name), f, err.Error()))
		}
	}
	if c.Etcd.Prefix != "" && (!strings.HasPrefix(c.Etcd.Prefix, "/") || !strings.HasSuffix(c.Etcd.Prefix, "/")) {
		errs = append(errs, field.Invalid(etcd.Child("prefix"), c.Etcd.Prefix, "must start and end with /"))
	}
	if c.Etcd.ListenClient != "" {
		errs = append(errs, validateListen(c.Etcd.ListenClient, etcd.Child("listenClient"))...)
	}
	if !c.Kube.Enabled {
		kube := field.NewPath("kube")
		for name, v := range map[string]string{"kubeconfig": c.Kube.Kubeconfig, "context": c.Kube.Context, "namespace": c.Kube.Namespace} {
			if v != "" {
				errs = append(errs, field.Forbidden(kube.Child(name), "Kubernetes discovery is off: turn it on with kube.enabled"))
			}
		}
	}
	wl := field.NewPath("workload")
	if d := c.Workload.DefaultTTL.Duration; d < time.Second || d > 24*time.Hour {
		errs = append(errs, field.Invalid(wl.Child("defaultTTL"), d.String(), "must be between 1s and 24h"))
	}
	if d := c.Workload.Grace.Duration; d <= 0 {
		errs = append(errs, field.Invalid(wl.Child("grace"), d.String(), "must be positive"))
	}
	if c.ShutdownTimeout.Duration <= 0 {
		errs = append(errs, field.Invalid(field.NewPath("shutdownTimeout"), c.ShutdownTimeout.Duration.String(), "must be positive"))
	}
	errs = append(errs, validateLog(c.Log, field.NewPath("log"))...)
	errs = append(errs, c.Inject.Validate(field.NewPath("inject"))...)
	errs = append(errs, c.UI.Validate(field.NewPath("ui"))...)
	errs = append(errs, c.XDS.validate(field.NewPath("xds"), c)...)
	errs = append(errs, c.Federation.validate(field.NewPath("federation"))...)
	errs = append(errs, c.Trust.validate(field.NewPath("trust"))...)
	errs = append(errs, c.Policy.validate(field.NewPath("policy"))...)
	if len(errs) == 0 {
		return nil
	}
	lines := make([]string, len(errs))
	for i, e := range errs {
		if flag := flagOf(e.Field); flag != "" {
			e.Field += " (" + flag + ")"
		}
		lines[i] = "\n  " + e.Error()
	}
	return fmt.Errorf("daemon: invalid configuration:%s", strings.Join(lines, ""))
}

func (x *XDS) validate(path *field.Path, c *Config) field.ErrorList {
	errs := x.Settings.Validate(path)
	switch a := x.TLSAddr; {
	case a == "" || a == "-":
	case !c.Trust.Enabled:
		errs = append(errs, field.Forbidden(path.Child("tlsAddr"), "the TLS xDS port serves with this cluster's member SVID: turn trust on with trust.enabled"))
	default:
		errs = append(errs, validateListen(a, path.Child("tlsAddr"))...)
		if (a == c.GRPCAddr || a == c.AdminAddr || a == c.Trust.CAAddr) && !strings.HasSuffix(a, ":0") {
			errs = append(errs, field.Duplicate(path.Child("tlsAddr"), a))
		}
	}
	return errs
}

func validateListen(addr string, path *field.Path) field.ErrorList {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return field.ErrorList{field.Invalid(path, addr, "want host:port, such as :15010 or 127.0.0.1:0")}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n > 65535 {
		return field.ErrorList{field.Invalid(path, addr, "the port must be a number between 0 and 65535")}
	}
	return nil
}
