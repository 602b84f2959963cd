package federation

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are registered on the Registerer of the Config; nothing is
// global, so several members can run in one process (tests, benchmarks).
type metrics struct {
	members     *prometheus.GaugeVec   // state
	lagVersions *prometheus.GaugeVec   // cluster
	lagSeconds  *prometheus.GaugeVec   // cluster
	bytes       *prometheus.CounterVec // direction, channel
	dropped     *prometheus.CounterVec // reason
	pulls       *prometheus.CounterVec // kind, result
	policies    *prometheus.GaugeVec   // state
	leader      prometheus.Gauge
	// followerWrites counts local-segment changes made while following.
	followerWrites prometheus.Counter

	// Totals kept beside the counters for Status and the benchmarks.
	sent, received atomic.Int64
	droppedTotal   atomic.Int64
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "meridian", "federation"
	m := &metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "members",
			Help: "Members of the federation this member knows, by state (alive, suspect, dead, left)."}, []string{"state"}),
		lagVersions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "replication_lag_versions",
			Help: "Versions of a cluster's segment this member knows exist but does not hold yet."}, []string{"cluster"}),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "replication_lag_seconds",
			Help: "How long this member's copy of a cluster's segment has been behind (0 when up to date)."}, []string{"cluster"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "bytes_total",
			Help: "Bytes on the wire, by direction (sent, received) and channel (gossip, grpc)."}, []string{"direction", "channel"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dropped_messages_total",
			Help: "Messages from the network dropped, by reason (malformed, oversized, unknown_version, invalid, replayed, split_brain, unverified)."}, []string{"reason"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "pulls_total",
			Help: "Pulls from other members, by kind (delta, full, policies) and result (ok, error)."}, []string{"kind", "result"}),
		policies: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "policies",
			Help: "Policy resources held, by state (live, tombstone)."}, []string{"state"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "leader",
			Help: "1 while this replica leads its cluster."}),
		followerWrites: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "follower_segment_writes_total",
			Help: "Changes to the local segment made while this replica follows, other than its pulls from the leader: a local source running outside the leader. 0 in a healthy cluster."}),
	}
	for _, c := range []prometheus.Collector{m.members, m.lagVersions, m.lagSeconds, m.bytes, m.dropped, m.pulls, m.policies, m.leader, m.followerWrites} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) countBytes(channel string) func(direction string, n int) {
	sent, received := m.bytes.WithLabelValues("sent", channel), m.bytes.WithLabelValues("received", channel)
	return func(direction string, n int) {
		if n <= 0 {
			return
		}
		if direction == "sent" {
			sent.Add(float64(n))
			m.sent.Add(int64(n))
		} else {
			received.Add(float64(n))
			m.received.Add(int64(n))
		}
	}
}

func (m *metrics) drop(reason string) {
	m.dropped.WithLabelValues(reason).Inc()
	m.droppedTotal.Add(1)
}
