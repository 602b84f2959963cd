// Command benchcp is the control plane of bench/proxy.sh: a registry with
// the benchmark's services, served to meridian-proxy over xDS on loopback.
//
//	benchcp -addr 127.0.0.1:PORT -backend 127.0.0.1:PORT [-services 1000 -endpoints 10]
//	benchcp -addr ... -backend ... -mtls -inbound 127.0.0.1:PORT
//
// Plain: Meridian's own xds/server serves service "bench" (port 80, HTTP)
// with the backend as its endpoint, plus -services-1 filler services of
// -endpoints endpoints each (for the memory figure). With -mtls: node
// "client" gets its SVID and mTLS to the "server" node's inbound address,
// which forwards to the backend — through go-control-plane's snapshot
// server with the resources of package proposal (mTLS as trust builds it).
// It prints "ready" on stdout once serving and runs until killed. Benches
// only.
package main

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	gcpserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar/internal/proposal"
	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/xds/server"
	"github.com/meridian-mesh/meridian/xds/translate"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "xDS address")
	backend := flag.String("backend", "", "the benchmark backend, IP:PORT")
	services := flag.Int("services", 1, "services in the registry (the first is the benchmark's)")
	endpoints := flag.Int("endpoints", 1, "endpoints per filler service")
	mtls := flag.Bool("mtls", false, "serve the client/server mTLS pair (proposal resources)")
	inbound := flag.String("inbound", "", "with -mtls: the server sidecar's inbound address")
	flag.Parse()
	if err := run(*addr, *backend, *services, *endpoints, *mtls, *inbound); err != nil {
		fmt.Fprintln(os.Stderr, "benchcp:", err)
		os.Exit(1)
	}
}

func run(addr, backend string, services, endpoints int, mtls bool, inbound string) error {
	be, err := netip.ParseAddrPort(backend)
	if err != nil {
		return fmt.Errorf("-backend: %w", err)
	}
	reg := registry.New(registry.Options{})
	if err := reg.SetCluster(registry.Cluster{Name: "c1", Region: "r1"}); err != nil {
		return err
	}
	loc := registry.Locality{Region: "r1", Zone: "z1"}
	target := be
	if mtls {
		if target, err = netip.ParseAddrPort(inbound); err != nil {
			return fmt.Errorf("-inbound: %w", err)
		}
	}
	changes := []registry.Change{
		registry.PutService(&registry.Service{Namespace: "bench", Name: "bench", Ports: []registry.ServicePort{{Port: 80, Protocol: registry.ProtocolHTTP}}}),
		registry.PutEndpoint(&registry.Endpoint{Service: registry.ServiceKey{Namespace: "bench", Name: "bench"}, ID: "b",
			Addresses: []string{target.Addr().String()}, Port: uint32(target.Port()), Locality: loc, ServiceAccount: "server"}),
	}
	for i := 1; i < services; i++ {
		name := fmt.Sprintf("filler-%d", i)
		changes = append(changes, registry.PutService(&registry.Service{Namespace: "bench", Name: name, Ports: []registry.ServicePort{{Port: 80, Protocol: registry.ProtocolHTTP}}}))
		for j := range endpoints {
			changes = append(changes, registry.PutEndpoint(&registry.Endpoint{Service: registry.ServiceKey{Namespace: "bench", Name: name}, ID: fmt.Sprint(j),
				Addresses: []string{fmt.Sprintf("10.%d.%d.%d", i/250, i%250, j+1)}, Port: 8080, Locality: loc}))
		}
	}
	if _, err := reg.Apply("c1", changes...); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	g := grpc.NewServer()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	errc := make(chan error, 1)
	if mtls {
		if err := serveMTLS(ctx, g, reg, be); err != nil {
			return err
		}
	} else {
		xs, err := server.New(server.Config{Registry: reg, Cluster: "c1", Logger: log})
		if err != nil {
			return err
		}
		xs.Register(g)
		go func() { errc <- xs.Run(ctx) }()
	}
	go g.Serve(lis)
	fmt.Println("ready", lis.Addr())
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	g.Stop()
	return nil
}

// serveMTLS publishes the client and server sidecars' resources with a
// fresh mesh CA (package trust).
func serveMTLS(ctx context.Context, g *grpc.Server, reg *registry.Registry, app netip.AddrPort) error {
	td := spiffeid.RequireTrustDomainFromString("bench.test")
	root, err := ca.NewRoot(ca.RootOptions{TrustDomain: td})
	if err != nil {
		return err
	}
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		return err
	}
	ic, err := root.IssueIntermediate(ca.IntermediateRequest{Cluster: "c1", PublicKey: key.Public()})
	if err != nil {
		return err
	}
	auth, err := ca.NewAuthority(ca.AuthorityConfig{TrustDomain: td, Cluster: "c1", Chain: []*x509.Certificate{ic}, Key: key})
	if err != nil {
		return err
	}
	bundles := []*spiffebundle.Bundle{spiffebundle.FromX509Authorities(td, []*x509.Certificate{root.Certificate()})}
	snap := cache.NewSnapshotCache(false, cache.IDHash{}, nil)
	loc := registry.Locality{Region: "r1", Zone: "z1"}
	for _, p := range []struct {
		proxy translate.Proxy
		sa    string
	}{
		{translate.Proxy{ID: "client", Mode: translate.ModeSidecar, Cluster: "c1", Namespace: "bench", Locality: loc}, "client"},
		{translate.Proxy{ID: "server", Mode: translate.ModeSidecar, Cluster: "c1", Namespace: "bench", Locality: loc, InboundPorts: []uint32{uint32(app.Port())}}, "server"},
	} {
		id, err := trust.WorkloadID(td, "bench", p.sa)
		if err != nil {
			return err
		}
		svid, err := auth.Mint(id, 24*time.Hour)
		if err != nil {
			return err
		}
		o := proposal.Options{MTLS: &proposal.MTLS{SVID: svid, Bundles: bundles}}
		if p.proxy.ID == "server" {
			o.InboundHTTP = []uint32{uint32(app.Port())}
		}
		res, err := proposal.Resources(translate.Input{View: reg.View()}, p.proxy, o)
		if err != nil {
			return err
		}
		s, err := cache.NewSnapshot("1", res)
		if err != nil {
			return err
		}
		if err := snap.SetSnapshot(ctx, p.proxy.ID, s); err != nil {
			return err
		}
	}
	discovery.RegisterAggregatedDiscoveryServiceServer(g, gcpserver.NewServer(ctx, snap, nil))
	return nil
}
