package federation

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"
)

// Status is what this member knows of the federation: what
// /debug/federation serves and `meridianctl status` prints.
type Status struct {
	Node          string          `json:"node"`
	Cluster       string          `json:"cluster"`
	Leader        bool            `json:"leader"`
	Epoch         uint64          `json:"epoch"`
	Version       uint64          `json:"version"`
	Members       []MemberStatus  `json:"members"`
	Clusters      []ClusterStatus `json:"clusters"`
	Policies      PolicyStatus    `json:"policies"`
	BytesSent     int64           `json:"bytesSent"`
	BytesReceived int64           `json:"bytesReceived"`
	Dropped       int64           `json:"droppedMessages"`
}

// MemberStatus is one member of the federation (one meridiand replica).
type MemberStatus struct {
	Name       string      `json:"name"`
	Cluster    string      `json:"cluster"`
	Role       string      `json:"role"`
	State      MemberState `json:"state"`
	Since      time.Time   `json:"since"`
	LastAlive  time.Time   `json:"lastAlive"`
	GossipAddr string      `json:"gossipAddr"`
	GRPCAddr   string      `json:"grpcAddr"`
	Epoch      uint64      `json:"epoch"`
	Version    uint64      `json:"version"`
	Verified   bool        `json:"verified"`
}

// ClusterStatus is one cluster as this member's registry holds it.
type ClusterStatus struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	State  string `json:"state"`
	// Since: when the cluster entered State.
	Since time.Time `json:"since"`
	// LastSeen: when its control plane was last heard from (or its copy
	// last current); StaleFor is the age of the data when not Alive.
	LastSeen time.Time     `json:"lastSeen"`
	StaleFor time.Duration `json:"staleFor,omitempty"`
	// Epoch and Version held here; Known* the newest this member has heard
	// of; LagVersions the difference.
	Epoch        uint64 `json:"epoch"`
	Version      uint64 `json:"version"`
	KnownEpoch   uint64 `json:"knownEpoch"`
	KnownVersion uint64 `json:"knownVersion"`
	LagVersions  uint64 `json:"lagVersions"`
	Services     int    `json:"services"`
	Endpoints    int    `json:"endpoints"`
}

// PolicyStatus summarizes the policy store.
type PolicyStatus struct {
	Live       int    `json:"live"`
	Tombstones int    `json:"tombstones"`
	Horizon    string `json:"horizon"`
}

// Status reports what this member knows now.
func (f *Federation) Status() Status {
	now := time.Now()
	own := f.haveVersion(f.cfg.Cluster.Name)
	st := Status{
		Node: f.node, Cluster: f.cfg.Cluster.Name, Leader: f.leading.Load(), Epoch: own.epoch, Version: own.version,
		BytesSent: f.m.sent.Load(), BytesReceived: f.m.received.Load(), Dropped: f.m.droppedTotal.Load(),
	}
	for _, m := range f.members.snapshot() {
		st.Members = append(st.Members, MemberStatus{
			Name: m.name, Cluster: m.meta.GetCluster(), Role: strings.TrimPrefix(strings.ToLower(m.meta.GetRole().String()), "role_"),
			State: m.state, Since: m.since, LastAlive: m.lastAlive, GossipAddr: m.addr, GRPCAddr: m.meta.GetGrpcAddr(),
			Epoch: m.meta.GetEpoch(), Version: m.meta.GetVersion(), Verified: m.verified,
		})
	}
	view := f.reg.View()
	for _, name := range view.Clusters() {
		seg := view.Segment(name)
		cs := view.Status(name)
		target := f.repl.target(name)
		_, lag := f.repl.behind(name)
		c := ClusterStatus{
			Name: name, Region: seg.Cluster().Region, State: cs.State.String(), Since: cs.Since, LastSeen: cs.LastSeen,
			Epoch: seg.Epoch(), Version: seg.Version(), KnownEpoch: max(target.epoch, seg.Epoch()), LagVersions: lag,
			Services: seg.ServiceCount(), Endpoints: seg.EndpointCount(),
		}
		c.KnownVersion = seg.Version() + lag
		if target.epoch > seg.Epoch() {
			c.KnownVersion = target.version
		}
		if cs.State.String() != "alive" && !cs.LastSeen.IsZero() {
			c.StaleFor = now.Sub(cs.LastSeen).Round(time.Millisecond)
		}
		st.Clusters = append(st.Clusters, c)
	}
	snap := f.pol.Snapshot()
	st.Policies = PolicyStatus{Live: snap.Len(), Tombstones: snap.Tombstones(), Horizon: f.pol.Horizon().String()}
	return st
}

// Handler serves /debug/federation: a text summary, or the Status as JSON
// with ?format=json or "Accept: application/json".
func (f *Federation) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		st := f.Status()
		if r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(st)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		WriteStatus(w, st)
	})
}

// WriteStatus prints a Status as tables, the way meridianctl status shows
// it.
func WriteStatus(w interface{ Write([]byte) (int, error) }, st Status) {
	role := "follower"
	if st.Leader {
		role = "leader"
	}
	fmt.Fprintf(w, "node %s (cluster %s, %s), segment %d.%d\n\n", st.Node, st.Cluster, role, st.Epoch, st.Version)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tREGION\tSTATE\tSINCE\tSTALE FOR\tSEGMENT\tLAG\tSERVICES\tENDPOINTS")
	for _, c := range st.Clusters {
		stale := "-"
		if c.StaleFor > 0 {
			stale = c.StaleFor.Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d.%d\t%d\t%d\t%d\n", c.Name, c.Region, c.State, ago(c.Since), stale, c.Epoch, c.Version, c.LagVersions, c.Services, c.Endpoints)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "MEMBER\tROLE\tSTATE\tSINCE\tGOSSIP\tGRPC\tVERIFIED")
	for _, m := range st.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%v\n", m.Name, m.Role, m.State, ago(m.Since), m.GossipAddr, m.GRPCAddr, m.Verified)
	}
	tw.Flush()
	fmt.Fprintf(w, "\npolicies: %d live, %d tombstones, collected up to %s\n", st.Policies.Live, st.Policies.Tombstones, st.Policies.Horizon)
	fmt.Fprintf(w, "wire: %d bytes sent, %d received; %d messages dropped\n", st.BytesSent, st.BytesReceived, st.Dropped)
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}
