package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar/internal/cptest"
	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/sds"
	"github.com/meridian-mesh/meridian/trust/svid"
	"github.com/meridian-mesh/meridian/xds/server"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "xDS address")
	backend := flag.String("backend", "", "the benchmark backend, IP:PORT")
	services := flag.Int("services", 1, "services in the registry (the first is the benchmark's)")
	endpoints := flag.Int("endpoints", 1, "endpoints per filler service")
	mtls := flag.Bool("mtls", false, "mTLS between a client and a server sidecar, xDS over TLS with token attestation")
	inbound := flag.String("inbound", "", "with -mtls: the server sidecar's inbound address")
	dir := flag.String("dir", "", "with -mtls: where to write ca.pem and the tokens")
	flag.Parse()
	if err := run(*addr, *backend, *services, *endpoints, *mtls, *inbound, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "benchcp:", err)
		os.Exit(1)
	}
}

func run(addr, backend string, services, endpoints int, mtls bool, inbound, dir string) error {
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
		// The server sidecar's inbound port is the endpoint.
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
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := server.Config{Registry: reg, Cluster: "c1", Logger: log}
	var opts []grpc.ServerOption
	if mtls {
		creds, err := secure(ctx, &cfg, dir)
		if err != nil {
			return err
		}
		opts = append(opts, grpc.Creds(creds))
	}
	xs, err := server.New(cfg)
	if err != nil {
		return err
	}
	g := grpc.NewServer(opts...)
	xs.Register(g)
	errc := make(chan error, 1)
	go func() { errc <- xs.Run(ctx) }()
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

var td = spiffeid.RequireTrustDomainFromString("bench.test")

// secure sets up meridiand's security path with a fresh mesh CA: SDS from
// trust's SVID manager and bundle, proxies attested by the tokens written
// into dir (cptest.Token, which the attestor maps to the workload, as
// meridiand asks the API server about a service-account token), and TLS
// with the control plane's SVID.
func secure(ctx context.Context, cfg *server.Config, dir string) (credentials.TransportCredentials, error) {
	if dir == "" {
		return nil, errors.New("-mtls needs -dir")
	}
	root, err := ca.NewRoot(ca.RootOptions{TrustDomain: td})
	if err != nil {
		return nil, err
	}
	key, err := ca.GenerateKey(ca.ECDSAP256)
	if err != nil {
		return nil, err
	}
	ic, err := root.IssueIntermediate(ca.IntermediateRequest{Cluster: "c1", PublicKey: key.Public()})
	if err != nil {
		return nil, err
	}
	auth, err := ca.NewAuthority(ca.AuthorityConfig{TrustDomain: td, Cluster: "c1", Chain: []*x509.Certificate{ic}, Key: key})
	if err != nil {
		return nil, err
	}
	bundles := bundle.NewSource(spiffebundle.FromX509Authorities(td, []*x509.Certificate{root.Certificate()}))
	svids := svid.NewManager(svid.ManagerConfig{Minter: auth})
	go svids.Run(ctx)
	ownID, err := trust.WorkloadID(td, "meridian-system", "meridiand")
	if err != nil {
		return nil, err
	}
	own, err := auth.Mint(ownID, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), caPEM, 0o644); err != nil {
		return nil, err
	}
	for _, sa := range []string{"client", "server"} {
		if err := os.WriteFile(filepath.Join(dir, "token-"+sa), []byte(cptest.Token("bench", sa)+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	cfg.Secrets = sds.NewProvider(svids, bundles)
	cfg.Attestor = cptest.TokenAttestor(td)
	return credentials.NewTLS(tlsconfig.TLSServerConfig(own)), nil
}
