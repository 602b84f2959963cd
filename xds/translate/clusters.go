package translate

import (
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/registry"
)

const connectTimeout = 10 * time.Second

// httpOptionsKey is where a cluster carries its upstream HTTP options.
const httpOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// adsSource is "this same ADS stream", the config source of every dynamic
// resource Meridian refers to.
func adsSource() *core.ConfigSource {
	return &core.ConfigSource{
		ResourceApiVersion:    core.ApiVersion_V3,
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
	}
}

func buildClusters(in Input, s Scope, r *Result) {
	td := s.identity().TrustDomain()
	for _, svc := range services(in) {
		// Outlier detection is per service (the FailoverPolicy or
		// DestinationPolicy that selects it, or Meridian's default); the
		// engine decides it, whichever the client.
		od := in.Policies.eng().Assign(in.View, svc.key, locality.Client{}).OutlierDetection
		dp := in.Policies.destination(svc.key)
		var peers []spiffeid.ID
		peersFn := func() []spiffeid.ID {
			if peers == nil {
				peers = peersOf(in.View, svc.key, td)
			}
			return peers
		}
		for _, p := range svc.def.Ports {
			for _, v := range in.Policies.variantsOf(svc.key) {
				name := SubsetClusterName(p.Port, v.name(), svc.host)
				c := outboundCluster(name, p, s.Mode, dp, od, r)
				if b, ok := in.Policies.retryBudget(svc.key); ok {
					setRetryBudget(c, b)
				}
				c.TransportSocket = clientTLS(in, s, name, svc.host, peersFn, dp, r)
				r.add(name, c)
			}
		}
	}
	if s.Mode == ModeProxyless || s.Mode == ModeEastWest {
		return
	}
	// ServiceEntry hosts; grpc-go would refuse their cluster types, and an
	// east-west gateway only reaches its own cluster's endpoints.
	for _, e := range in.Policies.externalPorts() {
		if e.entry.Spec.Resolution == v1alpha1.ResolutionNone && s.Mode != ModeSidecar {
			continue // only a sidecar knows the address the client asked for
		}
		r.add(e.cluster(), externalCluster(in, s, e, r))
	}
	r.add(BlackHoleCluster, &cluster.Cluster{
		Name:                 BlackHoleCluster,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(connectTimeout),
	})
	if s.Mode != ModeSidecar {
		return
	}
	r.add(PassthroughCluster, &cluster.Cluster{
		Name:                 PassthroughCluster,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_ORIGINAL_DST},
		LbPolicy:             cluster.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(connectTimeout),
	})
	// Remote key sets of every RequestAuthentication: unused ones cost
	// nothing, and the clusters stay shared by all sidecars.
	if in.Policies != nil {
		for _, j := range in.Policies.jwks {
			r.add(j.Name, jwksCluster(j))
		}
	}
	for _, p := range splitInbound(s.Inbound) {
		name := InboundClusterName(p.port)
		c := &cluster.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(connectTimeout),
			LoadAssignment: &endpoint.ClusterLoadAssignment{
				ClusterName: name,
				Endpoints: []*endpoint.LocalityLbEndpoints{{LbEndpoints: []*endpoint.LbEndpoint{{
					HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: socketAddress("127.0.0.1", p.port)}},
				}}}},
			},
		}
		if opts := httpOptions(p.proto, 0); opts != nil {
			c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpOptionsKey: mustAny(opts)}
		}
		r.add(name, c)
	}
}

// outboundCluster is an EDS cluster over ADS. ROUND_ROBIN plus the
// locality-weighted config makes Envoy honour locality weights, and grpc-go
// maps ROUND_ROBIN to wrr_locality over round_robin, which honours them too.
// A DestinationPolicy sets the load balancer, circuit breakers and connect
// timeout; the engine's outlier detection is always set.
func outboundCluster(name string, p registry.ServicePort, mode Mode, dp *v1alpha1.DestinationPolicy, od v1alpha1.OutlierDetection, r *Result) *cluster.Cluster {
	c := &cluster.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig:     &cluster.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name},
		LbPolicy:             cluster.Cluster_ROUND_ROBIN,
		ConnectTimeout:       durationpb.New(connectTimeout),
		CommonLbConfig: &cluster.Cluster_CommonLbConfig{
			LocalityConfigSpecifier: &cluster.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
				LocalityWeightedLbConfig: &cluster.Cluster_CommonLbConfig_LocalityWeightedLbConfig{},
			},
		},
		OutlierDetection: outlierDetection(od),
	}
	var maxPerConn uint32
	if dp != nil {
		spec := dp.Spec
		if lb := spec.LoadBalancer; lb != nil {
			switch lb.Policy {
			case v1alpha1.LBLeastRequest:
				c.LbPolicy = cluster.Cluster_LEAST_REQUEST
			case v1alpha1.LBRandom:
				if mode == ModeProxyless {
					r.warnf("%s: DestinationPolicy %s/%s: grpc-go has no random load balancer; proxyless clients use round-robin", name, dp.Namespace, dp.Name)
				} else {
					c.LbPolicy = cluster.Cluster_RANDOM
				}
			}
			if lb.LocalityWeighted != nil && !*lb.LocalityWeighted {
				c.CommonLbConfig = nil
			}
		}
		if cp := spec.ConnectionPool; cp != nil {
			th := &cluster.CircuitBreakers_Thresholds{Priority: core.RoutingPriority_DEFAULT}
			set := false
			for _, f := range []struct {
				v   int32
				dst **wrapperspb.UInt32Value
			}{{cp.MaxConnections, &th.MaxConnections}, {cp.MaxPendingRequests, &th.MaxPendingRequests}, {cp.MaxRequests, &th.MaxRequests}, {cp.MaxRetries, &th.MaxRetries}} {
				if f.v > 0 {
					*f.dst, set = wrapperspb.UInt32(uint32(f.v)), true
				}
			}
			if set {
				c.CircuitBreakers = &cluster.CircuitBreakers{Thresholds: []*cluster.CircuitBreakers_Thresholds{th}}
			}
			if cp.ConnectTimeout != nil {
				c.ConnectTimeout = durationpb.New(cp.ConnectTimeout.Duration)
			}
			maxPerConn = uint32(max(cp.MaxRequestsPerConnection, 0))
		}
	}
	if opts := httpOptions(p.Protocol, maxPerConn); opts != nil {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpOptionsKey: mustAny(opts)}
	}
	return c
}

// setRetryBudget caps the cluster's concurrent retries at a share of its
// active requests (Policies.addBudget has filled in the minimum).
func setRetryBudget(c *cluster.Cluster, b v1alpha1.RetryBudget) {
	if c.CircuitBreakers == nil {
		c.CircuitBreakers = &cluster.CircuitBreakers{Thresholds: []*cluster.CircuitBreakers_Thresholds{{Priority: core.RoutingPriority_DEFAULT}}}
	}
	c.CircuitBreakers.Thresholds[0].RetryBudget = &cluster.CircuitBreakers_Thresholds_RetryBudget{
		BudgetPercent: &typev3.Percent{Value: b.Percent}, MinRetryConcurrency: wrapperspb.UInt32(uint32(b.MinRetryConcurrency))}
}

// httpOptions tells Envoy to speak HTTP/2 upstream to gRPC and HTTP/2
// ports, and carries a request-per-connection limit; nil when neither
// applies.
func httpOptions(proto registry.Protocol, maxPerConn uint32) *upstreamhttp.HttpProtocolOptions {
	h2 := proto == registry.ProtocolGRPC || proto == registry.ProtocolHTTP2
	if !h2 && (maxPerConn == 0 || !proto.IsHTTP()) {
		return nil
	}
	cfg := &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{
		ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &core.Http1ProtocolOptions{}},
	}
	if h2 {
		cfg.ProtocolConfig = &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &core.Http2ProtocolOptions{}}
	}
	opts := &upstreamhttp.HttpProtocolOptions{UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: cfg}}
	if maxPerConn > 0 {
		opts.CommonHttpProtocolOptions = &core.HttpProtocolOptions{MaxRequestsPerConnection: wrapperspb.UInt32(maxPerConn)}
	}
	return opts
}

// outlierDetection maps the engine's outlier detection (defaults filled
// in) to Envoy's. Success-rate ejection, on by default in Envoy and in
// grpc-go, is turned off: Meridian ejects on consecutive errors only, so
// both behave alike. grpc-go ignores the consecutive-error checks (it only
// implements success-rate and failure-percentage ejection), so proxyless
// clients rely on EDS health and reachability to leave an endpoint.
func outlierDetection(od v1alpha1.OutlierDetection) *cluster.OutlierDetection {
	od = od.WithDefaults()
	out := &cluster.OutlierDetection{
		Consecutive_5Xx:                    wrapperspb.UInt32(uint32(*od.Consecutive5xxErrors)),
		ConsecutiveGatewayFailure:          wrapperspb.UInt32(uint32(*od.ConsecutiveGatewayErrors)),
		EnforcingConsecutive_5Xx:           wrapperspb.UInt32(100),
		EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
		EnforcingSuccessRate:               wrapperspb.UInt32(0),
		Interval:                           durationpb.New(od.Interval.Duration),
		BaseEjectionTime:                   durationpb.New(od.BaseEjectionTime.Duration),
		MaxEjectionPercent:                 wrapperspb.UInt32(uint32(*od.MaxEjectionPercent)),
	}
	if *od.Consecutive5xxErrors == 0 {
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(0)
	}
	if *od.ConsecutiveGatewayErrors == 0 {
		out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(0)
	}
	return out
}
