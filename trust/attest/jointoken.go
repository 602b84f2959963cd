package attest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meridian-mesh/meridian/trust"
	"github.com/meridian-mesh/meridian/trust/internal/metrics"
)

// Join token lifetimes.
const (
	DefaultJoinTokenTTL = time.Hour
	MaxJoinTokenTTL     = 7 * 24 * time.Hour
	// usedMarkerTTL is how long a redeemed token is remembered, so that a
	// replay is named a replay rather than a forgery.
	usedMarkerTTL = 24 * time.Hour
)

// tokenPrefix starts every join token; the rest is 32 random bytes in
// unpadded base64url. The prefix lets a caller send one "token" field and the
// server tell a join token from a Kubernetes service-account token.
const tokenPrefix = "mjt1."

// IsJoinToken reports whether s has the shape of a join token.
func IsJoinToken(s string) bool { return strings.HasPrefix(s, tokenPrefix) }

// JoinTokens mints and redeems single-use, expiring join tokens, each bound
// to the SPIFFE ID it proves: a workload outside Kubernetes
// (spiffe://TD/ns/NS/sa/SA) or a cluster asking for its intermediate
// (spiffe://TD/meridian/cluster/NAME). Tokens live in etcd under
//
//	PREFIX/join-tokens/SHA256(token)       {id, expires}, with an etcd lease
//	PREFIX/join-tokens-used/SHA256(token)  the redemption, kept for a day
//
// so only their hashes are stored, they survive a restart, and a token is
// redeemed once across every replica of a cluster (an etcd transaction).
// Methods are safe for concurrent use.
type JoinTokens struct {
	cli     *clientv3.Client
	prefix  string
	now     func() time.Time
	refused *prometheus.CounterVec
}

// JoinTokensConfig configures NewJoinTokens.
type JoinTokensConfig struct {
	// Client and Prefix say where tokens live (meridiand: the store's
	// client and store.Key("trust")). Required.
	Client *clientv3.Client
	Prefix string
	// Registerer receives meridian_trust_attestation_refused_total
	// {method="join_token",reason}.
	Registerer prometheus.Registerer
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// NewJoinTokens returns a JoinTokens on etcd.
func NewJoinTokens(cfg JoinTokensConfig) *JoinTokens {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &JoinTokens{cli: cfg.Client, prefix: cfg.Prefix, now: now, refused: refusedCounter(cfg.Registerer)}
}

func refusedCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	return metrics.CounterVec(reg, prometheus.CounterOpts{
		Name: "meridian_trust_attestation_refused_total",
		Help: "Attestations refused, by method (join_token, k8s_sat) and reason.",
	}, "method", "reason")
}

type tokenRecord struct {
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}

// Create mints a token for id, valid for ttl (0: DefaultJoinTokenTTL).
func (j *JoinTokens) Create(ctx context.Context, id spiffeid.ID, ttl time.Duration) (token string, expires time.Time, err error) {
	if ttl == 0 {
		ttl = DefaultJoinTokenTTL
	}
	if ttl < 0 || ttl > MaxJoinTokenTTL {
		return "", time.Time{}, fmt.Errorf("attest: join token TTL %v is outside 0..%v", ttl, MaxJoinTokenTTL)
	}
	if id.IsZero() || id.Path() == "" {
		return "", time.Time{}, errors.New("attest: a join token must name a SPIFFE ID with a path")
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("attest: join token: %w", err)
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	expires = j.now().Add(ttl)
	val, _ := json.Marshal(tokenRecord{ID: id.String(), Expires: expires})
	// The lease outlives the token a little: an expired token that is
	// still present is refused as expired, not as forged.
	lease, err := j.cli.Grant(ctx, int64((ttl+time.Minute)/time.Second))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("attest: join token lease: %w", err)
	}
	if _, err := j.cli.Put(ctx, j.key("join-tokens", token), string(val), clientv3.WithLease(lease.ID)); err != nil {
		return "", time.Time{}, fmt.Errorf("attest: store join token: %w", err)
	}
	return token, expires, nil
}

// Refusal reasons of join tokens.
const (
	ReasonMalformed = "malformed" // not a join token's shape
	ReasonForged    = "forged"    // never issued here (forged, mistyped, or of another cluster)
	ReasonReplayed  = "replayed"  // already redeemed
	ReasonExpired   = "expired"   // past its expiry
)

// Redeem checks a token and consumes it: the first call returns the ID it is
// bound to, every later one is refused as a replay. Refusals are
// *trust.RefusedError, counted by reason.
func (j *JoinTokens) Redeem(ctx context.Context, token string) (spiffeid.ID, error) {
	id, err := j.redeem(ctx, token)
	if r, ok := errors.AsType[*trust.RefusedError](err); ok {
		j.refused.WithLabelValues("join_token", r.Reason).Inc()
	}
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("attest: join token: %w", err)
	}
	return id, nil
}

func (j *JoinTokens) redeem(ctx context.Context, token string) (spiffeid.ID, error) {
	raw, ok := strings.CutPrefix(token, tokenPrefix)
	if secret, err := base64.RawURLEncoding.DecodeString(raw); !ok || err != nil || len(secret) != 32 {
		return spiffeid.ID{}, trust.Refuse(ReasonMalformed, "not a join token (want %s followed by 43 base64url characters)", tokenPrefix)
	}
	k := j.key("join-tokens", token)
	resp, err := j.cli.Get(ctx, k)
	if err != nil {
		return spiffeid.ID{}, err
	}
	if len(resp.Kvs) == 0 {
		return spiffeid.ID{}, j.whyMissing(ctx, token)
	}
	var rec tokenRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return spiffeid.ID{}, fmt.Errorf("stored token record: %w", err)
	}
	if !j.now().Before(rec.Expires) {
		_, _ = j.cli.Delete(ctx, k) // the lease would remove it a minute later anyway
		return spiffeid.ID{}, trust.Refuse(ReasonExpired, "token expired at %s", rec.Expires.Format(time.RFC3339))
	}
	id, err := spiffeid.FromString(rec.ID)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("stored token record: %w", err)
	}
	lease, err := j.cli.Grant(ctx, int64(usedMarkerTTL/time.Second))
	if err != nil {
		return spiffeid.ID{}, err
	}
	used, _ := json.Marshal(map[string]any{"id": rec.ID, "redeemed": j.now()})
	// Only the redemption that still sees the token at the revision it read
	// consumes it; a concurrent one finds it gone and is a replay.
	txn, err := j.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", resp.Kvs[0].ModRevision)).
		Then(clientv3.OpDelete(k), clientv3.OpPut(j.key("join-tokens-used", token), string(used), clientv3.WithLease(lease.ID))).
		Commit()
	if err != nil {
		return spiffeid.ID{}, err
	}
	if !txn.Succeeded {
		return spiffeid.ID{}, trust.Refuse(ReasonReplayed, "token was redeemed concurrently by another caller")
	}
	return id, nil
}

func (j *JoinTokens) whyMissing(ctx context.Context, token string) error {
	resp, err := j.cli.Get(ctx, j.key("join-tokens-used", token), clientv3.WithCountOnly())
	if err != nil {
		return err
	}
	if resp.Count > 0 {
		return trust.Refuse(ReasonReplayed, "token was already redeemed")
	}
	return trust.Refuse(ReasonForged, "token was never issued by this cluster")
}

// key hashes the token: etcd holds no usable secret.
func (j *JoinTokens) key(area, token string) string {
	sum := sha256.Sum256([]byte(token))
	return j.prefix + "/" + area + "/" + hex.EncodeToString(sum[:])
}
