package main

import (
	"context"
	"fmt"
	"slices"
	"sync"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/meridian-mesh/meridian/xds/translate"
)

// runClients runs n Envoy-like state-of-the-world ADS clients against addr,
// each on its own connection, until ctx ends: clusters and listeners by
// wildcard, then the load assignments of every cluster and the routes of
// every listener, ACKing every response.
func runClients(ctx context.Context, addr string, n int, delta bool) error {
	run := runClient
	if delta {
		run = runDeltaClient
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := run(ctx, addr, i); err != nil && ctx.Err() == nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
}

func runClient(ctx context.Context, addr string, i int) error {
	conn, err := dial(addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	send := func(r *discovery.DiscoveryRequest) error { return st.Send(r) }
	if err := send(&discovery.DiscoveryRequest{Node: nodeOf(i), TypeUrl: translate.ClusterType}); err != nil {
		return err
	}
	if err := send(&discovery.DiscoveryRequest{TypeUrl: translate.ListenerType}); err != nil {
		return err
	}
	subscribed := map[string][]string{}
	last := map[string]*discovery.DiscoveryResponse{}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		typ := resp.GetTypeUrl()
		last[typ] = resp
		var follow string // the type whose names this response decides
		var names []string
		switch typ {
		case translate.ClusterType:
			follow = translate.EndpointType
			for _, a := range resp.GetResources() {
				if name, eds := edsCluster(a.GetValue()); eds {
					names = append(names, name)
				}
			}
		case translate.ListenerType:
			follow = translate.RouteType
			for _, a := range resp.GetResources() {
				names = append(names, routeNames(a.GetValue())...)
			}
		}
		if err := send(&discovery.DiscoveryRequest{TypeUrl: typ, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(), ResourceNames: subscribed[typ]}); err != nil {
			return err
		}
		if follow == "" {
			continue
		}
		slices.Sort(names)
		names = slices.Compact(names)
		if !slices.Equal(names, subscribed[follow]) {
			subscribed[follow] = names
			// A new subscription for the dependent type, as Envoy sends it:
			// with the version and nonce it last got of that type, or the
			// server takes it for a stale request.
			req := &discovery.DiscoveryRequest{TypeUrl: follow, ResourceNames: names}
			if l := last[follow]; l != nil {
				req.VersionInfo, req.ResponseNonce = l.GetVersionInfo(), l.GetNonce()
			}
			if err := send(req); err != nil {
				return err
			}
		}
	}
}

// runDeltaClient is the same client speaking incremental xDS: wildcard
// clusters and listeners, then subscriptions to the load assignments and
// routes they name, changed as they change.
func runDeltaClient(ctx context.Context, addr string, i int) error {
	conn, err := dial(addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: nodeOf(i), TypeUrl: translate.ClusterType, ResourceNamesSubscribe: []string{"*"}}); err != nil {
		return err
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.ListenerType, ResourceNamesSubscribe: []string{"*"}}); err != nil {
		return err
	}
	// have[type][name]: resources of the wildcard types, and what each
	// names in the dependent type.
	have := map[string]map[string][]string{translate.ClusterType: {}, translate.ListenerType: {}}
	subscribed := map[string]map[string]bool{translate.EndpointType: {}, translate.RouteType: {}}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		typ := resp.GetTypeUrl()
		follow := map[string]string{translate.ClusterType: translate.EndpointType, translate.ListenerType: translate.RouteType}[typ]
		if follow != "" {
			for _, r := range resp.GetResources() {
				if typ == translate.ClusterType {
					if name, eds := edsCluster(r.GetResource().GetValue()); eds {
						have[typ][r.GetName()] = []string{name}
					} else {
						have[typ][r.GetName()] = nil
					}
				} else {
					have[typ][r.GetName()] = routeNames(r.GetResource().GetValue())
				}
			}
			for _, n := range resp.GetRemovedResources() {
				delete(have[typ], n)
			}
		}
		if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
		if follow == "" {
			continue
		}
		want := map[string]bool{}
		for _, deps := range have[typ] {
			for _, d := range deps {
				want[d] = true
			}
		}
		var sub, unsub []string
		for n := range want {
			if !subscribed[follow][n] {
				sub = append(sub, n)
			}
		}
		for n := range subscribed[follow] {
			if !want[n] {
				unsub = append(unsub, n)
			}
		}
		if len(sub)+len(unsub) > 0 {
			subscribed[follow] = want
			if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: follow, ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub}); err != nil {
				return err
			}
		}
	}
}

// edsCluster reads a Cluster's name (field 1) and whether its type (field
// 2) is EDS, without decoding the rest: Envoy asks for the load
// assignments of EDS clusters only.
func edsCluster(b []byte) (name string, eds bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return name, false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return name, false
			}
			name = string(v)
		case num == 2 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return name, false
			}
			eds = v == uint64(cluster.Cluster_EDS)
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return name, false
		}
		b = b[m:]
	}
	return name, eds
}

// routeNames returns the RDS route configurations a listener refers to.
func routeNames(b []byte) []string {
	l := &listener.Listener{}
	if proto.Unmarshal(b, l) != nil {
		return nil
	}
	var out []string
	chains := l.GetFilterChains()
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains, l.GetDefaultFilterChain())
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			h := &hcm.HttpConnectionManager{}
			if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(h) != nil {
				continue
			}
			if n := h.GetRds().GetRouteConfigName(); n != "" {
				out = append(out, n)
			}
		}
	}
	return out
}
