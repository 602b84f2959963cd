package tcpproxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridian-mesh/meridian/sidecar/downstream"
	"github.com/meridian-mesh/meridian/sidecar/identity"
	"github.com/meridian-mesh/meridian/sidecar/lb"
	"github.com/meridian-mesh/meridian/sidecar/telemetry"
	"github.com/meridian-mesh/meridian/sidecar/upstream"
	"github.com/meridian-mesh/meridian/sidecar/xdsconfig"
)

// BlackHoleCluster is where the outbound traffic policy REGISTRY_ONLY
// sends what it refuses.
const BlackHoleCluster = "BlackHoleCluster"

// Env finds clusters; called concurrently, must not block.
type Env interface {
	Cluster(name string) *upstream.Cluster
}

// Options configure a Proxy.
type Options struct {
	Env       Env
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
}

// Proxy is one compiled tcp_proxy filter.
type Proxy struct {
	cfg *xdsconfig.TCPProxy
	o   Options
}

// New returns a proxy for one filter configuration.
func New(cfg *xdsconfig.TCPProxy, o Options) *Proxy { return &Proxy{cfg: cfg, o: o} }

func (p *Proxy) cluster() string {
	if p.cfg.Cluster != "" {
		return p.cfg.Cluster
	}
	var total uint32
	for _, w := range p.cfg.Weighted {
		total += w.Weight
	}
	n := rand.Uint32N(total)
	for _, w := range p.cfg.Weighted {
		if n < w.Weight {
			return w.Name
		}
		n -= w.Weight
	}
	return p.cfg.Weighted[len(p.cfg.Weighted)-1].Name
}

// Serve proxies one downstream connection until it is done or ctx ends,
// and closes it.
func (p *Proxy) Serve(ctx context.Context, c net.Conn, ci *downstream.ConnInfo) {
	start := time.Now()
	defer c.Close()
	tel := p.o.Telemetry
	name := p.cluster()
	labels := telemetry.Labels{Reporter: ci.Direction.Reporter(), Service: name}
	switch ci.Direction {
	case downstream.Inbound:
		labels.Source, labels.Destination = telemetry.PeerFromSPIFFE(ci.PeerID), tel.Self
	default:
		labels.Source = tel.Self
	}
	entry := &telemetry.TCPEntry{Start: start, Listener: ci.Listener, UpstreamCluster: name,
		Downstream: ci.Source.String(), Peer: ci.PeerID, SNI: ci.SNI}
	defer func() {
		entry.Duration = time.Since(start)
		tel.Access.TCP(entry)
	}()
	if name == BlackHoleCluster {
		tel.Metrics.Refused.WithLabelValues(ci.Listener).Inc()
		p.o.Logger.Info("tcpproxy: refused by the outbound traffic policy (REGISTRY_ONLY): destination is not in the registry",
			"listener", ci.Listener, "destination", ci.Dest.String(), "sni", ci.SNI)
		entry.Flags = "NR"
		return
	}
	cl := p.o.Env.Cluster(name)
	if cl == nil {
		entry.Flags = "NC"
		return
	}
	release, err := cl.TryAcquireConnection()
	if err != nil {
		entry.Flags = "UO"
		return
	}
	defer release()
	up, h, err := p.connect(ctx, cl, ci)
	if err != nil {
		entry.Flags = "UF"
		if errors.Is(err, upstream.ErrNoHost) {
			entry.Flags = "UH"
		}
		return
	}
	defer up.Close()
	entry.UpstreamHost = h.Addr
	labels.Destination = mergeLocality(labels.Destination, h, up)
	tel.Metrics.TCPOpened(&labels)
	h.Begin()
	sent, received := pipe(ctx, c, up, p.cfg.IdleTimeout)
	h.End()
	entry.BytesIn, entry.BytesOut = received, sent
	tel.Metrics.TCPClosed(&labels, sent, received)
}

// connect dials an endpoint, trying others on connect failure.
func (p *Proxy) connect(ctx context.Context, cl *upstream.Cluster, ci *downstream.ConnInfo) (net.Conn, *lb.Host, error) {
	var tried []*lb.Host
	var last error
	for range max(p.cfg.MaxConnectAttempts, 1) {
		h, err := cl.Pick(tried, ci.Dest)
		if err != nil {
			return nil, nil, err
		}
		conn, err := cl.Dial(ctx, h, "")
		if err == nil {
			cl.LB.Report(h, lb.Success)
			return conn, h, nil
		}
		cl.LB.Report(h, lb.ErrorLocal)
		tried, last = append(tried, h), err
	}
	return nil, nil, last
}

func mergeLocality(p telemetry.Peer, h *lb.Host, up net.Conn) telemetry.Peer {
	if p.Locality == "" {
		p.Locality = h.Locality().String()
	}
	if p.Workload == "" {
		id := telemetry.PeerFromSPIFFE(identity.PeerIDOf(up))
		p.Workload, p.Namespace = id.Workload, id.Namespace
	}
	return p
}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// pipe copies both ways until both directions end, one fails, ctx ends,
// or nothing moves for idle. It returns the bytes sent to the downstream
// and received from it.
func pipe(ctx context.Context, down, up net.Conn, idle time.Duration) (sent, received int64) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(2)
	var nUp, nDown int64
	go func() { defer wg.Done(); nUp = copyHalf(up, down, &last) }()
	go func() { defer wg.Done(); nDown = copyHalf(down, up, &last) }()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(min(idle, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-done:
			return nDown, nUp
		case <-ctx.Done():
		case <-tick.C:
			if time.Since(time.Unix(0, last.Load())) < idle {
				continue
			}
		}
		// Stop both copies: the connection is idle or the proxy stops.
		down.SetDeadline(time.Now())
		up.SetDeadline(time.Now())
		<-done
		return nDown, nUp
	}
}

type closeWriter interface{ CloseWrite() error }

// copyHalf copies src to dst and then half-closes dst.
func copyHalf(dst, src net.Conn, last *atomic.Int64) int64 {
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	var n int64
	for {
		r, err := src.Read(buf)
		if r > 0 {
			last.Store(time.Now().UnixNano())
			w, werr := dst.Write(buf[:r])
			n += int64(w)
			if werr != nil {
				break
			}
		}
		if err != nil {
			if err == io.EOF {
				if cw, ok := dst.(closeWriter); ok {
					cw.CloseWrite()
					return n
				}
			}
			break
		}
	}
	// An error on one side ends the other too.
	dst.Close()
	src.Close()
	return n
}
