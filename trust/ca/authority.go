package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/internal/metrics"
)

// SVID lifetimes.
const (
	// DefaultSVIDTTL is the lifetime of an X.509-SVID; holders rotate at
	// half of it.
	DefaultSVIDTTL = time.Hour
	// DefaultMaxSVIDTTL caps what a caller may ask for.
	DefaultMaxSVIDTTL = 24 * time.Hour
)

// Authority is a cluster's issuing CA: the cluster's intermediate
// certificate (signed by the root) and its key. It signs X.509-SVIDs for
// identities that something else has already attested; it checks what it is
// handed (the CSR, the ID's trust domain, the TTL), not who asks.
//
// An Authority is safe for concurrent use. SetChain swaps the intermediate
// atomically (root rotation re-signs the same key under a new root).
type Authority struct {
	td      spiffeid.TrustDomain
	cluster string
	now     func() time.Time
	ttl     time.Duration
	maxTTL  time.Duration
	keyType KeyType
	state   atomic.Pointer[signingState]

	issued  prometheus.Counter
	refused *prometheus.CounterVec
	expiry  prometheus.Gauge
}

type signingState struct {
	chain []*x509.Certificate // intermediate first, root excluded
	key   crypto.Signer
}

// AuthorityConfig configures NewAuthority.
type AuthorityConfig struct {
	// TrustDomain of every SVID the authority signs. Required.
	TrustDomain spiffeid.TrustDomain
	// Cluster is the cluster this authority belongs to; it must match the
	// intermediate's URI SAN, and SVIDs carry it as their subject's OU.
	Cluster string
	// Chain is the intermediate certificate first, then any further
	// signing certificates short of the root. Required.
	Chain []*x509.Certificate
	// Key is the intermediate's private key. Required.
	Key crypto.Signer
	// DefaultTTL of SVIDs when a request names none; default
	// DefaultSVIDTTL. MaxTTL caps requests; default DefaultMaxSVIDTTL.
	DefaultTTL, MaxTTL time.Duration
	// KeyType of keys Mint generates; default ECDSAP256.
	KeyType KeyType
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Registerer receives meridian_trust_svids_issued_total,
	// meridian_trust_csr_refused_total{reason} and
	// meridian_trust_intermediate_expiry_timestamp_seconds{cluster}.
	// Optional.
	Registerer prometheus.Registerer
}

// NewAuthority checks the chain against the key, the trust domain and the
// cluster, and returns an Authority ready to sign.
func NewAuthority(cfg AuthorityConfig) (*Authority, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("ca: authority: trust domain is required")
	}
	a := &Authority{
		td:      cfg.TrustDomain,
		cluster: cfg.Cluster,
		now:     clock(cfg.Now),
		ttl:     orDefault(cfg.DefaultTTL, DefaultSVIDTTL),
		maxTTL:  orDefault(cfg.MaxTTL, DefaultMaxSVIDTTL),
		keyType: cfg.KeyType,
		issued: metrics.Counter(cfg.Registerer, prometheus.CounterOpts{
			Name: "meridian_trust_svids_issued_total", Help: "X.509-SVIDs signed by this cluster's authority.",
		}),
		refused: metrics.CounterVec(cfg.Registerer, prometheus.CounterOpts{
			Name: "meridian_trust_csr_refused_total", Help: "SVID signing requests refused, by reason.",
		}, "reason"),
		expiry: metrics.GaugeVec(cfg.Registerer, prometheus.GaugeOpts{
			Name: "meridian_trust_intermediate_expiry_timestamp_seconds",
			Help: "When this cluster's intermediate CA certificate expires (Unix seconds); SVIDs cannot outlive it.",
		}, "cluster").WithLabelValues(cfg.Cluster),
	}
	if a.ttl > a.maxTTL {
		return nil, fmt.Errorf("ca: authority: default TTL %v exceeds max TTL %v", a.ttl, a.maxTTL)
	}
	if err := cfg.KeyType.validate(); err != nil {
		return nil, err
	}
	if err := a.SetChain(cfg.Chain, cfg.Key); err != nil {
		return nil, err
	}
	return a, nil
}

// SetChain replaces the intermediate chain and key, after the same checks
// as NewAuthority. SVIDs signed afterwards carry the new chain.
func (a *Authority) SetChain(chain []*x509.Certificate, key crypto.Signer) error {
	if len(chain) == 0 || key == nil {
		return errors.New("ca: authority: an intermediate certificate and its key are required")
	}
	ic := chain[0]
	if !ic.IsCA || ic.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("ca: authority: the first certificate of the chain is not a CA")
	}
	if !publicKeysEqual(key.Public(), ic.PublicKey) {
		return errors.New("ca: authority: the key does not belong to the intermediate certificate")
	}
	if a.cluster != "" {
		want, err := trust.ClusterID(a.td, a.cluster)
		if err != nil {
			return fmt.Errorf("ca: authority: %w", err)
		}
		if len(ic.URIs) != 1 || ic.URIs[0].String() != want.String() {
			return fmt.Errorf("ca: authority: the intermediate is not %s's (URI SANs %v)", want, ic.URIs)
		}
	}
	a.state.Store(&signingState{chain: append([]*x509.Certificate(nil), chain...), key: key})
	a.expiry.Set(float64(ic.NotAfter.Unix()))
	return nil
}

// Chain returns the current intermediate chain (intermediate first).
func (a *Authority) Chain() []*x509.Certificate {
	return append([]*x509.Certificate(nil), a.state.Load().chain...)
}

// TrustDomain is the trust domain the authority signs for.
func (a *Authority) TrustDomain() spiffeid.TrustDomain { return a.td }

// Cluster is the cluster the authority belongs to.
func (a *Authority) Cluster() string { return a.cluster }

// SignRequest is one SVID signing request.
type SignRequest struct {
	// CSR in DER (PKCS#10). Its public key becomes the SVID's key. It may
	// carry no SAN, or exactly the URI SAN of ID; nothing else.
	CSR []byte
	// ID is the attested identity the SVID is for.
	ID spiffeid.ID
	// TTL; 0 means the authority's default. Capped by MaxTTL and by the
	// intermediate's own expiry.
	TTL time.Duration
}

// SignCSR validates a CSR and signs an X.509-SVID for req.ID. It returns the
// full chain: the SVID first, then the intermediate(s). A refusal is a
// *trust.RefusedError and is counted by reason.
func (a *Authority) SignCSR(req SignRequest) ([]*x509.Certificate, error) {
	pub, err := a.checkRequest(req)
	if err != nil {
		return nil, a.refuse(err)
	}
	chain, err := a.sign(req.ID, pub, req.TTL)
	if err != nil {
		return nil, err
	}
	return chain, nil
}

// Mint generates a key and signs an SVID for id, for holders that let the
// control plane make their key (Workload API, SDS). No CSR is involved, so
// nothing can be smuggled into the certificate; the ID is still checked.
func (a *Authority) Mint(id spiffeid.ID, ttl time.Duration) (*x509svid.SVID, error) {
	if err := a.checkID(id); err != nil {
		return nil, a.refuse(err)
	}
	if err := a.checkTTL(ttl); err != nil {
		return nil, a.refuse(err)
	}
	key, err := GenerateKey(a.keyType)
	if err != nil {
		return nil, err
	}
	chain, err := a.sign(id, key.Public(), ttl)
	if err != nil {
		return nil, err
	}
	return &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key}, nil
}

func (a *Authority) refuse(err error) error {
	if r, ok := errors.AsType[*trust.RefusedError](err); ok {
		a.refused.WithLabelValues(r.Reason).Inc()
	}
	return fmt.Errorf("ca: sign SVID: %w", err)
}

func (a *Authority) checkID(id spiffeid.ID) error {
	switch {
	case id.IsZero():
		return trust.Refuse(ReasonIdentity, "no SPIFFE ID to sign for")
	case !id.MemberOf(a.td):
		return trust.Refuse(ReasonTrustDomain, "%s is not in trust domain %s", id, a.td)
	case id.Path() == "":
		return trust.Refuse(ReasonIdentity, "%s has no path; an SVID names a workload", id)
	}
	// Paths under /meridian/ are the control planes'; a cluster signs its
	// own and nobody else's.
	if strings.HasPrefix(id.Path(), "/meridian/") {
		if c, ok := trust.ParseClusterID(id); !ok || c != a.cluster {
			return trust.Refuse(ReasonIdentity, "%s is reserved; this authority signs only cluster %q's control-plane identity under /meridian/", id, a.cluster)
		}
	}
	return nil
}

func (a *Authority) checkTTL(ttl time.Duration) error {
	if ttl < 0 || ttl > a.maxTTL {
		return trust.Refuse(ReasonTTL, "TTL %v is outside 0..%v", ttl, a.maxTTL)
	}
	return nil
}

// sign builds and signs the leaf. The template is fixed here; nothing of the
// CSR but its public key reaches it.
func (a *Authority) sign(id spiffeid.ID, pub crypto.PublicKey, ttl time.Duration) ([]*x509.Certificate, error) {
	st := a.state.Load()
	now := a.now()
	notAfter := now.Add(orDefault(ttl, a.ttl))
	ic := st.chain[0]
	if !now.Before(ic.NotAfter) {
		return nil, fmt.Errorf("ca: sign SVID: the intermediate expired at %s", ic.NotAfter.Format(time.RFC3339))
	}
	if notAfter.After(ic.NotAfter) {
		notAfter = ic.NotAfter
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	var subject pkix.Name
	subject.Organization = []string{"Meridian"}
	if a.cluster != "" {
		// The cluster in the subject is what Envoy's RBAC can see of a
		// peer's origin (see package authz); meridian-proxy reads it from
		// the intermediate's URI SAN instead.
		subject.OrganizationalUnit = []string{a.cluster}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ic, pub, st.key)
	if err != nil {
		return nil, fmt.Errorf("ca: sign SVID for %s: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: parse SVID for %s: %w", id, err)
	}
	a.issued.Inc()
	return append([]*x509.Certificate{leaf}, st.chain...), nil
}
