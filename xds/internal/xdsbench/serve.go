package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	gcpserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/server"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// result is one implementation's figures.
type result struct {
	Impl      string  `json:"impl"`
	Clients   int     `json:"clients"`
	Services  int     `json:"services"`
	Endpoints int     `json:"endpoints"`
	SyncWall  float64 `json:"syncWallSeconds"`
	SyncCPU   float64 `json:"syncCPUSeconds"`
	// Per-client time from an endpoint change to the client's ACK of it,
	// pooled over every change.
	AckP50 float64 `json:"ackP50Millis"`
	AckP99 float64 `json:"ackP99Millis"`
	// Time until every client ACKed, median over changes.
	AllAckedP50 float64 `json:"allAckedP50Millis"`
	CPUPerPush  float64 `json:"cpuSecondsPerPush"`
	Changes     int     `json:"changes"`
	PeakRSSMB   float64 `json:"peakRSSMegabytes"`
	ClientCPU   float64 `json:"clientProcessCPUSeconds"`
}

type serveOpts struct {
	impl                         string
	services, endpoints, clients int
	changes                      int
	timeout                      time.Duration
	profile                      string // CPU profile of the change phase
	delta                        bool   // clients speak delta xDS
	maxRSS                       int    // megabytes; the run aborts above it
}

// serve runs one implementation with its clients in a child process and
// measures it. The server's CPU is this process's: the clients' work is
// elsewhere.
func serve(o serveOpts) (res result, err error) {
	res = result{Impl: o.impl, Clients: o.clients, Services: o.services, Endpoints: o.services * o.endpoints, Changes: o.changes}
	reg, err := fill(o.services, o.endpoints)
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go guardMemory(ctx, o.maxRSS)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	tr := newTracker()
	gs := grpc.NewServer(grpc.StreamInterceptor(tr.interceptor))
	var wg sync.WaitGroup
	defer func() {
		cancel()
		gs.Stop()
		wg.Wait()
	}()
	switch o.impl {
	case "meridian":
		srv, err := server.New(server.Config{Registry: reg, Cluster: benchCluster, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err != nil {
			return res, err
		}
		srv.Register(gs)
		wg.Add(1)
		go func() { defer wg.Done(); _ = srv.Run(ctx) }()
	case "baseline":
		b := newBaseline(reg)
		discovery.RegisterAggregatedDiscoveryServiceServer(gs, gcpserver.NewServer(ctx, b.cache, b.callbacks()))
		wg.Add(1)
		go func() { defer wg.Done(); b.run(ctx) }()
	default:
		return res, fmt.Errorf("unknown implementation %q", o.impl)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = gs.Serve(lis) }()

	cpu0, start := cpuTime(), time.Now()
	child := exec.CommandContext(ctx, os.Args[0], "-client-process", lis.Addr().String(), "-n", strconv.Itoa(o.clients), "-delta="+strconv.FormatBool(o.delta))
	child.Stderr = os.Stderr
	// The clients die with this process, even when it exits abruptly.
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := child.Start(); err != nil {
		return res, err
	}
	defer func() {
		_ = child.Process.Kill()
		_ = child.Wait()
		if child.ProcessState != nil {
			res.ClientCPU = (child.ProcessState.UserTime() + child.ProcessState.SystemTime()).Seconds()
		}
	}()
	if !tr.waitSynced(o.clients, o.timeout) {
		return res, fmt.Errorf("%s: clients not in sync after %v", o.impl, o.timeout)
	}
	res.SyncWall, res.SyncCPU = time.Since(start).Seconds(), (cpuTime() - cpu0).Seconds()

	if o.profile != "" {
		f, err := os.Create(o.profile)
		if err != nil {
			return res, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return res, err
		}
		defer pprof.StopCPUProfile()
	}
	var all []time.Duration
	var allAcked []time.Duration
	var cpu time.Duration
	for k := range o.changes {
		// Each change is an isolated one: past the coalescing window of
		// the previous push.
		time.Sleep(250 * time.Millisecond)
		c0 := cpuTime()
		tr.startChange()
		if _, err := reg.Apply(benchCluster, registry.PutEndpoint(endpointOf((k*37)%o.services, 0, k+1))); err != nil {
			return res, err
		}
		lat, ok := tr.waitChange(o.clients, o.timeout)
		if !ok {
			return res, fmt.Errorf("%s: change %d: only %d of %d clients ACKed within %v", o.impl, k, len(lat), o.clients, o.timeout)
		}
		cpu += cpuTime() - c0
		all = append(all, lat...)
		allAcked = append(allAcked, lat[len(lat)-1])
	}
	slices.Sort(all)
	slices.Sort(allAcked)
	if len(all) > 0 {
		res.AckP50 = millis(quantile(all, 0.50))
		res.AckP99 = millis(quantile(all, 0.99))
		res.AllAckedP50 = millis(quantile(allAcked, 0.50))
		res.CPUPerPush = cpu.Seconds() / float64(o.changes)
	}
	res.PeakRSSMB = peakRSS()
	return res, nil
}

// guardMemory ends the process when its resident memory passes limit
// megabytes: the machine is shared, and the naive baseline grows with every
// client.
func guardMemory(ctx context.Context, limit int) {
	if limit <= 0 {
		return
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if rss := currentRSS(); rss > float64(limit) {
				fmt.Fprintf(os.Stderr, "xdsbench: resident memory %.0f MB passed -max-rss-mb %d: aborting\n", rss, limit)
				os.Exit(3)
			}
		}
	}
}

// currentRSS reads this process's resident memory, in megabytes.
func currentRSS() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident int
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return 0
	}
	return float64(resident*os.Getpagesize()) / (1 << 20)
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS is this process's maximum resident set, in megabytes.
func peakRSS() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // Linux reports kilobytes
}

// baseline is the naive server the issue compares against: go-control-
// plane's SnapshotCache in ADS mode holding one full snapshot per node,
// every snapshot rebuilt — every type translated for every node — on
// every registry change. It translates with the same code as Meridian.
type baseline struct {
	reg   *registry.Registry
	cache cache.SnapshotCache

	mu      sync.Mutex
	nodes   map[string]translate.Proxy
	version int
	set     map[string]int // version last set per node
}

func newBaseline(reg *registry.Registry) *baseline {
	return &baseline{reg: reg, cache: cache.NewSnapshotCache(true, cache.IDHash{}, quiet{}), nodes: map[string]translate.Proxy{}, set: map[string]int{}}
}

// callbacks build a node's snapshot when it connects.
func (b *baseline) callbacks() gcpserver.Callbacks {
	return gcpserver.CallbackFuncs{StreamRequestFunc: func(_ int64, req *discovery.DiscoveryRequest) error {
		n := req.GetNode()
		if n.GetId() == "" {
			return nil
		}
		b.mu.Lock()
		_, known := b.nodes[n.GetId()]
		version := b.version
		b.mu.Unlock()
		if known {
			return nil
		}
		p, err := translate.ParseNode(n, translate.NodeDefaults{Cluster: benchCluster})
		if err != nil {
			return err
		}
		b.mu.Lock()
		b.nodes[p.ID] = p
		b.mu.Unlock()
		return b.setSnapshot(p, b.reg.View(), version)
	}}
}

// run rebuilds every node's snapshot after each registry change.
func (b *baseline) run(ctx context.Context) {
	sub := b.reg.Subscribe()
	defer sub.Close()
	sub.Take()
	for {
		v, _, err := sub.Next(ctx)
		if err != nil {
			return
		}
		b.mu.Lock()
		b.version++
		version := b.version
		nodes := make([]translate.Proxy, 0, len(b.nodes))
		for _, p := range b.nodes {
			nodes = append(nodes, p)
		}
		b.mu.Unlock()
		ch := make(chan translate.Proxy)
		var wg sync.WaitGroup
		for range runtime.GOMAXPROCS(0) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for p := range ch {
					_ = b.setSnapshot(p, v, version)
				}
			}()
		}
		for _, p := range nodes {
			ch <- p
		}
		close(ch)
		wg.Wait()
	}
}

func (b *baseline) setSnapshot(p translate.Proxy, v *registry.View, version int) error {
	in := translate.Input{View: v}
	res := map[string][]types.Resource{}
	for _, typ := range translate.Types {
		for _, r := range translate.Build(in, p.Scope(typ)).Resources {
			res[typ] = append(res[typ], r.Message)
		}
	}
	snap, err := cache.NewSnapshot(strconv.Itoa(version), res)
	if err != nil {
		return err
	}
	b.mu.Lock()
	if last, ok := b.set[p.ID]; ok && last > version {
		b.mu.Unlock()
		return nil // a newer snapshot is already set
	}
	b.set[p.ID] = version
	b.mu.Unlock()
	return b.cache.SetSnapshot(context.Background(), p.ID, snap)
}

// quiet is a go-control-plane logger that drops everything.
type quiet struct{}

func (quiet) Debugf(string, ...any) {}
func (quiet) Infof(string, ...any)  {}
func (quiet) Warnf(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
