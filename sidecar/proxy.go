package sidecar

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/meridian-mesh/meridian/sidecar/authz"
	"github.com/meridian-mesh/meridian/sidecar/dataplane"
	"github.com/meridian-mesh/meridian/sidecar/downstream"
	"github.com/meridian-mesh/meridian/sidecar/enroll"
	"github.com/meridian-mesh/meridian/sidecar/gcpace"
	"github.com/meridian-mesh/meridian/sidecar/listen"
	"github.com/meridian-mesh/meridian/sidecar/telemetry"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// The sidecar listeners' names, as xds/translate names them (written out
// here for the reason xdsclient gives; a test compares them).
const (
	VirtualInboundListener  = "virtualInbound"
	VirtualOutboundListener = "virtualOutbound"
)

// InboundPort is an explicit inbound port: mesh traffic arriving on
// Listen is served as if it were captured on its way to AppPort.
type InboundPort struct {
	Listen  netip.AddrPort
	AppPort uint16
}

// Upstream is an explicit upstream port: the application's connections to
// Listen go to the mesh service Host:Port.
type Upstream struct {
	Listen netip.AddrPort
	Host   string
	Port   uint16
}

// Config configures a Proxy. Server and Node.ID are required.
type Config struct {
	// Server is the control plane's xDS address (meridiand's gRPC port).
	Server string
	// XDSDialOptions add to the xDS connection (transport credentials).
	XDSDialOptions []grpc.DialOption
	// XDSTokenFile holds a Kubernetes service-account token sent with
	// every xDS stream ("authorization: Bearer"), by which meridiand
	// attests the proxy and sends it its SVID; read for each stream.
	XDSTokenFile string
	// Enroll, outside Kubernetes, gets the proxy's SVID from meridiand's
	// CA service with a join token before xDS starts, renews it, and makes
	// the xDS connection TLS with it (meridiand attests the proxy by it
	// and sends its secrets over SDS). Nil: none.
	Enroll   *enroll.Config
	Protocol xdsclient.Protocol
	Node     xdsclient.NodeConfig

	// Capture says iptables redirection is in place: the virtual
	// listeners bind their ports. Without it, Inbound, Upstreams and
	// HTTPProxy are the sidecar's ports.
	Capture   bool
	Inbound   []InboundPort
	Upstreams []Upstream
	HTTPProxy netip.AddrPort
	// Rebind moves listeners' sockets by name (gateways on another port,
	// several proxies on one host); an invalid address unbinds.
	Rebind map[string]netip.AddrPort

	// GatewayCert and GatewayKey (PEM) terminate TLS on a gateway's HTTP
	// listeners that carry no TLS of their own (ingress with given
	// certificates).
	GatewayCert, GatewayKey []byte

	// Admin is the admin HTTP address (/metrics, /ready, /healthz,
	// /config_dump, /clusters); Metrics serves /metrics alone and Health
	// /ready and /healthz alone (the ports Prometheus and the kubelet
	// reach: 15090 and 15021 in a pod). Invalid addresses serve nothing.
	Admin, MetricsAddr, Health netip.AddrPort

	// Tracing exports spans to an OTLP collector when it names one; then
	// every request gets a span, sampled at Tracing.SampleRatio unless its
	// parent decided (as Istio's default tracing). Without a collector,
	// spans are made only where the HTTP connection manager asks for
	// tracing, or everywhere with TraceAll, to propagate the proxy's own
	// span ids.
	Tracing   telemetry.TracingConfig
	TraceAll  bool
	AccessLog io.Writer

	// Policy evaluates the RBAC and JWT filters; default package
	// sidecar/authz (Envoy RBAC checked against trust's evaluator, JWT by
	// trust/jwt).
	Policy xdsconfig.Options

	MaxConnections int
	// GCHeapFloor is the heap size in bytes below which the collector is
	// not started (package sidecar/gcpace); 0: GOGC alone.
	GCHeapFloor uint64
	Logger      *slog.Logger
	// Metrics registers the proxy's metrics; default a new registry with
	// the Go and process collectors, served on the admin port.
	Metrics *prometheus.Registry
}

// Proxy is one meridian-proxy.
type Proxy struct {
	cfg     Config
	log     *slog.Logger
	metrics *prometheus.Registry
	tel     *telemetry.Telemetry
	client  *xdsclient.Client
	dp      *dataplane.Dataplane
	// identity is the enrolled SVID (Config.Enroll), nil without.
	identity *enroll.Identity
	// servers are the admin, metrics and health listeners with their
	// handlers.
	servers []adminServer

	closeOnce sync.Once
}

// New validates the config and assembles a proxy; Run starts it.
func New(ctx context.Context, cfg Config) (*Proxy, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
		cfg.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	node, err := cfg.Node.Node()
	if err != nil {
		return nil, fmt.Errorf("sidecar: %w", err)
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger.With("component", "sidecar", "node", cfg.Node.ID), metrics: cfg.Metrics}
	m, err := telemetry.NewMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("sidecar: metrics: %w", err)
	}
	p.tel = &telemetry.Telemetry{Metrics: m, Self: telemetry.Peer{
		Workload: cfg.Node.ServiceAccount, Namespace: cfg.Node.Namespace, Cluster: cfg.Node.Cluster, Locality: cfg.Node.Locality}}
	if cfg.Node.ServiceAccount == "" {
		p.tel.Self.Workload = cfg.Node.ID
	}
	if cfg.AccessLog != nil {
		p.tel.Access = telemetry.NewAccessLog(cfg.AccessLog)
	}
	if cfg.Tracing.OTLPEndpoint != "" || cfg.TraceAll {
		if cfg.Tracing.Service == "" {
			cfg.Tracing.Service = "meridian-proxy"
		}
		if p.tel.Tracing, err = telemetry.NewTracing(ctx, cfg.Tracing); err != nil {
			return nil, fmt.Errorf("sidecar: %w", err)
		}
	}
	if cfg.Policy.Authz == nil {
		cfg.Policy.Authz = authz.Compile
	}
	if cfg.Policy.JWT == nil {
		cfg.Policy.JWT = authz.JWT(cfg.Metrics)
	}
	var streamMD func() (metadata.MD, error)
	if cfg.XDSTokenFile != "" {
		streamMD = func() (metadata.MD, error) {
			tok, err := os.ReadFile(cfg.XDSTokenFile)
			if err != nil {
				return nil, err
			}
			return metadata.Pairs("authorization", "Bearer "+strings.TrimSpace(string(tok))), nil
		}
	}
	dialOptions := cfg.XDSDialOptions
	if cfg.Enroll != nil {
		ec := *cfg.Enroll
		ec.Logger = cfg.Logger
		if p.identity, err = enroll.New(ec); err != nil {
			return nil, fmt.Errorf("sidecar: %w", err)
		}
		dialOptions = append(slices.Clip(dialOptions), grpc.WithTransportCredentials(credentials.NewTLS(p.identity.XDSTLS())))
	}
	p.client, err = xdsclient.New(xdsclient.Config{
		Server: cfg.Server, DialOptions: dialOptions, Node: node, Protocol: cfg.Protocol, StreamMetadata: streamMD,
		Decode: xdsconfig.NewDecoder(cfg.Policy).Decode, Logger: cfg.Logger, Metrics: cfg.Metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("sidecar: %w", err)
	}
	lo, err := p.listenOptions()
	if err != nil {
		return nil, err
	}
	p.dp = dataplane.New(dataplane.Options{Telemetry: p.tel, Logger: cfg.Logger, Listen: lo})
	for _, a := range []struct {
		addr netip.AddrPort
		h    http.Handler
	}{{cfg.Admin, p.adminHandler()}, {cfg.MetricsAddr, p.metricsHandler()}, {cfg.Health, p.healthHandler()}} {
		if !a.addr.IsValid() {
			continue
		}
		ln, err := net.Listen("tcp", a.addr.String())
		if err != nil {
			for _, s := range p.servers {
				s.ln.Close()
			}
			p.dp.Close()
			return nil, fmt.Errorf("sidecar: admin %s: %w", a.addr, err)
		}
		p.servers = append(p.servers, adminServer{ln: ln, h: a.h})
	}
	return p, nil
}

func (p *Proxy) listenOptions() (listen.Options, error) {
	cfg := p.cfg
	mode := cfg.Node.Mode
	if mode == "" {
		mode = xdsclient.ModeSidecar
	}
	lo := listen.Options{MaxConnections: cfg.MaxConnections, TraceAll: cfg.TraceAll || cfg.Tracing.OTLPEndpoint != "", Rebind: map[string]netip.AddrPort{}}
	if mode == xdsclient.ModeSidecar {
		lo.DirectionOf = func(l *xdsconfig.Listener) downstream.Direction {
			if l.Name == VirtualInboundListener {
				return downstream.Inbound
			}
			return downstream.Outbound
		}
	} else {
		lo.DirectionOf = func(*xdsconfig.Listener) downstream.Direction { return downstream.Gateway }
	}
	if mode == xdsclient.ModeSidecar && !cfg.Capture {
		lo.Rebind[VirtualInboundListener] = netip.AddrPort{}
		lo.Rebind[VirtualOutboundListener] = netip.AddrPort{}
	}
	for name, a := range cfg.Rebind {
		lo.Rebind[name] = a
	}
	for _, in := range cfg.Inbound {
		lo.Explicit = append(lo.Explicit, listen.Explicit{
			Name: fmt.Sprintf("inbound_%d", in.AppPort), Addr: in.Listen, Direction: downstream.Inbound,
			Dest: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), in.AppPort), Via: VirtualInboundListener,
		})
	}
	for _, up := range cfg.Upstreams {
		lo.Explicit = append(lo.Explicit, listen.Explicit{
			Name: fmt.Sprintf("upstream_%s_%d", up.Host, up.Port), Addr: up.Listen, Direction: downstream.Outbound,
			Dest: netip.AddrPortFrom(netip.IPv4Unspecified(), up.Port), Via: VirtualOutboundListener,
			Authority: fmt.Sprintf("%s:%d", up.Host, up.Port),
		})
	}
	if cfg.HTTPProxy.IsValid() {
		lo.Explicit = append(lo.Explicit, listen.Explicit{Name: "http_proxy", Addr: cfg.HTTPProxy, Direction: downstream.Outbound, HTTPProxy: true})
	}
	if len(cfg.GatewayCert) > 0 {
		pair, err := tls.X509KeyPair(cfg.GatewayCert, cfg.GatewayKey)
		if err != nil {
			return lo, fmt.Errorf("sidecar: gateway certificate: %w", err)
		}
		lo.GatewayTLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	return lo, nil
}

// Identity returns the SVID enrolled with Config.Enroll, nil without.
func (p *Proxy) Identity() *enroll.Identity { return p.identity }

// Client returns the xDS client (status, state).
func (p *Proxy) Client() *xdsclient.Client { return p.client }

// Dataplane returns the running configuration (addresses, clusters).
func (p *Proxy) Dataplane() *dataplane.Dataplane { return p.dp }

// Ready is closed once the first complete configuration is applied (what
// /ready reports).
func (p *Proxy) Ready() <-chan struct{} { return p.dp.Ready() }

// Metrics returns the proxy's metrics registry.
func (p *Proxy) Metrics() *prometheus.Registry { return p.metrics }

type adminServer struct {
	ln net.Listener
	h  http.Handler
}

// Run serves until ctx ends, then stops everything it started. It
// returns an error only when a part fails on its own.
func (p *Proxy) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer p.close()
	var wg sync.WaitGroup
	errs := make(chan error, 3+len(p.servers))
	run := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil {
				errs <- fmt.Errorf("sidecar: %s: %w", name, err)
				cancel()
			}
		}()
	}
	if p.identity != nil {
		// xDS waits for the SVID: a stream without it would not be
		// attested and would get no secrets.
		if err := p.identity.Enroll(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sidecar: %w", err)
		}
		run("identity", p.identity.Run)
	}
	run("xds", p.client.Run)
	run("gc pacing", func(ctx context.Context) error { gcpace.Run(ctx, p.cfg.GCHeapFloor, p.log); return nil })
	run("dataplane", func(ctx context.Context) error { return p.dp.Run(ctx, p.client) })
	for _, s := range p.servers {
		srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second}
		run("admin "+s.ln.Addr().String(), func(ctx context.Context) error {
			stop := context.AfterFunc(ctx, func() { srv.Close() })
			defer stop()
			if err := srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	p.log.Info("meridian-proxy: started", "mode", string(p.cfg.Node.Mode), "xds", p.cfg.Server)
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

func (p *Proxy) close() {
	p.closeOnce.Do(func() {
		p.dp.Close()
		if p.tel.Tracing != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := p.tel.Tracing.Shutdown(ctx); err != nil {
				p.log.Warn("meridian-proxy: flushing traces", "err", err)
			}
		}
		p.log.Info("meridian-proxy: stopped")
	})
}
