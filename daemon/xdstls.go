package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// wireXDSTLS serves xDS over TLS on a port of its own (xds.tlsAddr) when
// trust is on, for proxies outside Kubernetes: meridian-proxy --xds-tls
// presents the SVID it enrolled with a join token as its client
// certificate, and the xDS server's PeerSVID attestor sends it its
// workload secrets over SDS on that stream. The port serves what a proxy
// needs and nothing else: ADS (state of the world and delta, SDS on the
// same stream), XDSAdmin and health — not the policy, trust admin or
// Workload APIs of the plaintext gRPC port.
//
// The server certificate is the member SVID, read at every handshake, so
// trust's rotations reach new connections at once. Client certificates
// are requested, and verified against the mesh bundle only when given:
// Kubernetes pods still attest with service-account tokens over
// server-side TLS. A certificate that does not chain to the mesh (or is
// not an SVID of its trust domain) refuses the handshake. Every handshake
// is counted by result and every refusal logged; a bad one costs only its
// connection.
func wireXDSTLS(_ context.Context, d *Daemon) error {
	addr := d.Config.xdsTLSAddr()
	if addr == "" || d.Trust == nil {
		return nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		// The default port is fixed: name what to change when two
		// meridiands on one host both want it.
		return fmt.Errorf("xds.tlsAddr (--xds-tls-addr; default grpcAddr's host, port %s): %w", DefaultXDSTLSPort, err)
	}
	d.xdsTLSLis = lis
	d.OnClose(func() error {
		lis.Close() // already closed by the server if it served
		return nil
	})
	cfg := tlsconfig.TLSServerConfig(d.Trust.SVIDs.Source(d.Trust.MemberID()))
	cfg.ClientAuth = tls.RequestClientCert
	cfg.VerifyPeerCertificate = verifyClientSVIDIfGiven(d.Trust.Bundles, d.Trust.MemberID().TrustDomain())
	results := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meridian_xds_tls_handshakes_total",
		Help: "TLS handshakes on meridiand's TLS xDS port by result: ok, not_tls (a plaintext client), bad_certificate (a client certificate that is not an SVID of the mesh), closed (the client left), error.",
	}, []string{"result"})
	if err := d.Metrics.Register(results); err != nil {
		return fmt.Errorf("xds-tls: %w", err)
	}
	creds := &countedHandshakes{TransportCredentials: credentials.NewTLS(cfg), log: d.Log.With("component", "xds-tls"), results: results}
	srv := grpc.NewServer(grpc.Creds(creds))
	d.XDS.Register(srv)
	healthpb.RegisterHealthServer(srv, d.health)
	d.Go("xds-tls", func(ctx context.Context) error {
		served := make(chan error, 1)
		go func() { served <- srv.Serve(lis) }()
		select {
		case err := <-served:
			return fmt.Errorf("daemon: TLS xDS server: %w", err)
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), d.Config.ShutdownTimeout.Duration)
		defer cancel()
		d.stopGRPC(sctx, srv)
		<-served
		return nil
	})
	return nil
}

// XDSTLSAddr is the address of the TLS xDS server, "" when there is none.
func (d *Daemon) XDSTLSAddr() string {
	if d.xdsTLSLis == nil {
		return ""
	}
	return d.xdsTLSLis.Addr().String()
}

// errClientCertificate marks a client certificate refused at the handshake.
var errClientCertificate = errors.New("client certificate refused")

// verifyClientSVIDIfGiven is VerifyClientCertIfGiven for SPIFFE: no
// certificate passes (the stream may still attest with a token), and a
// given one must be an X.509-SVID of td chaining to the bundles as they
// are at the handshake (both roots during a rotation's overlap).
func verifyClientSVIDIfGiven(bundles x509bundle.Source, td spiffeid.TrustDomain) func([][]byte, [][]*x509.Certificate) error {
	verify := tlsconfig.VerifyPeerCertificate(bundles, tlsconfig.AuthorizeMemberOf(td))
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return nil
		}
		if err := verify(raw, nil); err != nil {
			return fmt.Errorf("%w: %w", errClientCertificate, err)
		}
		return nil
	}
}

// countedHandshakes counts and logs the server handshakes of the TLS
// credentials it wraps: grpc-go drops a failed one with only a line in its
// own log, and an operator needs to see clients that are refused.
type countedHandshakes struct {
	credentials.TransportCredentials
	log     *slog.Logger
	results *prometheus.CounterVec
}

func (c *countedHandshakes) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	remote := conn.RemoteAddr().String()
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	result := handshakeResult(err)
	c.results.WithLabelValues(result).Inc()
	switch result {
	case "ok":
	case "closed":
		c.log.Debug("TLS xDS client left during the handshake", "remote", remote, "err", err)
	default:
		c.log.Warn("TLS xDS handshake refused", "remote", remote, "result", result, "err", err)
	}
	return out, info, err
}

func (c *countedHandshakes) Clone() credentials.TransportCredentials {
	return &countedHandshakes{TransportCredentials: c.TransportCredentials.Clone(), log: c.log, results: c.results}
}

func handshakeResult(err error) string {
	var rec tls.RecordHeaderError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &rec):
		return "not_tls"
	case errors.Is(err, errClientCertificate):
		return "bad_certificate"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET):
		return "closed"
	}
	return "error"
}
