package mtls

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/trust/authz"
	"github.com/meridian-mesh/meridian/trust/internal/metrics"
)

// ServerTLS is the tls.Config of an inbound mTLS listener: it presents the
// workload's SVID and requires a client SVID that chains to the bundle of
// its own trust domain. Which peer may do what is decided afterwards by
// SPIFFE ID (authz); trust domains without a bundle are refused here.
func ServerTLS(svid x509svid.Source, bundles x509bundle.Source) *tls.Config {
	return tlsconfig.MTLSServerConfig(svid, bundles, tlsconfig.AuthorizeAny())
}

// ClientTLS is the tls.Config of an outbound mTLS connection: it presents
// the workload's SVID and accepts the server only if its SVID is one of
// servers (the IDs the destination's endpoints run as) — a certificate that
// merely chains to the root is not enough.
func ClientTLS(svid x509svid.Source, bundles x509bundle.Source, servers ...spiffeid.ID) *tls.Config {
	return tlsconfig.MTLSClientConfig(svid, bundles, tlsconfig.AuthorizeOneOf(servers...))
}

// PeerOf verifies the peer certificates of a finished handshake again and
// returns the peer (SPIFFE ID and issuing cluster). go-spiffe's verification
// leaves no verified chains in the connection state, hence the second
// verification.
func PeerOf(state tls.ConnectionState, bundles x509bundle.Source) (authz.Peer, error) {
	if len(state.PeerCertificates) == 0 {
		return authz.Peer{}, errors.New("mtls: the peer presented no certificate")
	}
	id, chains, err := x509svid.Verify(state.PeerCertificates, bundles)
	if err != nil {
		return authz.Peer{}, fmt.Errorf("mtls: %w", err)
	}
	return authz.PeerFromChain(id, chains), nil
}

// HandshakeTimeout bounds how long an accepted connection may take to show
// its first byte and finish the TLS handshake.
const HandshakeTimeout = 10 * time.Second

// Listener accepts mesh connections under an mTLS mode: STRICT accepts only
// mTLS, PERMISSIVE also plaintext. It tells the two apart by the first
// byte (a TLS record starts with 0x16), completes the handshake before
// Accept returns, and drops — and counts — connections the mode refuses or
// whose handshake fails, so the caller only ever sees admitted ones.
type Listener struct {
	inner   net.Listener
	mode    v1alpha1.MTLSMode
	tls     *tls.Config
	bundles x509bundle.Source
	log     *slog.Logger
	refused *prometheus.CounterVec

	conns     chan acceptResult
	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

type acceptResult struct {
	conn *Conn
	err  error
}

// ListenerConfig configures NewListener.
type ListenerConfig struct {
	Mode v1alpha1.MTLSMode // default STRICT
	// TLS is the server config (ServerTLS).
	TLS *tls.Config
	// Bundles verify peers for Conn.Peer.
	Bundles x509bundle.Source
	Logger  *slog.Logger
	// Registerer receives meridian_trust_mtls_refused_total{mode,reason}.
	Registerer prometheus.Registerer
}

// NewListener wraps inner; it starts the goroutine that accepts and
// handshakes, stopped by Close.
func NewListener(inner net.Listener, cfg ListenerConfig) *Listener {
	if cfg.Mode == "" {
		cfg.Mode = DefaultMode
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	l := &Listener{
		inner: inner, mode: cfg.Mode, tls: cfg.TLS, bundles: cfg.Bundles, log: log.With("component", "trust.mtls"),
		refused: metrics.CounterVec(cfg.Registerer, prometheus.CounterOpts{
			Name: "meridian_trust_mtls_refused_total", Help: "Inbound connections refused by the mTLS listener, by mode and reason.",
		}, "mode", "reason"),
		conns: make(chan acceptResult), done: make(chan struct{}),
	}
	l.wg.Go(l.acceptLoop)
	return l
}

// Conn is an admitted connection: mTLS (with its peer) or, in PERMISSIVE
// mode, plaintext.
type Conn struct {
	net.Conn
	peer authz.Peer
	mtls bool
}

// Peer is the verified peer of an mTLS connection; zero for plaintext.
func (c *Conn) Peer() authz.Peer { return c.peer }

// MTLS reports whether the connection is mutual TLS.
func (c *Conn) MTLS() bool { return c.mtls }

func (l *Listener) acceptLoop() {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			select {
			case l.conns <- acceptResult{err: err}:
			case <-l.done:
			}
			return
		}
		l.wg.Go(func() { l.admit(c) })
	}
}

// admit sniffs, handshakes and hands the connection to Accept, or drops it.
func (l *Listener) admit(c net.Conn) {
	conn, reason, err := l.handshake(c)
	if err != nil {
		c.Close()
		l.refused.WithLabelValues(string(l.mode), reason).Inc()
		l.log.Info("inbound connection refused", "remote", c.RemoteAddr(), "mode", l.mode, "reason", reason, "error", err)
		return
	}
	select {
	case l.conns <- acceptResult{conn: conn}:
	case <-l.done:
		conn.Close()
	}
}

func (l *Listener) handshake(c net.Conn) (*Conn, string, error) {
	c.SetDeadline(time.Now().Add(HandshakeTimeout))
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	if err != nil {
		return nil, "no_data", err
	}
	sniffed := &peeked{Conn: c, r: br}
	if first[0] != 0x16 {
		if l.mode != v1alpha1.MTLSPermissive {
			return nil, "plaintext", errors.New("plaintext connection under STRICT mTLS")
		}
		c.SetDeadline(time.Time{})
		return &Conn{Conn: sniffed}, "", nil
	}
	tc := tls.Server(sniffed, l.tls)
	if err := tc.Handshake(); err != nil {
		return nil, "handshake", err
	}
	peer, err := PeerOf(tc.ConnectionState(), l.bundles)
	if err != nil {
		tc.Close()
		return nil, "peer", err
	}
	c.SetDeadline(time.Time{})
	return &Conn{Conn: tc, peer: peer, mtls: true}, "", nil
}

// peeked is a connection whose first bytes were read into r.
type peeked struct {
	net.Conn
	r *bufio.Reader
}

func (p *peeked) Read(b []byte) (int, error) { return p.r.Read(b) }

// Accept returns the next admitted connection (a *Conn).
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case r := <-l.conns:
		if r.err != nil {
			return nil, r.err
		}
		return r.conn, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting, drops connections not yet accepted and waits for
// the listener's goroutines. It is idempotent.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.wg.Wait()
	})
	return err
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }
