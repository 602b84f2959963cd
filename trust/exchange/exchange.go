package exchange

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meridian-mesh/meridian/federation/policy"
	"github.com/meridian-mesh/meridian/trust/bundle"
	"github.com/meridian-mesh/meridian/trust/ca"
	"github.com/meridian-mesh/meridian/trust/service"
)

// Kinds of the replicated resources the exchange writes, mesh-scoped and
// named after the cluster they concern.
const (
	// KindStatus is a cluster's trust state, written by that cluster.
	KindStatus = "TrustStatus"
	// KindIntermediate is an intermediate the root holder signed for the
	// cluster it is named after.
	KindIntermediate = "TrustIntermediate"
)

// Store is the replicated policy store (federation's, or the cluster's
// own without federation).
type Store interface {
	Snapshot() *policy.Snapshot
	Put(ctx context.Context, k policy.Key, spec []byte) (*policy.Resource, error)
	Subscribe() *policy.Subscription
}

// Config configures an Exchange. Trust, Cluster and Store are required.
type Config struct {
	Trust   *service.Service
	Cluster string
	Store   Store
	// Clusters returns every cluster of the mesh with its state as
	// federation sees it ("alive", "dead", ...): rotation steps wait for
	// those that are not dead or gone. Nil: only the clusters that
	// published a status.
	Clusters func() map[string]string
	// Leading reports whether this replica leads its cluster: only the
	// leader publishes and takes rotation steps. Nil: always.
	Leading func() bool
	// Leader returns the API address of the replica that leads when this
	// one does not ("" when unknown), named in redirects.
	Leader func() string
	// APIAddr is this replica's API address, published so that a rotation
	// step asked of another cluster can name the root holder's.
	APIAddr string
	// Reissued, when set, is called after this replica's intermediate
	// changed and its SVIDs were reissued (a rotation's activate): so
	// that connections made with the member SVID of before are replaced
	// (meridiand: federation's Reconnect) before retire makes the old
	// root untrusted. It must not block.
	Reissued func()
	// RepublishInterval bounds how long a change of this cluster's state
	// that no event announced waits to be published; default 10s.
	RepublishInterval time.Duration

	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

// Exchange carries this cluster's trust state to the mesh and the mesh's
// to this cluster. Build it with New; run RunApply on every replica and
// RunPublish on the leader.
type Exchange struct {
	cfg  Config
	log  *slog.Logger
	m    *metrics
	kick chan struct{} // 1-buffered: publish now

	publishMu sync.Mutex            // one publish at a time (loop and rotation steps)
	refused   map[policy.Key]string // the value last refused per key, logged once; RunApply's
	resigned  map[policy.Key]string // root holder: the status last refused per key; under publishMu
}

// clusterState is a cluster's trust state, the spec of its KindStatus resource.
type clusterState struct {
	// Update is the newest signed bundle update the cluster holds (a
	// compact JWS, bundle.Sign): what every member merges.
	Update   string   `json:"update,omitempty"`
	Sequence uint64   `json:"sequence"`
	Roots    []string `json:"roots"` // key IDs of the bundle's roots
	// Intermediate is the cluster's intermediate chain in PEM (public):
	// what the root holder re-signs during a rotation.
	Intermediate string `json:"intermediate"`
	// Issuer is the key ID of the root that signed the intermediate.
	Issuer     string `json:"issuer,omitempty"`
	RootHolder bool   `json:"rootHolder,omitempty"`
	// Phase of the rotation, from the root holder.
	Phase string `json:"phase,omitempty"`
	// CurrentRoot is the key ID of the root that signs, from the root
	// holder.
	CurrentRoot string        `json:"currentRoot,omitempty"`
	SVIDTTL     time.Duration `json:"svidTTL,omitempty"`
	APIAddr     string        `json:"apiAddr,omitempty"`
}

func decodeStatus(spec []byte) (clusterState, error) {
	var st clusterState
	err := json.Unmarshal(spec, &st)
	return st, err
}

// intermediate is the spec of a KindIntermediate resource.
type intermediate struct {
	Chain string `json:"chain"` // PEM, intermediate first
}

// New checks the config and builds an Exchange.
func New(cfg Config) (*Exchange, error) {
	if cfg.Trust == nil || cfg.Cluster == "" || cfg.Store == nil {
		return nil, errors.New("exchange: Config needs Trust, Cluster and Store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	if cfg.Leading == nil {
		cfg.Leading = func() bool { return true }
	}
	if cfg.Leader == nil {
		cfg.Leader = func() string { return "" }
	}
	if cfg.RepublishInterval <= 0 {
		cfg.RepublishInterval = 10 * time.Second
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	return &Exchange{
		cfg: cfg, log: cfg.Logger.With("component", "trust-exchange"), m: m, kick: make(chan struct{}, 1),
		refused: map[policy.Key]string{}, resigned: map[policy.Key]string{},
	}, nil
}

func key(kind, cluster string) policy.Key { return policy.Key{Kind: kind, Name: cluster} }

// RunApply follows the store until ctx ends, on every replica: it merges
// every cluster's bundle update that is newer than this replica's bundle
// (bundle.Merge refuses what no trusted root signed), and installs the
// intermediate the root holder signed for this cluster. Refusals are
// logged once per value and counted.
func (x *Exchange) RunApply(ctx context.Context) error {
	sub := x.cfg.Store.Subscribe()
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.Ready():
		}
		snap, _ := sub.Take()
		x.apply(ctx, snap)
	}
}

func (x *Exchange) apply(ctx context.Context, snap *policy.Snapshot) {
	changed := false
	for _, r := range snap.List(KindStatus) {
		st, err := decodeStatus(r.Spec)
		if err != nil || st.Update == "" {
			if err != nil {
				x.refuse(r, "status", err)
			}
			continue
		}
		u, err := bundle.Decode([]byte(st.Update))
		if err != nil {
			x.refuse(r, "bundle_update", err)
			continue
		}
		if seq, _ := u.Bundle.SequenceNumber(); seq <= x.sequence() {
			continue // held already, or stale: the cluster has not caught up yet
		}
		ok, err := x.cfg.Trust.ApplyBundleUpdate(ctx, []byte(st.Update))
		if err != nil {
			x.refuse(r, "bundle_update", err)
			continue
		}
		if ok {
			changed = true
			x.m.applied.WithLabelValues("bundle_update").Inc()
		}
	}
	if r, ok := snap.Get(key(KindIntermediate, x.cfg.Cluster)); ok {
		var in intermediate
		err := json.Unmarshal(r.Spec, &in)
		var chain []*x509.Certificate
		if err == nil {
			chain, err = ca.ParseCertificates([]byte(in.Chain))
		}
		var ok bool
		if err == nil {
			ok, err = x.cfg.Trust.InstallIntermediate(ctx, chain, currentRoot(snap))
		}
		switch {
		case err != nil:
			x.refuse(r, "intermediate", err)
		case ok:
			changed = true
			x.reissued()
			x.m.applied.WithLabelValues("intermediate").Inc()
			x.log.Info("installed the intermediate the root holder signed", "issuer", chain[0].Issuer, "expires", chain[0].NotAfter)
		}
	}
	if changed {
		x.wake()
	}
}

// currentRoot is the key ID of the root that signs now, as the root
// holder published it: "" before it has.
func currentRoot(snap *policy.Snapshot) string {
	for _, r := range snap.List(KindStatus) {
		if st, err := decodeStatus(r.Spec); err == nil && st.RootHolder {
			return st.CurrentRoot
		}
	}
	return ""
}

// refuse logs and counts a refused resource, once per value.
func (x *Exchange) refuse(r *policy.Resource, what string, err error) {
	if x.refused[r.Key] == string(r.Spec) {
		return
	}
	x.refused[r.Key] = string(r.Spec)
	x.m.refused.WithLabelValues(what).Inc()
	x.log.Warn("refused trust state from the mesh", "resource", r.Key.String(), "origin", r.Origin, "err", err)
}

// sequence is this replica's bundle sequence number.
func (x *Exchange) sequence() uint64 {
	b, ok := x.cfg.Trust.Bundles.Get(x.cfg.Trust.Authority.TrustDomain())
	if !ok {
		return 0
	}
	seq, _ := b.SequenceNumber()
	return seq
}

func (x *Exchange) reissued() {
	if x.cfg.Reissued != nil {
		x.cfg.Reissued()
	}
}

func (x *Exchange) wake() {
	select {
	case x.kick <- struct{}{}:
	default:
	}
}

// RunPublish keeps this cluster's trust state in the store until ctx
// ends, on the replica that leads: its bundle update, roots and
// intermediate. On the root holder it also re-signs, during a rotation,
// the intermediates other clusters publish. It publishes when the store,
// the bundle or the intermediate changes, and every RepublishInterval.
func (x *Exchange) RunPublish(ctx context.Context) error {
	sub := x.cfg.Store.Subscribe()
	defer sub.Close()
	bundles, stop := x.cfg.Trust.Bundles.Subscribe()
	defer stop()
	tick := time.NewTicker(x.cfg.RepublishInterval)
	defer tick.Stop()
	for {
		if err := x.publish(ctx); err != nil && ctx.Err() == nil {
			x.log.Warn("publishing this cluster's trust state", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-sub.Ready():
			sub.Take()
		case <-bundles:
		case <-x.kick:
		case <-tick.C:
		}
	}
}

// publish writes this cluster's status when it changed and, on the root
// holder, the intermediates to re-sign.
func (x *Exchange) publish(ctx context.Context) error {
	x.publishMu.Lock()
	defer x.publishMu.Unlock()
	own, root, err := x.ownStatus(ctx)
	if err != nil {
		return err
	}
	spec, _ := json.Marshal(own)
	snap := x.cfg.Store.Snapshot()
	if cur, ok := snap.Get(key(KindStatus, x.cfg.Cluster)); !ok || !bytes.Equal(cur.Spec, spec) {
		if _, err := x.cfg.Store.Put(ctx, key(KindStatus, x.cfg.Cluster), spec); err != nil {
			return fmt.Errorf("exchange: %w", err)
		}
	}
	if root == nil {
		return nil
	}
	return x.resign(ctx, snap, root)
}

// ownStatus is what this replica knows of its cluster's trust state, and
// the root it signs with when it holds the root.
func (x *Exchange) ownStatus(ctx context.Context) (clusterState, *x509.Certificate, error) {
	t := x.cfg.Trust
	root, err := t.Root(ctx)
	if err != nil {
		return clusterState{}, nil, err
	}
	chain := t.Authority.Chain()
	st := clusterState{Update: string(t.BundleUpdate()), Intermediate: string(ca.EncodeCertificates(chain...)), APIAddr: x.cfg.APIAddr, SVIDTTL: t.SVIDTTL()}
	if b, ok := t.Bundles.Get(t.Authority.TrustDomain()); ok {
		st.Sequence, _ = b.SequenceNumber()
		for _, r := range b.X509Authorities() {
			st.Roots = append(st.Roots, bundle.KeyID(r))
			if chain[len(chain)-1].CheckSignatureFrom(r) == nil {
				st.Issuer = bundle.KeyID(r)
			}
		}
	}
	if root != nil {
		st.RootHolder, st.CurrentRoot = true, bundle.KeyID(root)
		if st.Phase, err = t.RotationPhase(ctx); err != nil {
			return clusterState{}, nil, err
		}
	}
	return st, root, nil
}

// resign, on the root holder, signs under the current root every
// published intermediate that is not under it yet, and publishes its own
// intermediate for the other replicas of its cluster once it is under
// the current root: what this replica holds may lag the root another
// replica activated, and the store must never carry the holder back.
func (x *Exchange) resign(ctx context.Context, snap *policy.Snapshot, root *x509.Certificate) error {
	current := bundle.KeyID(root)
	for _, r := range snap.List(KindStatus) {
		st, err := decodeStatus(r.Spec)
		if err != nil || st.Issuer == current || st.Intermediate == "" {
			continue
		}
		if r.Name == x.cfg.Cluster {
			continue // the root holder's own: ActivateRoot re-signed it
		}
		chain, err := ca.ParseCertificates([]byte(st.Intermediate))
		if err == nil && signedAlready(snap, r.Name, chain[0], root) {
			continue // the cluster has not installed it yet
		}
		var signed []*x509.Certificate
		if err == nil {
			signed, err = x.cfg.Trust.SignIntermediate(ctx, r.Name, chain)
		}
		if err != nil {
			if x.resigned[r.Key] != string(r.Spec) {
				x.resigned[r.Key] = string(r.Spec)
				x.m.refused.WithLabelValues("resign").Inc()
				x.log.Warn("not re-signing a cluster's intermediate", "cluster", r.Name, "err", err)
			}
			continue
		}
		if signed == nil {
			continue
		}
		if err := x.putIntermediate(ctx, r.Name, signed); err != nil {
			return err
		}
		x.log.Info("published a re-signed intermediate", "cluster", r.Name)
	}
	own := x.cfg.Trust.Authority.Chain()
	if own[len(own)-1].CheckSignatureFrom(root) != nil {
		return nil
	}
	if cur, ok := snap.Get(key(KindIntermediate, x.cfg.Cluster)); !ok || !bytes.Equal(cur.Spec, intermediateSpec(own)) {
		return x.putIntermediate(ctx, x.cfg.Cluster, own)
	}
	return nil
}

// signedAlready reports whether the store holds an intermediate for the
// key of cluster's published one under root.
func signedAlready(snap *policy.Snapshot, cluster string, published *x509.Certificate, root *x509.Certificate) bool {
	r, ok := snap.Get(key(KindIntermediate, cluster))
	if !ok {
		return false
	}
	var in intermediate
	if json.Unmarshal(r.Spec, &in) != nil {
		return false
	}
	chain, err := ca.ParseCertificates([]byte(in.Chain))
	return err == nil && bytes.Equal(chain[0].RawSubjectPublicKeyInfo, published.RawSubjectPublicKeyInfo) &&
		chain[len(chain)-1].CheckSignatureFrom(root) == nil
}

func intermediateSpec(chain []*x509.Certificate) []byte {
	b, _ := json.Marshal(intermediate{Chain: string(ca.EncodeCertificates(chain...))})
	return b
}

func (x *Exchange) putIntermediate(ctx context.Context, cluster string, chain []*x509.Certificate) error {
	if _, err := x.cfg.Store.Put(ctx, key(KindIntermediate, cluster), intermediateSpec(chain)); err != nil {
		return fmt.Errorf("exchange: %w", err)
	}
	return nil
}
