package sidecar

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meridian-mesh/meridian/sidecar/enroll"
	"github.com/meridian-mesh/meridian/sidecar/sched"
	"github.com/meridian-mesh/meridian/sidecar/telemetry"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
)

// Options are meridian-proxy's command line. Every flag can also come from
// the environment (the variable in its help), so that a sidecar injected
// into a pod takes its identity from the downward API: POD_NAME,
// POD_NAMESPACE, SERVICE_ACCOUNT.
type Options struct {
	XDSAddress, XDSProtocol        string
	XDSCA, XDSCert, XDSKey         string
	XDSTokenFile, XDSServerID      string
	XDSTLS                         bool
	CAURL, JoinTokenFile, RootCert string
	SVIDTTL                        time.Duration
	Mode, ID, Cluster, Namespace   string
	ServiceAccount, Locality       string
	InboundPorts                   string
	Labels, OutboundPolicy         string
	ListenerPort                   uint32
	Capture                        string
	Inbound, Upstreams, Rebind     []string
	HTTPProxy                      string
	GatewayCert, GatewayKey        string
	AdminAddress, MetricsAddress   string
	HealthAddress                  string
	OTLPEndpoint                   string
	OTLPInsecure, TraceAll         bool
	TraceSampleRatio               float64
	AccessLog, LogLevel, LogFormat string
	MaxConnections                 int
	GCHeapFloorMB                  int
	// SchedSlice is the CPU time slice the command asks the kernel for
	// (package sched); the proxy itself does not apply it.
	SchedSlice time.Duration
}

func env(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func envOr(def string, names ...string) string {
	if v := env(names...); v != "" {
		return v
	}
	return def
}

// BindFlags declares the flags, with defaults from the environment.
func (o *Options) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.XDSAddress, "xds-address", env("MERIDIAN_XDS_ADDRESS"), "meridiand's xDS address, host:port ($MERIDIAN_XDS_ADDRESS)")
	fs.StringVar(&o.XDSProtocol, "xds-protocol", envOr("auto", "MERIDIAN_XDS_PROTOCOL"), "auto (delta, falling back to state of the world), delta or sotw")
	fs.StringVar(&o.XDSCA, "xds-ca", env("MERIDIAN_XDS_CA"), "PEM roots to verify meridiand's TLS certificate; plaintext without")
	fs.StringVar(&o.XDSServerID, "xds-server-id", env("MERIDIAN_XDS_SERVER_ID"), "meridiand's SPIFFE ID: verify its certificate by SPIFFE ID against --xds-ca (the mesh bundle) instead of by host name")
	fs.StringVar(&o.XDSCert, "xds-cert", env("MERIDIAN_XDS_CERT"), "PEM client certificate for meridiand")
	fs.StringVar(&o.XDSKey, "xds-key", env("MERIDIAN_XDS_KEY"), "PEM key of --xds-cert")
	fs.StringVar(&o.XDSTokenFile, "xds-token-file", envOr(defaultTokenFile(), "MERIDIAN_XDS_TOKEN_FILE"), "service-account token sent to meridiand to attest this proxy (Kubernetes); empty for none")
	fs.BoolVar(&o.XDSTLS, "xds-tls", env("MERIDIAN_XDS_TLS") == "true", "xDS over TLS (meridiand's TLS xDS port, 15011 by default) with the SVID from --ca-url as client certificate (meridiand attests the proxy by it and sends its secrets over SDS); meridiand verified against --root-cert as a control plane of the mesh, or as --xds-server-id ($MERIDIAN_XDS_TLS)")
	fs.StringVar(&o.CAURL, "ca-url", env("MERIDIAN_CA_URL"), "outside Kubernetes: meridiand's CA service, https://HOST:15012, to get this proxy's SVID with --join-token-file ($MERIDIAN_CA_URL)")
	fs.StringVar(&o.JoinTokenFile, "join-token-file", env("MERIDIAN_JOIN_TOKEN_FILE"), "file holding a one-time join token (meridianctl trust join-token --namespace NS --service-account SA), spent on the first SVID ($MERIDIAN_JOIN_TOKEN_FILE)")
	fs.StringVar(&o.RootCert, "root-cert", env("MERIDIAN_ROOT_CERT"), "PEM root certificates of the mesh (meridianctl trust bundle --pem-dir): verify the CA service and meridiand ($MERIDIAN_ROOT_CERT)")
	fs.DurationVar(&o.SVIDTTL, "svid-ttl", 0, "lifetime asked for the SVID from --ca-url, renewed at half (default the CA's, 1h)")
	fs.StringVar(&o.Mode, "mode", envOr("sidecar", "MERIDIAN_MODE"), "sidecar, ingress, egress or east-west ($MERIDIAN_MODE)")
	fs.StringVar(&o.ID, "id", env("MERIDIAN_NODE_ID"), "node id; default POD_NAME.POD_NAMESPACE, else the host name ($MERIDIAN_NODE_ID)")
	fs.StringVar(&o.Cluster, "cluster", env("MERIDIAN_CLUSTER"), "this proxy's Meridian cluster ($MERIDIAN_CLUSTER)")
	fs.StringVar(&o.Namespace, "namespace", env("MERIDIAN_NAMESPACE", "POD_NAMESPACE"), "the workload's namespace ($MERIDIAN_NAMESPACE, $POD_NAMESPACE)")
	fs.StringVar(&o.ServiceAccount, "service-account", env("MERIDIAN_SERVICE_ACCOUNT", "SERVICE_ACCOUNT"), "the workload's service account ($SERVICE_ACCOUNT)")
	fs.StringVar(&o.Locality, "locality", env("MERIDIAN_LOCALITY"), "region/zone/subzone ($MERIDIAN_LOCALITY)")
	fs.StringVar(&o.InboundPorts, "inbound-ports", env("MERIDIAN_INBOUND_PORTS"), "the workload's ports, comma-separated, each PORT or PORT/PROTOCOL (8080/http) ($MERIDIAN_INBOUND_PORTS)")
	fs.StringVar(&o.Labels, "labels", env("MERIDIAN_LABELS"), "the workload's labels, k=v,k=v: what policy selectors match ($MERIDIAN_LABELS)")
	fs.StringVar(&o.OutboundPolicy, "outbound-traffic-policy", env("MERIDIAN_OUTBOUND_TRAFFIC_POLICY"), "ALLOW_ANY or REGISTRY_ONLY; default the mesh's")
	fs.Uint32Var(&o.ListenerPort, "listener-port", 0, "a gateway's listener port (default 8080, 15443 for east-west)")
	fs.StringVar(&o.Capture, "capture", env("MERIDIAN_CAPTURE"), "true when iptables redirect traffic to 15001/15006; default true in sidecar mode without explicit ports")
	fs.StringArrayVar(&o.Inbound, "inbound", nil, "LISTEN=APPPORT[/PROTOCOL]: an explicit inbound port in front of the application (repeatable)")
	fs.StringArrayVar(&o.Upstreams, "upstream", nil, "LISTEN=HOST:PORT: an explicit upstream port to a mesh service (repeatable)")
	fs.StringVar(&o.HTTPProxy, "http-proxy", "", "an HTTP proxy port for the application (HTTP_PROXY, CONNECT)")
	fs.StringArrayVar(&o.Rebind, "bind", nil, "LISTENER=ADDR: bind a listener elsewhere than the control plane says (repeatable)")
	fs.StringVar(&o.GatewayCert, "gateway-cert", env("MERIDIAN_GATEWAY_CERT"), "PEM certificate a gateway terminates TLS with")
	fs.StringVar(&o.GatewayKey, "gateway-key", env("MERIDIAN_GATEWAY_KEY"), "PEM key of --gateway-cert")
	fs.StringVar(&o.AdminAddress, "admin-address", "127.0.0.1:15000", "admin HTTP (/config_dump, /clusters, /metrics, /ready); empty for none")
	fs.StringVar(&o.MetricsAddress, "metrics-address", "0.0.0.0:15090", "Prometheus /metrics; empty for none")
	fs.StringVar(&o.HealthAddress, "health-address", "0.0.0.0:15021", "/ready and /healthz for probes; empty for none")
	fs.StringVar(&o.OTLPEndpoint, "otlp-endpoint", env("OTEL_EXPORTER_OTLP_ENDPOINT"), "OTLP/gRPC collector for spans, host:port: every request gets a span, sampled by --trace-sample-ratio unless its parent decided; none by default")
	fs.BoolVar(&o.OTLPInsecure, "otlp-insecure", false, "plaintext to the OTLP collector")
	fs.Float64Var(&o.TraceSampleRatio, "trace-sample-ratio", 0.01, "share of new traces sampled (traces with a parent follow it)")
	fs.BoolVar(&o.TraceAll, "trace-all", false, "without a collector: make spans on every request (to propagate the proxy's span ids), not only on routes that ask for tracing")
	fs.StringVar(&o.AccessLog, "access-log", envOr("stdout", "MERIDIAN_ACCESS_LOG"), "JSON access log: stdout, stderr, off or a file")
	fs.StringVar(&o.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.LogFormat, "log-format", "json", "json or text")
	fs.IntVar(&o.MaxConnections, "max-connections", 0, "open downstream connections at most (default 16384)")
	fs.DurationVar(&o.SchedSlice, "sched-slice", 100*time.Microsecond, "CPU time slice to ask the kernel for (Linux 6.12+; 100µs to 100ms): a short one lets a woken proxy preempt what shares its core sooner; 0 for the kernel's default")
	fs.IntVar(&o.GCHeapFloorMB, "gc-heap-floor-mb", 16, "MiB the Go heap may reach before a collection however small the live heap (fewer collections under load for a small configuration; a large one's heap goal is above it anyway); 0 for GOGC alone")
}

// Config turns the options into a Config; bad values are errors naming
// the flag. The returned closer closes the access-log file, if any.
func (o *Options) Config(stderr io.Writer) (Config, io.Closer, error) {
	var cfg Config
	var errs []error
	bad := func(flag string, err error) { errs = append(errs, fmt.Errorf("--%s: %w", flag, err)) }
	if o.XDSAddress == "" {
		bad("xds-address", errors.New("required"))
	}
	cfg.Server, cfg.XDSTokenFile = o.XDSAddress, o.XDSTokenFile
	switch o.XDSProtocol {
	case "auto", "":
	case "delta", "sotw":
		cfg.Protocol = xdsclient.Protocol(o.XDSProtocol)
	default:
		bad("xds-protocol", fmt.Errorf("%q: want auto, delta or sotw", o.XDSProtocol))
	}
	if err := o.enrollment(&cfg); err != nil {
		errs = append(errs, err)
	}
	if o.XDSCA != "" {
		creds, err := xdsCredentials(o.XDSCA, o.XDSCert, o.XDSKey, o.XDSAddress, o.XDSServerID)
		if err != nil {
			bad("xds-ca", err)
		} else {
			cfg.XDSDialOptions = []grpc.DialOption{grpc.WithTransportCredentials(creds)}
		}
	}
	id := o.ID
	if id == "" {
		if pod := env("POD_NAME"); pod != "" {
			id = pod + "." + envOr("default", "POD_NAMESPACE")
		} else if h, err := os.Hostname(); err == nil {
			id = h
		}
	}
	cfg.Node = xdsclient.NodeConfig{ID: id, Mode: o.Mode, Cluster: o.Cluster, Namespace: o.Namespace,
		ServiceAccount: o.ServiceAccount, Locality: o.Locality, ListenerPort: o.ListenerPort}
	cfg.Node.OutboundTrafficPolicy = o.OutboundPolicy
	for _, kv := range splitList(o.Labels) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			bad("labels", fmt.Errorf("%q: want k=v", kv))
			continue
		}
		if cfg.Node.Labels == nil {
			cfg.Node.Labels = map[string]string{}
		}
		cfg.Node.Labels[k] = v
	}
	declared := map[string]bool{}
	for _, p := range splitList(o.InboundPorts) {
		port, _, _ := strings.Cut(p, "/")
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			bad("inbound-ports", fmt.Errorf("%q: want PORT or PORT/PROTOCOL", p))
			continue
		}
		cfg.Node.InboundPorts = append(cfg.Node.InboundPorts, p)
		declared[port] = true
	}
	for _, s := range o.Inbound {
		listen, app, ok := strings.Cut(s, "=")
		l, err := netip.ParseAddrPort(listen)
		appPort, _, _ := strings.Cut(app, "/")
		port, perr := strconv.ParseUint(appPort, 10, 16)
		if !ok || err != nil || perr != nil || port == 0 {
			bad("inbound", fmt.Errorf("%q: want LISTEN=APPPORT[/PROTOCOL], e.g. 127.0.0.1:15006=8080/http", s))
			continue
		}
		cfg.Inbound = append(cfg.Inbound, InboundPort{Listen: l, AppPort: uint16(port)})
		if !declared[appPort] {
			cfg.Node.InboundPorts = append(cfg.Node.InboundPorts, app)
			declared[appPort] = true
		}
	}
	for _, s := range o.Upstreams {
		listen, target, ok := strings.Cut(s, "=")
		l, err := netip.ParseAddrPort(listen)
		host, ps, herr := net.SplitHostPort(target)
		port, perr := strconv.ParseUint(ps, 10, 16)
		if !ok || err != nil || herr != nil || perr != nil || port == 0 || host == "" {
			bad("upstream", fmt.Errorf("%q: want LISTEN=HOST:PORT, e.g. 127.0.0.1:9001=reviews.shop.svc.cluster.local:9080", s))
			continue
		}
		cfg.Upstreams = append(cfg.Upstreams, Upstream{Listen: l, Host: host, Port: uint16(port)})
	}
	if o.HTTPProxy != "" {
		a, err := netip.ParseAddrPort(o.HTTPProxy)
		if err != nil {
			bad("http-proxy", err)
		}
		cfg.HTTPProxy = a
	}
	cfg.Rebind = map[string]netip.AddrPort{}
	for _, s := range o.Rebind {
		name, addr, ok := strings.Cut(s, "=")
		a, err := netip.ParseAddrPort(addr)
		if !ok || name == "" || (addr != "" && err != nil) {
			bad("bind", fmt.Errorf("%q: want LISTENER=ADDR (ADDR empty to unbind)", s))
			continue
		}
		cfg.Rebind[name] = a
	}
	explicit := len(cfg.Inbound)+len(cfg.Upstreams) > 0 || cfg.HTTPProxy.IsValid()
	switch o.Capture {
	case "":
		cfg.Capture = o.Mode == xdsclient.ModeSidecar && !explicit
	case "true", "false":
		cfg.Capture = o.Capture == "true"
	default:
		bad("capture", fmt.Errorf("%q: want true or false", o.Capture))
	}
	if o.GatewayCert != "" || o.GatewayKey != "" {
		var err error
		if cfg.GatewayCert, err = os.ReadFile(o.GatewayCert); err != nil {
			bad("gateway-cert", err)
		}
		if cfg.GatewayKey, err = os.ReadFile(o.GatewayKey); err != nil {
			bad("gateway-key", err)
		}
	}
	for _, a := range []struct {
		flag, v string
		dst     *netip.AddrPort
	}{{"admin-address", o.AdminAddress, &cfg.Admin}, {"metrics-address", o.MetricsAddress, &cfg.MetricsAddr}, {"health-address", o.HealthAddress, &cfg.Health}} {
		if a.v == "" {
			continue
		}
		ap, err := netip.ParseAddrPort(a.v)
		if err != nil {
			bad(a.flag, err)
		}
		*a.dst = ap
	}
	cfg.Tracing = telemetry.TracingConfig{OTLPEndpoint: o.OTLPEndpoint, Insecure: o.OTLPInsecure, SampleRatio: o.TraceSampleRatio, Service: "meridian-proxy"}
	cfg.TraceAll = o.TraceAll
	cfg.MaxConnections = o.MaxConnections
	if o.GCHeapFloorMB < 0 {
		bad("gc-heap-floor-mb", fmt.Errorf("%d: want 0 or more", o.GCHeapFloorMB))
	} else {
		cfg.GCHeapFloor = uint64(o.GCHeapFloorMB) << 20
	}
	if err := sched.Check(o.SchedSlice); err != nil {
		bad("sched-slice", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
		bad("log-level", err)
	}
	switch o.LogFormat {
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	default:
		bad("log-format", fmt.Errorf("%q: want json or text", o.LogFormat))
	}
	var closer io.Closer = io.NopCloser(nil)
	switch o.AccessLog {
	case "off", "":
	case "stdout":
		cfg.AccessLog = os.Stdout
	case "stderr":
		cfg.AccessLog = os.Stderr
	default:
		f, err := os.OpenFile(o.AccessLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			bad("access-log", err)
		} else {
			cfg.AccessLog, closer = f, f
		}
	}
	if _, err := cfg.Node.Node(); err != nil {
		errs = append(errs, err)
	}
	return cfg, closer, errors.Join(errs...)
}

// enrollment reads --xds-tls, --ca-url, --join-token-file and --root-cert:
// all together or none (the SVID is for the xDS connection, and a proxy
// without one has nothing to present).
func (o *Options) enrollment(cfg *Config) error {
	if !o.XDSTLS && o.CAURL == "" && o.JoinTokenFile == "" && o.RootCert == "" {
		return nil
	}
	var missing []string
	for _, f := range []struct{ flag, v string }{{"ca-url", o.CAURL}, {"join-token-file", o.JoinTokenFile}, {"root-cert", o.RootCert}} {
		if f.v == "" {
			missing = append(missing, "--"+f.flag)
		}
	}
	if !o.XDSTLS {
		missing = append(missing, "--xds-tls")
	}
	if len(missing) > 0 {
		return fmt.Errorf("--xds-tls, --ca-url, --join-token-file and --root-cert go together: add %s", strings.Join(missing, ", "))
	}
	if o.XDSCA != "" || o.XDSCert != "" {
		return errors.New("--xds-tls: give it or --xds-ca/--xds-cert, not both")
	}
	pem, err := os.ReadFile(o.RootCert)
	if err != nil {
		return fmt.Errorf("--root-cert: %w", err)
	}
	roots, err := enroll.ParseRoots(pem)
	if err != nil {
		return fmt.Errorf("--root-cert: %w", err)
	}
	ec := enroll.Config{CAURL: o.CAURL, TokenFile: o.JoinTokenFile, Roots: roots, ServerID: o.XDSServerID, TTL: o.SVIDTTL}
	if _, err := enroll.New(ec); err != nil {
		return fmt.Errorf("--ca-url: %w", err)
	}
	cfg.Enroll = &ec
	return nil
}

// serviceAccountToken is where Kubernetes mounts a pod's token.
const serviceAccountToken = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// defaultTokenFile is the pod's token when there is one: in Kubernetes
// the sidecar attests itself with it, elsewhere there is none.
func defaultTokenFile() string {
	if _, err := os.Stat(serviceAccountToken); err == nil {
		return serviceAccountToken
	}
	return ""
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// xdsCredentials is TLS to meridiand: its certificate verified against ca
// by host name, or by SPIFFE ID when serverID is given (meridiand presents
// its SVID); with a client certificate when one is given (an SVID there
// attests the proxy).
func xdsCredentials(ca, cert, key, addr, serverID string) (credentials.TransportCredentials, error) {
	pem, err := os.ReadFile(ca)
	if err != nil {
		return nil, err
	}
	var cfg *tls.Config
	if serverID != "" {
		id, err := spiffeid.FromString(serverID)
		if err != nil {
			return nil, fmt.Errorf("--xds-server-id: %w", err)
		}
		roots, err := x509bundle.Parse(id.TrustDomain(), pem)
		if err != nil {
			return nil, err
		}
		cfg = tlsconfig.TLSClientConfig(roots, tlsconfig.AuthorizeID(id))
	} else {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", ca)
		}
		host, _, _ := net.SplitHostPort(addr)
		cfg = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(cfg), nil
}
