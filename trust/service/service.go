package service

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"

	"github.com/meridian-mesh/meridian/trust/attest"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/bundleendpoint"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/casvc"
	"github.com/meridian-mesh/meridian/trust/member"
	"github.com/meridian-mesh/meridian/trust/sds"
	"github.com/meridian-mesh/meridian/trust/svid"
	"github.com/meridian-mesh/meridian/trust/workloadapi"
)

// Files of a CA directory, as `meridianctl trust init` and
// `meridianctl trust issue-intermediate` write them (Istio's cacerts
// layout, so an Istio user's plug-in certificates can be reused).
const (
	RootCertFile  = "root-cert.pem"
	RootKeyFile   = "root-key.pem"
	CACertFile    = "ca-cert.pem"
	CAKeyFile     = "ca-key.pem"
	CertChainFile = "cert-chain.pem"
)

// DefaultListenAddr is where the CA service and the bundle endpoint listen
// (istiod's CA port).
const DefaultListenAddr = ":15012"

// Config configures New.
type Config struct {
	TrustDomain spiffeid.TrustDomain // required
	Cluster     string               // required
	// Etcd and Prefix say where CA state lives (meridiand:
	// store.Key("trust")); Sealer encrypts the keys stored there. Required.
	Etcd   *clientv3.Client
	Prefix string
	Sealer *ca.Sealer

	// How the first start gets CA material, when etcd holds none; later
	// starts load it from etcd and ignore these. Exactly one on a first
	// start:
	//
	// RootDir holds root-cert.pem and root-key.pem: this cluster holds the
	// root (it is imported into etcd, sealed) and issues itself an
	// intermediate.
	RootDir string
	// CADir holds this cluster's intermediate: ca-cert.pem, ca-key.pem,
	// root-cert.pem and cert-chain.pem.
	CADir string
	// Join asks the root holder's CA service for an intermediate.
	Join *Join

	// SVIDTTL of the SVIDs this control plane mints; default 1h.
	SVIDTTL time.Duration
	// Kube, when set, attests service-account tokens (TokenReview) on the
	// CA service and on SDS streams.
	Kube kubernetes.Interface
	// ListenAddr of the CA service and the bundle endpoint (TLS with the
	// member SVID); default DefaultListenAddr, "-" for none.
	ListenAddr string
	// WorkloadSocket, when set, serves the SPIFFE Workload API there, to
	// the local processes Registrations select.
	WorkloadSocket string
	Registrations  []workloadapi.Registration
	// Foreign trust domains trusted explicitly, fetched from their bundle
	// endpoints.
	Foreign []bundleendpoint.Foreign

	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Join is the online way to a first intermediate: a join token bound to
// this cluster's control-plane ID, the root holder's CA service URL, and the
// root key ID to pin (both printed by `meridianctl trust join-token
// --cluster`).
type Join struct {
	URL, Token, RootKeyID string
}

// Service is the trust component of one meridiand: the cluster's authority,
// the SVIDs it hands out, the bundles it trusts, and the servers that hand
// them over. Its exported parts are what other components use.
type Service struct {
	// Authority signs this cluster's SVIDs.
	Authority *ca.Authority
	// SVIDs mints and rotates the SVIDs handed out over SDS, the Workload
	// API and the member identity.
	SVIDs *svid.Manager
	// Bundles are the trusted roots per trust domain.
	Bundles *bundle.Source
	// SDS publishes secrets on the xDS server (see package sds).
	SDS *sds.Provider
	// JoinTokens mints and redeems join tokens.
	JoinTokens *attest.JoinTokens
	// Kube attests service-account tokens; nil without Kubernetes.
	Kube *attest.Kube
	// Member is the control plane's identity for federation.
	Member *member.Credentials

	cfg      Config
	log      *slog.Logger
	store    *ca.Store
	key      crypto.Signer // the intermediate's key, kept across root rotations
	memberID spiffeid.ID
	caSvc    *casvc.Server
	wlapi    *workloadapi.Server
	listener net.Listener

	mu     sync.Mutex // guards root, rotations and the stored bundle
	root   *ca.Root   // the root holder's root; nil elsewhere
	update []byte     // the newest signed bundle update held, for federation
}

// New loads (or, on a first start, obtains) the CA material and builds the
// parts. The listeners open here, so that their addresses are known before
// Run.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.TrustDomain.IsZero() || cfg.Cluster == "" || cfg.Etcd == nil || cfg.Sealer == nil {
		return nil, errors.New("trust: trust domain, cluster, etcd and sealing key are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Service{cfg: cfg, log: log.With("component", "trust"), store: ca.NewStore(cfg.Etcd, cfg.Prefix, cfg.Sealer)}
	var err error
	if s.memberID, err = member.ID(cfg.TrustDomain, cfg.Cluster); err != nil {
		return nil, err
	}
	chain, key, err := s.loadOrBootstrap(ctx)
	if err != nil {
		return nil, err
	}
	s.Authority, err = ca.NewAuthority(ca.AuthorityConfig{
		TrustDomain: cfg.TrustDomain, Cluster: cfg.Cluster, Chain: chain, Key: key,
		DefaultTTL: cfg.SVIDTTL, Registerer: cfg.Registerer,
	})
	if err != nil {
		return nil, err
	}
	s.key = key
	s.SVIDs = svid.NewManager(svid.ManagerConfig{Minter: s.Authority, TTL: cfg.SVIDTTL, Logger: log, Registerer: cfg.Registerer})
	s.SDS = sds.NewProvider(s.SVIDs, s.Bundles)
	s.JoinTokens = attest.NewJoinTokens(attest.JoinTokensConfig{Client: cfg.Etcd, Prefix: cfg.Prefix, Registerer: cfg.Registerer})
	if cfg.Kube != nil {
		s.Kube = attest.NewKube(attest.KubeConfig{Reviewer: attest.NewTokenReviewer(cfg.Kube), TrustDomain: cfg.TrustDomain, Registerer: cfg.Registerer})
	}
	s.Member = member.NewCredentials(s.SVIDs.Source(s.memberID), s.Bundles, cfg.TrustDomain)
	if _, err := s.SVIDs.Get(s.memberID); err != nil {
		return nil, fmt.Errorf("trust: member SVID: %w", err)
	}
	s.caSvc, err = casvc.New(casvc.Config{Authority: s.Authority, Bundles: s.Bundles, JoinTokens: s.JoinTokens, Kube: s.Kube, Root: s.root, Logger: log, Registerer: cfg.Registerer})
	if err != nil {
		return nil, err
	}
	if cfg.WorkloadSocket != "" {
		s.wlapi, err = workloadapi.New(workloadapi.Config{SocketPath: cfg.WorkloadSocket, SVIDs: s.SVIDs, Bundles: s.Bundles, TrustDomain: cfg.TrustDomain,
			Registry: workloadapi.NewRegistry(cfg.Registrations...), Logger: log, Registerer: cfg.Registerer})
		if err != nil {
			return nil, err
		}
	}
	if addr := cfg.ListenAddr; addr != "-" {
		if addr == "" {
			addr = DefaultListenAddr
		}
		if s.listener, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("trust: CA service: %w", err)
		}
	}
	return s, nil
}

// MemberID is this control plane's SPIFFE ID.
func (s *Service) MemberID() spiffeid.ID { return s.memberID }

// CAAddr is the CA service's address, "" when it does not listen.
func (s *Service) CAAddr() string {
	if s.listener == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// Handler serves the CA service and, at /.well-known/spiffe/bundle, the
// SPIFFE bundle endpoint (https_spiffe, endpoint ID MemberID).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/trust/", s.caSvc.Handler())
	if h, err := bundleendpoint.Handler(s.cfg.TrustDomain, s.Bundles); err == nil {
		mux.Handle("/.well-known/spiffe/bundle", h)
	}
	return mux
}

// Run serves and rotates until ctx ends: the SVID manager, the CA service, the Workload API, and one watcher per foreign
// trust domain.
func (s *Service) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.SVIDs.Run(gctx) })
	if s.wlapi != nil {
		g.Go(func() error { return s.wlapi.Run(gctx) })
	}
	for _, f := range s.cfg.Foreign {
		g.Go(func() error { return bundleendpoint.Watch(gctx, s.cfg.TrustDomain, f, s.Bundles, s.log) })
	}
	if s.listener != nil {
		srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: casvc.ServerTLS(s.SVIDs.Source(s.memberID))}
		g.Go(func() error {
			if err := srv.ServeTLS(s.listener, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("trust: CA service: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		})
	}
	s.log.Info("trust running", "trust_domain", s.cfg.TrustDomain, "member", s.memberID, "ca", s.CAAddr(), "root_holder", s.holdsRoot(), "workload_socket", s.cfg.WorkloadSocket)
	return g.Wait()
}

// Close releases the listener when Run was never called.
func (s *Service) Close() error {
	if s.listener != nil {
		s.listener.Close()
	}
	return nil
}

func (s *Service) holdsRoot() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.root != nil
}
