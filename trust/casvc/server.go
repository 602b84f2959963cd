package casvc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/attest"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/internal/metrics"
	"github.com/meridian-mesh/meridian/trust/member"
)

// Config configures New.
type Config struct {
	// Authority signs SVIDs. Required.
	Authority *ca.Authority
	// Bundles are returned with every answer and verify members renewing
	// their intermediate. Required.
	Bundles *bundle.Source
	// JoinTokens attests join-token callers; nil refuses join tokens.
	JoinTokens *attest.JoinTokens
	// Kube attests service-account tokens; nil refuses them.
	Kube *attest.Kube
	// Root signs cluster intermediates; set only on the root holder.
	Root   *ca.Root
	Logger *slog.Logger
	// Registerer receives meridian_trust_casvc_requests_total{path,code}.
	Registerer prometheus.Registerer
}

// Server is the CA's network face. Serve its Handler over TLS with a
// member certificate (ServerTLS).
type Server struct {
	cfg      Config
	root     atomic.Pointer[ca.Root]
	td       spiffeid.TrustDomain
	log      *slog.Logger
	requests *prometheus.CounterVec
}

// New checks the configuration and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Authority == nil || cfg.Bundles == nil {
		return nil, errors.New("casvc: an authority and a bundle source are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		cfg: cfg, td: cfg.Authority.TrustDomain(), log: log.With("component", "trust.casvc"),
		requests: metrics.CounterVec(cfg.Registerer, prometheus.CounterOpts{
			Name: "meridian_trust_casvc_requests_total", Help: "CA service requests by path and HTTP status.",
		}, "path", "code"),
	}
	s.root.Store(cfg.Root)
	return s, nil
}

// SetRoot replaces the root that signs intermediates (root rotation: the
// new root signs from its activation on).
func (s *Server) SetRoot(r *ca.Root) { s.root.Store(r) }

// ServerTLS is the tls.Config to serve the Handler with: the member SVID,
// and client certificates requested but not required (a renewing cluster
// presents its member certificate; a workload asking for its first SVID
// has none). The handler verifies what is presented.
func ServerTLS(svid x509svid.Source) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			s, err := svid.GetX509SVID()
			if err != nil {
				return nil, err
			}
			return tlsCertificate(s), nil
		},
	}
}

// Handler serves the three paths.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathSVID, s.wrap(PathSVID, s.svid))
	mux.HandleFunc("POST "+PathIntermediate, s.wrap(PathIntermediate, s.intermediate))
	mux.HandleFunc("GET "+PathBundle, s.wrap(PathBundle, func(r *http.Request) (any, error) { return s.bundleJSON() }))
	return mux
}

// httpError is a failure with its status; refusals become 403.
type httpError struct {
	code int
	err  error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Errorf(format, args...)}
}

// wrap decodes nothing itself: it maps the handler's result or error to
// JSON, logs failures once, and counts.
func (s *Server) wrap(path string, h func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, MaxRequestSize)
		out, err := h(r)
		code := http.StatusOK
		if err != nil {
			body := ErrorResponse{Error: err.Error()}
			var he *httpError
			var mbe *http.MaxBytesError
			refused, isRefusal := errors.AsType[*trust.RefusedError](err)
			switch {
			case errors.As(err, &mbe):
				code = http.StatusRequestEntityTooLarge
				body.Reason = "oversized"
			case isRefusal:
				code = http.StatusForbidden
				body.Reason = refused.Reason
			case errors.As(err, &he):
				code = he.code
			default:
				code = http.StatusServiceUnavailable
			}
			s.log.Warn("CA request failed", "path", path, "remote", r.RemoteAddr, "code", code, "reason", body.Reason, "error", err)
			out = body
		}
		s.requests.WithLabelValues(path, strconv.Itoa(code)).Inc()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(out) // the client went away; nothing to do
	}
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badRequest("casvc: request body: %v", err)
	}
	return nil
}

func (s *Server) svid(r *http.Request) (any, error) {
	var req SVIDRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.TTLSeconds < 0 || req.TTLSeconds > int64(ca.DefaultMaxSVIDTTL/time.Second) {
		return nil, badRequest("casvc: ttlSeconds %d is outside 0..%d", req.TTLSeconds, int64(ca.DefaultMaxSVIDTTL/time.Second))
	}
	id, err := s.svidCaller(r, req.Token)
	if err != nil {
		return nil, err
	}
	if _, _, ok := trust.ParseWorkloadID(id); !ok {
		return nil, trust.Refuse(ca.ReasonIdentity, "token is bound to %s, not to a workload (spiffe://TD/ns/NS/sa/SA)", id)
	}
	chain, err := s.cfg.Authority.SignCSR(ca.SignRequest{CSR: req.CSR, ID: id, TTL: time.Duration(req.TTLSeconds) * time.Second})
	if err != nil {
		return nil, err
	}
	b, err := s.bundleJSON()
	if err != nil {
		return nil, err
	}
	s.log.Info("SVID issued", "id", id, "expires", chain[0].NotAfter)
	return SVIDResponse{SPIFFEID: id.String(), Chain: string(ca.EncodeCertificates(chain...)), Bundle: b}, nil
}

// svidCaller is the workload asking: proven by its token, or, to renew, by
// the still valid SVID it presented on the TLS connection (a VM whose join
// token was spent on its first SVID renews that way).
func (s *Server) svidCaller(r *http.Request, token string) (spiffeid.ID, error) {
	if token != "" {
		return s.attest(r.Context(), token)
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return spiffeid.ID{}, trust.Refuse("no_attestor", "neither a token nor a current SVID")
	}
	id, _, err := x509svid.Verify(r.TLS.PeerCertificates, s.cfg.Bundles)
	if err != nil {
		return spiffeid.ID{}, trust.Refuse("svid", "the presented SVID does not verify: %v", err)
	}
	if !id.MemberOf(s.td) {
		return spiffeid.ID{}, trust.Refuse(ca.ReasonTrustDomain, "%s is not in trust domain %s", id, s.td)
	}
	return id, nil
}

func (s *Server) attest(ctx context.Context, token string) (spiffeid.ID, error) {
	switch {
	case attest.IsJoinToken(token) && s.cfg.JoinTokens != nil:
		return s.cfg.JoinTokens.Redeem(ctx, token)
	case !attest.IsJoinToken(token) && s.cfg.Kube != nil:
		return s.cfg.Kube.Attest(ctx, token)
	}
	return spiffeid.ID{}, trust.Refuse("no_attestor", "this cluster does not accept this kind of token")
}

func (s *Server) intermediate(r *http.Request) (any, error) {
	root := s.root.Load()
	if root == nil {
		return nil, &httpError{http.StatusNotFound, errors.New("casvc: this cluster does not hold the root; ask the root holder")}
	}
	var req IntermediateRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	cluster, err := s.intermediateCaller(r, req.Token)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, trust.Refuse(ca.ReasonMalformed, "CSR does not parse: %v", err)
	}
	if err := ca.CheckPublicKey(csr.PublicKey); err != nil {
		return nil, trust.Refuse(ca.ReasonKeyType, "%v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, trust.Refuse(ca.ReasonBadSignature, "CSR signature does not verify: %v", err)
	}
	ic, err := root.IssueIntermediate(ca.IntermediateRequest{Cluster: cluster, PublicKey: csr.PublicKey})
	if err != nil {
		return nil, err
	}
	b, err := s.bundleJSON()
	if err != nil {
		return nil, err
	}
	s.log.Info("intermediate issued", "cluster", cluster, "expires", ic.NotAfter)
	return IntermediateResponse{Cluster: cluster, Chain: string(ca.EncodeCertificates(ic)), Bundle: b}, nil
}

// intermediateCaller is the cluster asking: proven by a join token bound to
// its control-plane ID, or by the member certificate it presented.
func (s *Server) intermediateCaller(r *http.Request, token string) (string, error) {
	if token == "" {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			return "", trust.Refuse("no_attestor", "neither a join token nor a member certificate")
		}
		cluster, err := member.Verify(r.TLS.PeerCertificates, s.cfg.Bundles)
		if err != nil {
			return "", trust.Refuse("member", "%v", err)
		}
		return cluster, nil
	}
	if s.cfg.JoinTokens == nil {
		return "", trust.Refuse("no_attestor", "this cluster does not accept join tokens")
	}
	id, err := s.cfg.JoinTokens.Redeem(r.Context(), token)
	if err != nil {
		return "", err
	}
	cluster, ok := trust.ParseClusterID(id)
	if !ok || !id.MemberOf(s.td) {
		return "", trust.Refuse(ca.ReasonIdentity, "token is bound to %s, not to a cluster of %s", id, s.td)
	}
	return cluster, nil
}

func (s *Server) bundleJSON() (json.RawMessage, error) {
	b, ok := s.cfg.Bundles.Get(s.td)
	if !ok {
		return nil, fmt.Errorf("casvc: no bundle for %s yet", s.td)
	}
	doc, err := b.Marshal()
	if err != nil {
		return nil, fmt.Errorf("casvc: bundle: %w", err)
	}
	return doc, nil
}
