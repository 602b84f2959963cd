package telemetry

import (
	"net/url"
	"strings"
	"sync"
)

// PeerHeader carries a sidecar's own labels to its peer (see the package
// doc); proxies strip it before applications see it.
const PeerHeader = "X-Meridian-Peer"

// MaxPeerHeader bounds what ParsePeer reads: labels are short (Kubernetes
// names), and a peer must not make the proxy allocate at will.
const MaxPeerHeader = 2048

// Telemetry bundles what the proxies record with.
type Telemetry struct {
	Metrics *Metrics
	// Tracing is nil when no spans are made; trace headers then pass
	// through untouched.
	Tracing *Tracing
	// Access is nil when access logging is off.
	Access *AccessLog
	// Self are the proxy's own labels.
	Self Peer
	// selfHeader is Self encoded once.
	selfOnce   sync.Once
	selfHeader string
}

// SelfHeader returns the proxy's own labels in PeerHeader form.
func (t *Telemetry) SelfHeader() string {
	t.selfOnce.Do(func() { t.selfHeader = t.Self.Encode() })
	return t.selfHeader
}

// Encode renders the labels as "workload=w;namespace=n;cluster=c;locality=l",
// values query-escaped.
func (p Peer) Encode() string {
	var b strings.Builder
	add := func(k, v string) {
		if v == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(v))
	}
	add("workload", p.Workload)
	add("namespace", p.Namespace)
	add("cluster", p.Cluster)
	add("locality", p.Locality)
	return b.String()
}

// ParsePeer reads a PeerHeader value. Unknown keys are ignored; a
// malformed or oversized value yields no labels.
func ParsePeer(v string) (Peer, bool) {
	var p Peer
	if v == "" || len(v) > MaxPeerHeader {
		return p, false
	}
	for kv := range strings.SplitSeq(v, ";") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return Peer{}, false
		}
		un, err := url.QueryUnescape(val)
		if err != nil || strings.ContainsAny(un, "\r\n\x00") {
			return Peer{}, false
		}
		switch strings.TrimSpace(k) {
		case "workload":
			p.Workload = un
		case "namespace":
			p.Namespace = un
		case "cluster":
			p.Cluster = un
		case "locality":
			p.Locality = un
		}
	}
	return p, true
}

// PeerFromSPIFFE fills workload labels from a SPIFFE ID of the form
// spiffe://TD/ns/NS/sa/SA: namespace NS, workload SA (the service account
// stands for the workload when nothing better is known).
func PeerFromSPIFFE(id string) Peer {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return Peer{}
	}
	// Segments after the trust domain pair up as key/value; SplitSeq
	// walks them without a slice, as this runs per request.
	var p Peer
	var key string
	i := 0
	for seg := range strings.SplitSeq(rest, "/") {
		switch {
		case i == 0: // the trust domain
		case i%2 == 1:
			key = seg
		case key == "ns":
			p.Namespace = seg
		case key == "sa":
			p.Workload = seg
		}
		i++
	}
	return p
}
