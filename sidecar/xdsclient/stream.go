package xdsclient

import (
	"context"
	"maps"
	"slices"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// runSotW serves one state-of-the-world stream until it fails. delivered
// says whether the server answered at all (the backoff then resets).
func (c *Client) runSotW(ctx context.Context, ads discovery.AggregatedDiscoveryServiceClient) (delivered bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return false, err
	}
	type sub struct {
		sent           bool
		names          []string
		version, nonce string
	}
	subs := map[string]*sub{}
	first := true
	send := func(req *discovery.DiscoveryRequest) error {
		if first {
			req.Node, first = c.cfg.Node, false
		}
		return st.Send(req)
	}
	// A new stream starts without versions: the server may have
	// restarted, and only a full answer proves what it has now.
	for _, t := range c.cfg.Wildcard {
		subs[t] = &sub{sent: true}
		if err := send(&discovery.DiscoveryRequest{TypeUrl: t}); err != nil {
			return false, err
		}
	}
	resubscribe := func() (map[string][]string, error) {
		named := c.namedSubscriptions()
		for _, t := range sortedKeys(named) {
			names := named[t]
			s := subs[t]
			if s == nil {
				s = &sub{}
				subs[t] = s
			}
			if (s.sent && slices.Equal(s.names, names)) || (!s.sent && len(names) == 0) {
				continue
			}
			s.sent, s.names = true, names
			c.dropUnsubscribed(t, names)
			if err := send(&discovery.DiscoveryRequest{TypeUrl: t, ResourceNames: names, VersionInfo: s.version, ResponseNonce: s.nonce}); err != nil {
				return nil, err
			}
		}
		return named, nil
	}
	if _, err := resubscribe(); err != nil {
		return false, err
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return delivered, err
		}
		if !delivered {
			delivered = true
			c.noteConnected(ProtocolSotW)
		}
		t := resp.GetTypeUrl()
		s := subs[t]
		if s == nil {
			c.log.Warn("xdsclient: ignoring a response of a type never asked for", "type", t)
			continue
		}
		d := c.decode(t, resp.GetResources(), nil, nil)
		if len(d.errs) > 0 {
			detail := nackDetail(d.errs)
			s.nonce = resp.GetNonce()
			c.noteNack(t, detail)
			if err := send(&discovery.DiscoveryRequest{TypeUrl: t, VersionInfo: s.version, ResponseNonce: s.nonce, ResourceNames: s.names, ErrorDetail: detail}); err != nil {
				return delivered, err
			}
			continue
		}
		next := d.entries
		if !slices.Contains(c.cfg.Wildcard, t) {
			// Named types: a response carries some of the subscribed
			// resources; the others stay as they were.
			next = maps.Clone(c.State().types[t])
			if next == nil {
				next = map[string]Entry{}
			}
			for n, e := range d.entries {
				if _, ok := slices.BinarySearch(s.names, n); ok {
					next[n] = e
				}
			}
		}
		for n, e := range next {
			if e.Version == "" {
				e.Version = resp.GetVersionInfo()
				next[n] = e
			}
		}
		c.commit(c.State().with(t, next), t, true)
		s.version, s.nonce = resp.GetVersionInfo(), resp.GetNonce()
		c.noteAck(t)
		if err := send(&discovery.DiscoveryRequest{TypeUrl: t, VersionInfo: s.version, ResponseNonce: s.nonce, ResourceNames: s.names}); err != nil {
			return delivered, err
		}
		named, err := resubscribe()
		if err != nil {
			return delivered, err
		}
		c.checkSynced(named)
	}
}

// runDelta serves one incremental stream until it fails.
func (c *Client) runDelta(ctx context.Context, ads discovery.AggregatedDiscoveryServiceClient) (delivered bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		return false, err
	}
	first := true
	send := func(req *discovery.DeltaDiscoveryRequest) error {
		if first {
			req.Node, first = c.cfg.Node, false
		}
		return st.Send(req)
	}
	// The initial versions tell the server what this proxy still serves
	// from a previous stream, so it can say what was removed meanwhile.
	for _, t := range c.cfg.Wildcard {
		if err := send(&discovery.DeltaDiscoveryRequest{TypeUrl: t, ResourceNamesSubscribe: []string{"*"}, InitialResourceVersions: c.versions(t, nil)}); err != nil {
			return false, err
		}
	}
	subs := map[string][]string{}
	resubscribe := func() (map[string][]string, error) {
		named := c.namedSubscriptions()
		for _, t := range sortedKeys(named) {
			names := named[t]
			have, sent := subs[t]
			if !sent {
				if len(names) == 0 {
					continue
				}
				subs[t] = names
				if err := send(&discovery.DeltaDiscoveryRequest{TypeUrl: t, ResourceNamesSubscribe: names, InitialResourceVersions: c.versions(t, names)}); err != nil {
					return nil, err
				}
				continue
			}
			add, del := diffSorted(have, names)
			if len(add) == 0 && len(del) == 0 {
				continue
			}
			subs[t] = names
			c.dropUnsubscribed(t, names)
			if err := send(&discovery.DeltaDiscoveryRequest{TypeUrl: t, ResourceNamesSubscribe: add, ResourceNamesUnsubscribe: del}); err != nil {
				return nil, err
			}
		}
		return named, nil
	}
	if _, err := resubscribe(); err != nil {
		return false, err
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return delivered, err
		}
		if !delivered {
			delivered = true
			c.noteConnected(ProtocolDelta)
		}
		t := resp.GetTypeUrl()
		wild := slices.Contains(c.cfg.Wildcard, t)
		if _, named := subs[t]; !wild && !named {
			c.log.Warn("xdsclient: ignoring a response of a type never asked for", "type", t)
			continue
		}
		var items []*anypb.Any
		var names, versions []string
		for _, r := range resp.GetResources() {
			if r.GetResource() == nil {
				continue // a TTL heartbeat: the resource stays as it is
			}
			items = append(items, r.GetResource())
			names = append(names, r.GetName())
			versions = append(versions, r.GetVersion())
		}
		d := c.decode(t, items, names, versions)
		if len(d.errs) > 0 {
			detail := nackDetail(d.errs)
			c.noteNack(t, detail)
			if err := send(&discovery.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce(), ErrorDetail: detail}); err != nil {
				return delivered, err
			}
			continue
		}
		next := maps.Clone(c.State().types[t])
		if next == nil {
			next = map[string]Entry{}
		}
		for n, e := range d.entries {
			if wild {
				next[n] = e
			} else if _, ok := slices.BinarySearch(subs[t], n); ok {
				next[n] = e
			}
		}
		for _, n := range resp.GetRemovedResources() {
			delete(next, n)
		}
		c.commit(c.State().with(t, next), t, true)
		c.noteAck(t)
		if err := send(&discovery.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce()}); err != nil {
			return delivered, err
		}
		named, err := resubscribe()
		if err != nil {
			return delivered, err
		}
		c.checkSynced(named)
	}
}

// versions returns the versions of a type's accepted resources (only of
// names, when given), for a delta stream's first request.
func (c *Client) versions(typeURL string, names []string) map[string]string {
	out := map[string]string{}
	for n, e := range c.State().types[typeURL] {
		if e.Version == "" {
			continue
		}
		if names != nil {
			if _, ok := slices.BinarySearch(names, n); !ok {
				continue
			}
		}
		out[n] = e.Version
	}
	return out
}

// dropUnsubscribed forgets resources of a named type nothing references
// any more.
func (c *Client) dropUnsubscribed(typeURL string, names []string) {
	old := c.State().types[typeURL]
	next := make(map[string]Entry, len(old))
	for n, e := range old {
		if _, ok := slices.BinarySearch(names, n); ok {
			next[n] = e
		}
	}
	if len(next) != len(old) {
		c.commit(c.State().with(typeURL, next), typeURL, false)
	}
}

// diffSorted returns what b adds to a and what it drops from it.
func diffSorted(a, b []string) (add, del []string) {
	for _, n := range b {
		if _, ok := slices.BinarySearch(a, n); !ok {
			add = append(add, n)
		}
	}
	for _, n := range a {
		if _, ok := slices.BinarySearch(b, n); !ok {
			del = append(del, n)
		}
	}
	return add, del
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
