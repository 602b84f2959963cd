package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
)

// Config says which etcd to use. With no Endpoints, an embedded server is
// started in DataDir.
type Config struct {
	// Endpoints of an external etcd cluster ("https://10.0.0.5:2379").
	Endpoints []string
	// TLS for an external cluster: client certificate, key and CA bundle.
	CertFile, KeyFile, CAFile string

	// DataDir of the embedded server. Required when Endpoints is empty.
	DataDir string
	// ClientAddr is where the embedded server listens for clients; default
	// "127.0.0.1:0" (a free port). Replicas of one cluster that share an
	// embedded etcd connect to it through Endpoints.
	ClientAddr string

	// Prefix under which every key lives; default "/meridian/". Clusters
	// that share one external etcd use different prefixes.
	Prefix string
	// DialTimeout bounds the first connection; default 5s.
	DialTimeout time.Duration
}

// Store is an open etcd connection, and the embedded server when there is
// one.
type Store struct {
	Client   *clientv3.Client
	prefix   string
	embedded *embed.Etcd
	log      *slog.Logger
	closing  atomic.Bool
}

// Open connects to etcd, starting the embedded server first if Config has
// no Endpoints. It returns once etcd answers.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "store")
	if cfg.Prefix == "" {
		cfg.Prefix = "/meridian/"
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	s := &Store{prefix: cfg.Prefix, log: log}
	endpoints := cfg.Endpoints
	var tlsConfig *tls.Config
	if len(endpoints) == 0 {
		e, err := startEmbedded(ctx, cfg, log, &s.closing)
		if err != nil {
			return nil, err
		}
		s.embedded = e
		endpoints = []string{"http://" + e.Clients[0].Addr().String()}
	} else if cfg.CAFile != "" || cfg.CertFile != "" {
		var err error
		if tlsConfig, err = clientTLS(cfg); err != nil {
			return nil, err
		}
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints, DialTimeout: cfg.DialTimeout, TLS: tlsConfig, Context: context.WithoutCancel(ctx),
		Logger: zapToSlog(log.With("part", "etcd-client"), zapcore.WarnLevel, &s.closing),
	})
	if err != nil {
		s.closeEmbedded()
		return nil, fmt.Errorf("store: connect to etcd %v: %w", endpoints, err)
	}
	s.Client = c
	// clientv3.New does not wait for a connection; ask once so that a
	// wrong address fails here with a clear error.
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := c.Get(pctx, s.prefix+"ping"); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: etcd %v does not answer: %w", endpoints, err)
	}
	log.Info("etcd ready", "endpoints", endpoints, "embedded", s.embedded != nil)
	return s, nil
}

func startEmbedded(ctx context.Context, cfg Config, log *slog.Logger, quiet *atomic.Bool) (*embed.Etcd, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("store: an embedded etcd needs a data dir")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	addr := cfg.ClientAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ec := embed.NewConfig()
	ec.Name = "meridian"
	ec.Dir = cfg.DataDir
	ec.ListenClientUrls = []url.URL{{Scheme: "http", Host: addr}}
	ec.AdvertiseClientUrls = ec.ListenClientUrls
	// A single-node cluster never dials its peer URL: a free loopback port
	// avoids clashes between clusters on one machine.
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	ec.ListenPeerUrls = []url.URL{peer}
	ec.AdvertisePeerUrls = []url.URL{peer}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	// The server's warnings are mostly "apply request took too long" on a
	// busy machine: errors only.
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapToSlog(log.With("part", "etcd-server"), zapcore.ErrorLevel, quiet))
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "1h"
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("store: start embedded etcd in %s: %w", cfg.DataDir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("store: embedded etcd: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("store: embedded etcd not ready after 60s")
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
}

func clientTLS(cfg Config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("store: etcd CA: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("store: etcd CA %s holds no PEM certificate", cfg.CAFile)
		}
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("store: etcd client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Key returns the full key for a path under the store's prefix:
// Key("workloads", "shop", "web") is "/meridian/workloads/shop/web".
func (s *Store) Key(parts ...string) string { return s.prefix + path.Join(parts...) }

// ClientURL returns the embedded server's client URL, or "" when the store
// is external: what other replicas of the cluster pass as Endpoints.
func (s *Store) ClientURL() string {
	if s.embedded == nil {
		return ""
	}
	return "http://" + s.embedded.Clients[0].Addr().String()
}

// Close closes the client and stops the embedded server. It is idempotent.
func (s *Store) Close() error {
	s.closing.Store(true)
	var err error
	if s.Client != nil {
		err = s.Client.Close()
		s.Client = nil
	}
	s.closeEmbedded()
	return err
}

func (s *Store) closeEmbedded() {
	if s.embedded != nil {
		s.embedded.Close()
		s.embedded = nil
	}
}
