package sidecar_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/meridian-mesh/meridian/internal/testutil"
	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/sidecar"
	"github.com/meridian-mesh/meridian/sidecar/internal/cptest"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/sds"
	"github.com/meridian-mesh/meridian/trust/svid"
	"github.com/meridian-mesh/meridian/xds/server"
)

// TestMTLSThroughMeridianXDS: the whole security path from Meridian's own
// parts. xds/server serves over TLS; each sidecar presents its SVID (as a
// workload that redeemed a join token does) and is attested by it
// (server.PeerSVID); xds/translate gives the client's cluster trust's
// upstream mTLS and the server's inbound the STRICT chains; trust/sds
// delivers both SVIDs and the bundle over SDS. The request crosses with
// mTLS checked by SPIFFE ID on both sides; plaintext to the server's
// inbound port is refused.
//
// Proxies are attested two ways: by the SVID they present on the xDS
// connection, and by a token file sent as stream metadata (as a Kubernetes
// service-account token is; the test's attestor maps tokens to IDs where
// meridiand would ask the API server).
func TestMTLSThroughMeridianXDS(t *testing.T) {
	for _, how := range []string{"svid", "token"} {
		t.Run(how, func(t *testing.T) { mtlsThroughMeridian(t, how) })
	}
}

func mtlsThroughMeridian(t *testing.T, how string) {
	ca := newAuthority(t, td)
	bundles := bundle.NewSource(spiffebundle.FromX509Authorities(td, []*x509.Certificate{ca.root.Certificate()}))
	manager := svid.NewManager(svid.ManagerConfig{Minter: ca.auth})
	own := ca.svid(t, "meridian-system", "meridiand")
	serverTLS := tlsconfig.TLSServerConfig(own)
	serverTLS.ClientAuth = tls.RequestClientCert
	reg := registry.New(registry.Options{})
	if err := reg.SetCluster(registry.Cluster{Name: "c1", Region: "r1"}); err != nil {
		t.Fatal(err)
	}
	app := startBackend(t, "echo-app")
	inb, up := freeAddr(t), freeAddr(t)
	appPort := app.addr.Port()
	if _, err := reg.Apply("c1",
		registry.PutService(&registry.Service{Namespace: "shop", Name: "echo", Ports: []registry.ServicePort{{Port: 80, Protocol: registry.ProtocolHTTP}}}),
		registry.PutEndpoint(&registry.Endpoint{Service: registry.ServiceKey{Namespace: "shop", Name: "echo"}, ID: "e1",
			Addresses: []string{inb.Addr().String()}, Port: uint32(inb.Port()), ServiceAccount: "echo",
			Locality: registry.Locality{Region: "r1", Zone: "z1"}}),
	); err != nil {
		t.Fatal(err)
	}
	attestor := server.PeerSVID(bundles)
	if how == "token" {
		attestor = server.AttestorFunc(func(ctx context.Context) (spiffeid.ID, bool, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			auth := md.Get("authorization")
			if len(auth) == 0 {
				return spiffeid.ID{}, false, nil
			}
			sa, ok := strings.CutPrefix(auth[0], "Bearer token-of-")
			if !ok {
				return spiffeid.ID{}, false, errors.New("unknown token")
			}
			id, err := trust.WorkloadID(td, "shop", sa)
			return id, err == nil, err
		})
	}
	m := cptest.StartMeridian(t, reg, "c1", "", cptest.MeridianOption{
		Configure: func(c *server.Config) {
			c.Secrets = sds.NewProvider(manager, bundles)
			c.Attestor = attestor
		},
		GRPC: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(serverTLS))},
	})
	// as sets up a proxy's xDS connection and attestation.
	as := func(cfg sidecar.Config, sa string) sidecar.Config {
		tlsCfg := tlsconfig.TLSClientConfig(bundles, tlsconfig.AuthorizeID(own.ID))
		if how == "svid" {
			tlsCfg = tlsconfig.MTLSClientConfig(ca.svid(t, "shop", sa), bundles, tlsconfig.AuthorizeID(own.ID))
		} else {
			cfg.XDSTokenFile = filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(cfg.XDSTokenFile, []byte("token-of-"+sa+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cfg.XDSDialOptions = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg))}
		return cfg
	}
	spx := startProxy(t, m.Addr, as(sidecar.Config{
		Node:    xdsclient.NodeConfig{ID: "echo-1", Mode: xdsclient.ModeSidecar, Cluster: "c1", Namespace: "shop", ServiceAccount: "echo", Locality: "r1/z1", InboundPorts: []string{fmt.Sprintf("%d/http", appPort)}},
		Inbound: []sidecar.InboundPort{{Listen: inb, AppPort: appPort}},
	}, "echo"))
	startProxy(t, m.Addr, as(sidecar.Config{
		Node:      xdsclient.NodeConfig{ID: "client-1", Mode: xdsclient.ModeSidecar, Cluster: "c1", Namespace: "shop", ServiceAccount: "client", Locality: "r1/z1"},
		Upstreams: []sidecar.Upstream{{Listen: up, Host: host("echo"), Port: 80}},
	}, "client"))
	c := &http.Client{Timeout: 5 * time.Second}
	if body := eventually2xx(t, c, "http://"+up.String()+"/sds"); !strings.HasPrefix(body, "echo-app GET /sds") {
		t.Fatalf("body = %q", body)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if v := spx.metric(t, "meridian_requests_total", "reporter", "destination", "source_workload", "client", "source_namespace", "shop"); v < 1 {
			return fmt.Errorf("server-side requests attributed to the client's SPIFFE ID: %v", v)
		}
		return nil
	})
	if code, _, _ := get(t, &http.Client{Timeout: 2 * time.Second}, "http://"+inb.String()+"/plain"); code == 200 {
		t.Fatal("plaintext reached the application under STRICT")
	}
}
