package server

import (
	"slices"
	"strconv"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	gcpstream "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridian-mesh/meridian/xds/translate"
)

// This file is the state-of-the-world ADS stream loop. It is
// go-control-plane's ordered ADS loop (pkg/server/sotw/v3, processADS) with
// its Subscription, Response and ConfigWatcher types, and one difference:
// a request that repeats exactly the names of the stream's previous
// request of its type keeps its subscription. Envoy repeats every name it subscribes to in
// each ACK — a thousand load assignments, a thousand names — and
// go-control-plane rebuilt the subscription's map from them on every
// request, a quarter of the server's CPU after a change reached a thousand
// sidecars.

// sotwWatch is one type's open watch on a stream.
type sotwWatch struct {
	cancel func()
	sub    gcpstream.Subscription
	// names the subscription was last set from: a request repeating them
	// exactly (Envoy's ACKs do) leaves it as it is.
	names []string
	nonce string // of the last response sent for the type
}

// legacyWildcard reports whether an empty request means "all of them": for
// listeners and clusters (Envoy's first request), never for routes,
// endpoints and secrets.
func legacyWildcard(typeURL string) bool {
	return typeURL == translate.ListenerType || typeURL == translate.ClusterType
}

// sotwStream serves one state-of-the-world ADS stream until it ends or the
// server stops. Responses are sent in the order the watches are answered;
// a queued response of a type is dropped when a newer request of that
// type is processed (the new watch answers it), as go-control-plane does.
func (s *Server) sotwStream(st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	id := s.sotwIDs.Add(1)
	watches := map[string]*sotwWatch{}
	node := &core.Node{}
	defer func() {
		for _, w := range watches {
			w.cancel()
		}
		s.OnStreamClosed(id, node)
	}()
	if err := s.OnStreamOpen(st.Context(), id, resource.AnyType); err != nil {
		return err
	}
	reqCh := make(chan *discovery.DiscoveryRequest)
	go func() {
		defer close(reqCh)
		for {
			req, err := st.Recv()
			if err != nil {
				return
			}
			select {
			case reqCh <- req:
			case <-st.Context().Done():
				return
			case <-s.stopped:
				return
			}
		}
	}()
	// One response per type can be waiting: a watch is answered at most
	// once, and a type has one watch at a time.
	respCh := make(chan cache.Response, types.UnknownType)
	var nonce int64
	send := func(res cache.Response) error {
		out, err := res.GetDiscoveryResponse()
		if err != nil {
			return err
		}
		w := watches[res.GetRequest().GetTypeUrl()]
		if w == nil {
			return status.Errorf(codes.Internal, "xds: a response for %s without a watch", res.GetRequest().GetTypeUrl())
		}
		nonce++
		out.Nonce = strconv.FormatInt(nonce, 10)
		w.sub.SetReturnedResources(res.GetReturnedResources())
		w.nonce = out.Nonce
		s.OnStreamResponse(res.GetContext(), id, res.GetRequest(), out)
		if err := st.Send(out); err != nil {
			return status.Error(codes.Unavailable, err.Error())
		}
		return nil
	}
	for {
		select {
		case <-s.stopped:
			return nil
		case res := <-respCh:
			if err := send(res); err != nil {
				return err
			}
		case req, ok := <-reqCh:
			if !ok {
				return nil
			}
			// Only the first request must carry the node.
			if req.GetNode() != nil {
				node = req.GetNode()
			} else {
				req.Node = node
			}
			if err := s.OnStreamRequest(id, req); err != nil {
				return err
			}
			typ := req.GetTypeUrl()
			w := watches[typ]
			var sub gcpstream.Subscription
			if w != nil {
				if w.nonce != "" && req.GetResponseNonce() != w.nonce {
					continue // stale: the client has not seen the last response yet
				}
				// Closed first, so that nothing answers it while the
				// subscription changes; then the other types' queued
				// responses go out and this type's, superseded, is dropped.
				w.cancel()
			drain:
				for {
					select {
					case res := <-respCh:
						if res.GetRequest().GetTypeUrl() != typ {
							if err := send(res); err != nil {
								return err
							}
						}
					default:
						break drain
					}
				}
				sub = w.sub
				if !slices.Equal(w.names, req.GetResourceNames()) {
					sub.SetResourceSubscription(req.GetResourceNames())
				}
			} else {
				sub = gcpstream.NewSotwSubscription(req.GetResourceNames(), legacyWildcard(typ))
			}
			cancel, err := s.CreateWatch(req, sub, respCh)
			if err != nil {
				return err
			}
			watches[typ] = &sotwWatch{cancel: cancel, sub: sub, names: req.GetResourceNames()}
		}
	}
}
