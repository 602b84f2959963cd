package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/meridian-mesh/meridian/federation"
	"github.com/meridian-mesh/meridian/policyapi"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/store"
	"github.com/meridian-mesh/meridian/trust/service"
	xdsserver "github.com/meridian-mesh/meridian/xds/server"
)

// Daemon is one assembled meridiand: the shared parts every component uses,
// and the components New wired onto them. Components reach the shared parts
// through the exported fields, and hand the daemon what it must run, check
// and close through Go, AddReadyCheck and OnClose.
type Daemon struct {
	Config Config
	// Log carries a "cluster" attribute; components add "component".
	Log *slog.Logger
	// Metrics is the process's own Prometheus registry, served on /metrics.
	Metrics *prometheus.Registry
	// Store is the etcd connection (embedded or external).
	Store *store.Store
	// Registry holds the global view; the local cluster's segment exists.
	Registry *registry.Registry
	// GRPC is the shared gRPC server on GRPCAddr. Register services on it
	// during wiring: it starts serving in Run.
	GRPC *grpc.Server
	// Admin is the admin HTTP server's mux on AdminAddr.
	Admin *http.ServeMux
	// Federation is the mesh membership and replication (nil unless
	// federation.enabled): its Policies() is the replicated policy store.
	Federation *federation.Federation
	// Trust is the mesh identity component (nil unless trust.enabled): its
	// Member credentials for federation, SDS provider for xDS, SVIDs.
	Trust *service.Service
	// XDS serves the proxies (set by wireXDS, before wirePolicy).
	XDS *xdsserver.Server
	// PolicyAPI is the policy pipeline (set by wirePolicy): the engine in
	// force and the stored policies, which the dashboard shows.
	PolicyAPI *policyapi.Server
	// Policies is the mesh's policy store (set by wirePolicy): federation's
	// replicated one, or this cluster's own without federation.
	Policies policyapi.Store

	baseLog *slog.Logger // Log without the cluster attribute
	health  *health.Server
	grpcLis net.Listener
	admLis  net.Listener
	admin   *http.Server
	runners []runner
	leaders []runner   // run only while this replica leads its cluster (lead.go)
	leadErr chan error // the first error of a leader runner, to stop Run
	checks  []readyCheck
	closers []func() error

	xdsTLSLis net.Listener // the TLS xDS server's (xdstls.go), nil without

	mu      sync.Mutex
	running bool
	closed  bool
}

type runner struct {
	name string
	run  func(context.Context) error
}

type readyCheck struct {
	name  string
	check func(context.Context) error
}

// Option adjusts how New assembles the daemon.
type Option func(*Daemon)

// WithLogger replaces the logger built from Config.Log (tests pass one
// that writes to the test's output).
func WithLogger(l *slog.Logger) Option { return func(d *Daemon) { d.baseLog = l } }

// wiring lists the components New wires, in order. Each lives in its own
// file here and builds its component with that package's New; adding a
// component is one file and one line.
var wiring = []struct {
	name string
	wire func(context.Context, *Daemon) error
}{
	{"workload", wireWorkload},
	{"kube", wireKube},
	{"trust", wireTrust},
	{"inject", wireInject},
	{"federation", wireFederation},
	{"xds", wireXDS},
	{"xds-tls", wireXDSTLS},
	{"policy", wirePolicy},
	{"ui", wireUI},
	{"trust-exchange", wireTrustExchange},
}

// New validates cfg and assembles a daemon: it opens etcd (starting the
// embedded server unless Config.Etcd names endpoints), registers the local
// cluster, wires every component, and listens on the gRPC and admin
// addresses, so that both are known (GRPCAddr, AdminAddr) before Run. ctx
// bounds the startup only. Call Run, or Close if Run will not be called.
func New(ctx context.Context, cfg Config, opts ...Option) (_ *Daemon, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Daemon{Config: cfg, Metrics: prometheus.NewRegistry(), Admin: http.NewServeMux(), leadErr: make(chan error, 1)}
	for _, o := range opts {
		o(d)
	}
	if d.baseLog == nil {
		d.baseLog = NewLogger(cfg.Log, os.Stderr)
	}
	d.Log = d.baseLog.With("cluster", cfg.Cluster.Name)
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	d.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	d.Store, err = store.Open(ctx, store.Config{
		Endpoints: cfg.Etcd.Endpoints, CertFile: cfg.Etcd.CertFile, KeyFile: cfg.Etcd.KeyFile, CAFile: cfg.Etcd.CAFile,
		DataDir: cfg.dataDir(), ClientAddr: cfg.Etcd.ListenClient, Prefix: cfg.Etcd.Prefix,
	}, d.Log)
	if err != nil {
		return nil, err
	}
	d.OnClose(d.Store.Close)
	d.AddReadyCheck("etcd", d.pingEtcd)

	d.Registry = registry.New(registry.Options{})
	if err := d.Registry.SetCluster(cfg.Cluster); err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}

	d.GRPC = grpc.NewServer()
	d.health = health.NewServer()
	healthpb.RegisterHealthServer(d.GRPC, d.health)
	reflection.Register(d.GRPC)
	d.registerAdmin()

	// Listening before the wiring makes the addresses known to components
	// (federation advertises the gRPC address); Close releases them.
	if d.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("daemon: grpcAddr: %w", err)
	}
	if d.admLis, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
		return nil, fmt.Errorf("daemon: adminAddr: %w", err)
	}
	for _, w := range wiring {
		if err := w.wire(ctx, d); err != nil {
			return nil, fmt.Errorf("daemon: wiring %s: %w", w.name, err)
		}
	}
	d.placeLeaders()
	d.admin = &http.Server{Handler: d.Admin, ReadHeaderTimeout: 10 * time.Second}
	return d, nil
}

// Go adds a function Run starts in its own goroutine and stops by
// cancelling its context. It must return when the context ends (nil is
// fine then); returning earlier, or with an error, stops the daemon.
func (d *Daemon) Go(name string, run func(ctx context.Context) error) {
	d.runners = append(d.runners, runner{name, run})
}

// AddReadyCheck adds a check to /readyz. Checks run on each request, with
// a short deadline, and must not block beyond it.
func (d *Daemon) AddReadyCheck(name string, check func(ctx context.Context) error) {
	d.checks = append(d.checks, readyCheck{name, check})
}

// OnClose adds a function run when the daemon stops, after every runner
// returned and the servers stopped, in reverse order of adding.
func (d *Daemon) OnClose(fn func() error) { d.closers = append(d.closers, fn) }

// GRPCAddr is the address the gRPC server listens on.
func (d *Daemon) GRPCAddr() string { return d.grpcLis.Addr().String() }

// AdminAddr is the address the admin HTTP server listens on.
func (d *Daemon) AdminAddr() string { return d.admLis.Addr().String() }

// Run serves until ctx ends or a component fails, then stops everything:
// it stops taking requests, lets in-flight ones finish within
// ShutdownTimeout, stops every runner and waits for it, and closes the
// store. It returns nil after a clean stop on ctx, and the first error
// otherwise. Call it once.
func (d *Daemon) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.running || d.closed {
		d.mu.Unlock()
		return errors.New("daemon: Run called twice, or after Close")
	}
	d.running = true
	d.mu.Unlock()

	g, gctx := errgroup.WithContext(ctx)
	for _, r := range d.runners {
		g.Go(func() error { return r.start(gctx) })
	}
	g.Go(func() error {
		if err := d.GRPC.Serve(d.grpcLis); err != nil {
			return fmt.Errorf("daemon: gRPC server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := d.admin.Serve(d.admLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("daemon: admin server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		d.shutdownServers()
		return nil
	})
	d.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	log := d.Log.With("component", "daemon")
	log.Info("meridiand serving", "grpc", d.GRPCAddr(), "xds_tls", d.XDSTLSAddr(), "admin", d.AdminAddr(), "etcd", d.etcdLocation(),
		"region", d.Config.Cluster.Region, "components", d.componentNames())
	err := g.Wait()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		log.Error("meridiand stopped", "err", err)
	} else {
		log.Info("meridiand stopped")
	}
	return err
}

// shutdownServers stops both servers: no new connections or requests, and
// in-flight ones get ShutdownTimeout to finish. Long-lived streams (xDS)
// never finish on their own, so after the timeout they are cut.
func (d *Daemon) shutdownServers() {
	d.health.Shutdown()
	timeout := d.Config.ShutdownTimeout.Duration
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var admin sync.WaitGroup
	admin.Go(func() {
		if err := d.admin.Shutdown(ctx); err != nil {
			d.admin.Close()
		}
	})
	d.stopGRPC(ctx, d.GRPC)
	admin.Wait()
}

// stopGRPC stops a gRPC server gracefully until ctx ends, then cuts the
// streams still open.
func (d *Daemon) stopGRPC(ctx context.Context, g *grpc.Server) {
	stopped := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		d.Log.Warn("cutting gRPC streams still open after the shutdown timeout", "timeout", d.Config.ShutdownTimeout.Duration)
		g.Stop()
		<-stopped
	}
}

// Close releases what New opened, for a daemon that is not running (Run
// calls it when it stops). It is idempotent.
func (d *Daemon) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	if d.grpcLis != nil && !d.running {
		d.grpcLis.Close()
	}
	if d.admLis != nil && !d.running {
		d.admLis.Close()
	}
	var errs []error
	for _, fn := range slices.Backward(d.closers) {
		errs = append(errs, fn())
	}
	return errors.Join(errs...)
}

func (d *Daemon) pingEtcd(ctx context.Context) error {
	_, err := d.Store.Client.Get(ctx, d.Store.Key("ping"))
	return err
}

func (d *Daemon) etcdLocation() string {
	if u := d.Store.ClientURL(); u != "" {
		return "embedded " + u + " in " + d.Config.dataDir()
	}
	return fmt.Sprint(d.Config.Etcd.Endpoints)
}

func (d *Daemon) componentNames() []string {
	out := make([]string, len(d.runners))
	for i, r := range d.runners {
		out[i] = r.name
	}
	return out
}
