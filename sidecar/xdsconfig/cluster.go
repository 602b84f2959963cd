package xdsconfig

//lint:file-ignore SA1019 Envoy still accepts these deprecated fields, so the proxy decodes them too.

import (
	"errors"
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	leastrequest "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	random "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/random/v3"
	roundrobin "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	wrrlocality "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/wrr_locality/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
)

// ClusterType is how a cluster finds its endpoints.
type ClusterType uint8

// Cluster types.
const (
	ClusterEDS ClusterType = iota
	ClusterStatic
	ClusterStrictDNS
	ClusterLogicalDNS
	ClusterOriginalDst
)

// LBPolicy is how a cluster picks an endpoint inside a locality.
type LBPolicy uint8

// Load-balancing policies.
const (
	LBRoundRobin LBPolicy = iota
	LBLeastRequest
	LBRandom
)

// UpstreamProtocol is the HTTP version spoken to endpoints.
type UpstreamProtocol uint8

// Upstream protocols.
const (
	UpstreamHTTP1 UpstreamProtocol = iota
	UpstreamHTTP2
	// UpstreamDownstream speaks what the client spoke.
	UpstreamDownstream
)

// Cluster is a compiled Cluster.
type Cluster struct {
	Name string
	Type ClusterType
	// EDSName names the load assignment of an EDS cluster.
	EDSName string
	// Static holds the endpoints of STATIC and DNS clusters.
	Static *Endpoints
	LB     LBPolicy
	// ChoiceCount is least request's number of candidates (default 2).
	ChoiceCount int
	// LocalityWeighted picks a locality by weight first (Envoy's
	// locality_weighted_lb_config).
	LocalityWeighted bool
	// PanicThreshold in percent (default 50); 0 disables panic mode.
	PanicThreshold uint32
	ConnectTimeout time.Duration
	Breakers       Breakers
	// Outlier is nil when outlier detection is off.
	Outlier  *Outlier
	TLS      *UpstreamTLS
	Protocol UpstreamProtocol
	// MaxRequestsPerConnection (0: unlimited) and IdleTimeout of upstream
	// connections (default 1h).
	MaxRequestsPerConnection uint32
	IdleTimeout              time.Duration
	// DNSRefresh is how often DNS clusters (and DNS-named endpoints)
	// are re-resolved (default 5s).
	DNSRefresh time.Duration
}

// References implements xdsclient.Resource.
func (c *Cluster) References(fn func(typeURL, name string)) {
	if c.Type == ClusterEDS {
		fn(xdsclient.EndpointType, c.EDSName)
	}
	if c.TLS != nil {
		c.TLS.references(fn)
	}
}

// Breakers are a cluster's circuit-breaker thresholds (Envoy's DEFAULT
// priority).
type Breakers struct {
	MaxConnections, MaxPending, MaxRequests, MaxRetries uint32
	// Budget, when set, replaces MaxRetries: active retries may be
	// BudgetPercent of active requests, and at least BudgetMinConcurrency.
	Budget               bool
	BudgetPercent        float64
	BudgetMinConcurrency uint32
}

// DefaultBreakers are Envoy's.
var DefaultBreakers = Breakers{MaxConnections: 1024, MaxPending: 1024, MaxRequests: 1024, MaxRetries: 3}

// Outlier is a compiled OutlierDetection, with Envoy's defaults.
type Outlier struct {
	Consecutive5xx, Enforcing5xx         uint32
	ConsecutiveGateway, EnforcingGateway uint32
	// SplitLocalOrigin counts connect failures and resets apart from
	// HTTP errors (ConsecutiveLocalOrigin); otherwise they count as 503s.
	SplitLocalOrigin                             bool
	ConsecutiveLocalOrigin, EnforcingLocalOrigin uint32
	Interval, BaseEjection, MaxEjection          time.Duration
	MaxEjectionPercent                           uint32
	AlwaysEjectOne                               bool
}

func cluster(c *clusterv3.Cluster) (*Cluster, error) {
	out := &Cluster{
		Name:                     c.GetName(),
		ConnectTimeout:           duration(c.GetConnectTimeout(), 5*time.Second),
		PanicThreshold:           50,
		Breakers:                 DefaultBreakers,
		ChoiceCount:              2,
		DNSRefresh:               duration(c.GetDnsRefreshRate(), 5*time.Second),
		IdleTimeout:              time.Hour,
		MaxRequestsPerConnection: c.GetMaxRequestsPerConnection().GetValue(),
	}
	if c.GetClusterType() != nil {
		return nil, fmt.Errorf("custom cluster type %q is not supported", c.GetClusterType().GetName())
	}
	if len(c.GetTransportSocketMatches()) > 0 || c.GetTransportSocketMatcher() != nil {
		return nil, errors.New("transport_socket_matches are not supported: set transport_socket")
	}
	if c.GetLbSubsetConfig() != nil {
		return nil, errors.New("lb_subset_config is not supported: subsets are separate clusters")
	}
	if len(c.GetHealthChecks()) > 0 {
		return nil, errors.New("active health checks are not supported: health comes from EDS and outlier detection")
	}
	if len(c.GetFilters()) > 0 {
		return nil, errors.New("upstream network filters are not supported")
	}
	switch c.GetType() {
	case clusterv3.Cluster_EDS:
		out.Type = ClusterEDS
		out.EDSName = c.GetEdsClusterConfig().GetServiceName()
		if out.EDSName == "" {
			out.EDSName = out.Name
		}
		if src := c.GetEdsClusterConfig().GetEdsConfig(); src != nil && src.GetAds() == nil {
			return nil, errors.New("eds_cluster_config.eds_config must be ads: meridian-proxy keeps one stream")
		}
	case clusterv3.Cluster_STATIC:
		out.Type = ClusterStatic
	case clusterv3.Cluster_STRICT_DNS:
		out.Type = ClusterStrictDNS
	case clusterv3.Cluster_LOGICAL_DNS:
		out.Type = ClusterLogicalDNS
	case clusterv3.Cluster_ORIGINAL_DST:
		out.Type = ClusterOriginalDst
	default:
		return nil, fmt.Errorf("cluster type %s is not supported", c.GetType())
	}
	if out.Type != ClusterEDS && out.Type != ClusterOriginalDst {
		e, err := loadAssignment(c.GetLoadAssignment(), out.Type == ClusterStatic)
		if err != nil {
			return nil, fieldErr("load_assignment", err)
		}
		out.Static = e
	}
	if err := lbPolicy(c, out); err != nil {
		return nil, err
	}
	if cl := c.GetCommonLbConfig(); cl != nil {
		if cl.GetLocalityWeightedLbConfig() != nil {
			out.LocalityWeighted = true
		}
		if cl.GetHealthyPanicThreshold() != nil {
			out.PanicThreshold = uint32(cl.GetHealthyPanicThreshold().GetValue())
		}
	}
	for _, t := range c.GetCircuitBreakers().GetThresholds() {
		if t.GetPriority() != core.RoutingPriority_DEFAULT {
			continue // meridian-proxy routes everything at the default priority
		}
		b := &out.Breakers
		setU32(&b.MaxConnections, t.GetMaxConnections().GetValue(), t.GetMaxConnections() != nil)
		setU32(&b.MaxPending, t.GetMaxPendingRequests().GetValue(), t.GetMaxPendingRequests() != nil)
		setU32(&b.MaxRequests, t.GetMaxRequests().GetValue(), t.GetMaxRequests() != nil)
		setU32(&b.MaxRetries, t.GetMaxRetries().GetValue(), t.GetMaxRetries() != nil)
		if rb := t.GetRetryBudget(); rb != nil {
			b.Budget = true
			b.BudgetPercent = 20
			if rb.GetBudgetPercent() != nil {
				b.BudgetPercent = rb.GetBudgetPercent().GetValue()
			}
			b.BudgetMinConcurrency = 3
			if rb.GetMinRetryConcurrency() != nil {
				b.BudgetMinConcurrency = rb.GetMinRetryConcurrency().GetValue()
			}
		}
	}
	if od := c.GetOutlierDetection(); od != nil {
		out.Outlier = outlier(od)
	}
	if ts := c.GetTransportSocket(); ts != nil {
		t, err := upstreamTLS(ts)
		if err != nil {
			return nil, fieldErr("transport_socket", err)
		}
		out.TLS = t
	}
	if c.GetHttp2ProtocolOptions() != nil {
		out.Protocol = UpstreamHTTP2
	}
	if t := c.GetCommonHttpProtocolOptions().GetIdleTimeout(); t != nil {
		out.IdleTimeout = t.AsDuration()
	}
	if a, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; ok {
		var po upstreamhttp.HttpProtocolOptions
		if err := unmarshalTyped(a, &po); err != nil {
			return nil, fieldErr("typed_extension_protocol_options", err)
		}
		switch {
		case po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil:
			out.Protocol = UpstreamHTTP2
		case po.GetExplicitHttpConfig().GetHttp3ProtocolOptions() != nil:
			return nil, errors.New("HTTP/3 upstreams are not supported")
		case po.GetUseDownstreamProtocolConfig() != nil, po.GetAutoConfig() != nil:
			out.Protocol = UpstreamDownstream
		}
		if t := po.GetCommonHttpProtocolOptions().GetIdleTimeout(); t != nil {
			out.IdleTimeout = t.AsDuration()
		}
		if n := po.GetCommonHttpProtocolOptions().GetMaxRequestsPerConnection(); n != nil {
			out.MaxRequestsPerConnection = n.GetValue()
		}
	}
	return out, nil
}

func setU32(dst *uint32, v uint32, set bool) {
	if set {
		*dst = v
	}
}

func lbPolicy(c *clusterv3.Cluster, out *Cluster) error {
	if p := c.GetLoadBalancingPolicy(); p != nil {
		// The newer field wins, as in Envoy: the first policy the proxy
		// knows is used.
		for _, pol := range p.GetPolicies() {
			ok, err := typedPolicy(pol.GetTypedExtensionConfig().GetTypedConfig(), out)
			if err != nil {
				return fieldErr("load_balancing_policy", err)
			}
			if ok {
				return nil
			}
		}
		return errors.New("load_balancing_policy: no policy meridian-proxy supports (round_robin, least_request, random, wrr_locality)")
	}
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		out.LB = LBRoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		out.LB = LBLeastRequest
		if n := c.GetLeastRequestLbConfig().GetChoiceCount(); n != nil {
			out.ChoiceCount = int(n.GetValue())
		}
	case clusterv3.Cluster_RANDOM:
		out.LB = LBRandom
	case clusterv3.Cluster_CLUSTER_PROVIDED:
		if out.Type != ClusterOriginalDst {
			return errors.New("lb_policy CLUSTER_PROVIDED needs an ORIGINAL_DST cluster")
		}
	default:
		return fmt.Errorf("lb_policy %s is not supported", c.GetLbPolicy())
	}
	return nil
}

// typedPolicy applies one load_balancing_policy entry; ok is false for
// policies the proxy does not know (the next one is then tried).
func typedPolicy(a *anypb.Any, out *Cluster) (ok bool, err error) {
	switch {
	case a == nil:
		return false, nil
	case a.MessageIs(&roundrobin.RoundRobin{}):
		out.LB = LBRoundRobin
	case a.MessageIs(&leastrequest.LeastRequest{}):
		var lr leastrequest.LeastRequest
		if err := unmarshalTyped(a, &lr); err != nil {
			return false, err
		}
		out.LB = LBLeastRequest
		if n := lr.GetChoiceCount(); n != nil {
			out.ChoiceCount = int(n.GetValue())
		}
	case a.MessageIs(&random.Random{}):
		out.LB = LBRandom
	case a.MessageIs(&wrrlocality.WrrLocality{}):
		var w wrrlocality.WrrLocality
		if err := unmarshalTyped(a, &w); err != nil {
			return false, err
		}
		out.LocalityWeighted = true
		for _, pol := range w.GetEndpointPickingPolicy().GetPolicies() {
			if ok, err := typedPolicy(pol.GetTypedExtensionConfig().GetTypedConfig(), out); ok || err != nil {
				return ok, err
			}
		}
		return false, errors.New("wrr_locality: no endpoint picking policy meridian-proxy supports")
	default:
		return false, nil
	}
	return true, nil
}

func outlier(od *clusterv3.OutlierDetection) *Outlier {
	u32 := func(v interface{ GetValue() uint32 }, isSet bool, def uint32) uint32 {
		if !isSet {
			return def
		}
		return v.GetValue()
	}
	return &Outlier{
		Consecutive5xx:         u32(od.GetConsecutive_5Xx(), od.GetConsecutive_5Xx() != nil, 5),
		Enforcing5xx:           u32(od.GetEnforcingConsecutive_5Xx(), od.GetEnforcingConsecutive_5Xx() != nil, 100),
		ConsecutiveGateway:     u32(od.GetConsecutiveGatewayFailure(), od.GetConsecutiveGatewayFailure() != nil, 5),
		EnforcingGateway:       u32(od.GetEnforcingConsecutiveGatewayFailure(), od.GetEnforcingConsecutiveGatewayFailure() != nil, 0),
		SplitLocalOrigin:       od.GetSplitExternalLocalOriginErrors(),
		ConsecutiveLocalOrigin: u32(od.GetConsecutiveLocalOriginFailure(), od.GetConsecutiveLocalOriginFailure() != nil, 5),
		EnforcingLocalOrigin:   u32(od.GetEnforcingConsecutiveLocalOriginFailure(), od.GetEnforcingConsecutiveLocalOriginFailure() != nil, 100),
		Interval:               duration(od.GetInterval(), 10*time.Second),
		BaseEjection:           duration(od.GetBaseEjectionTime(), 30*time.Second),
		MaxEjection:            duration(od.GetMaxEjectionTime(), 300*time.Second),
		MaxEjectionPercent:     min(100, u32(od.GetMaxEjectionPercent(), od.GetMaxEjectionPercent() != nil, 10)),
		AlwaysEjectOne:         od.GetAlwaysEjectOneHost().GetValue(),
	}
}
