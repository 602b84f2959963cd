package v1alpha1_test

import (
	"math"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
)

// labObjects returns fresh, valid objects of every kind, by name.
func labObjects(t *testing.T) map[string]v1alpha1.Object {
	t.Helper()
	objs, err := v1alpha1.Load(readLab(t), v1alpha1.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1alpha1.Object{}
	for _, o := range objs {
		out[o.GetName()+"/"+v1alpha1.KindOf(o)] = o
	}
	return out
}

func i32(v int32) *int32     { return &v }
func f64(v float64) *float64 { return &v }
func dur(s string) *metav1.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return &metav1.Duration{Duration: d}
}

type validationCase struct {
	name   string
	object string // key in labObjects
	mutate func(o v1alpha1.Object)
	field  string
	says   string
}

func fo(o v1alpha1.Object) *v1alpha1.FailoverPolicySpec { return &o.(*v1alpha1.FailoverPolicy).Spec }
func rr(o v1alpha1.Object) *v1alpha1.ResidencyRuleSpec  { return &o.(*v1alpha1.ResidencyRule).Spec }
func tr(o v1alpha1.Object) *v1alpha1.TrafficRouteSpec   { return &o.(*v1alpha1.TrafficRoute).Spec }
func dp(o v1alpha1.Object) *v1alpha1.DestinationPolicySpec {
	return &o.(*v1alpha1.DestinationPolicy).Spec
}
func se(o v1alpha1.Object) *v1alpha1.ServiceEntrySpec { return &o.(*v1alpha1.ServiceEntry).Spec }
func gw(o v1alpha1.Object) *v1alpha1.GatewaySpec      { return &o.(*v1alpha1.Gateway).Spec }

const (
	foObj = "shop-failover/FailoverPolicy"
	fpObj = "by-jurisdiction/FailoverPolicy"
	rrObj = "eu-only/ResidencyRule"
	trObj = "web/TrafficRoute"
	dpObj = "web/DestinationPolicy"
	seObj = "payments-api/ServiceEntry"
	gwObj = "ingress/Gateway"
)

var validationCases = []validationCase{
	// Metadata, shared by every kind.
	{"name required", rrObj, func(o v1alpha1.Object) { o.SetName("") }, "metadata.name", "Required"},
	{"name invalid", trObj, func(o v1alpha1.Object) { o.SetName("Web_Route") }, "metadata.name", "RFC 1123"},
	{"namespace required", dpObj, func(o v1alpha1.Object) { o.SetNamespace("") }, "metadata.namespace", "namespaced"},
	{"namespace invalid", seObj, func(o v1alpha1.Object) { o.SetNamespace("a.b") }, "metadata.namespace", "must not contain dots"},
	{"labels invalid", gwObj, func(o v1alpha1.Object) { o.SetLabels(map[string]string{"bad key": "v"}) }, "metadata.labels", "name part must consist"},

	// Selectors.
	{"selector service name", foObj, func(o v1alpha1.Object) { fo(o).Selector.Services[0] = "Web" }, "spec.selector.services[0]", "DNS-1035 label"},
	{"selector duplicate", foObj, func(o v1alpha1.Object) { fo(o).Selector.Services[1] = "web" }, "spec.selector.services[1]", "Duplicate"},
	{"selector bad operator", rrObj, func(o v1alpha1.Object) {
		rr(o).Selector.Labels.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}
	}, "spec.selector.labels.matchExpressions[0].operator", "not a valid selector operator"},

	// Outlier detection.
	{"5xx negative", foObj, func(o v1alpha1.Object) { fo(o).OutlierDetection.Consecutive5xxErrors = i32(-1) }, "spec.outlierDetection.consecutive5xxErrors", "negative"},
	{"gateway errors negative", foObj, func(o v1alpha1.Object) { fo(o).OutlierDetection.ConsecutiveGatewayErrors = i32(-2) }, "spec.outlierDetection.consecutiveGatewayErrors", "negative"},
	{"interval zero", foObj, func(o v1alpha1.Object) { fo(o).OutlierDetection.Interval = dur("0s") }, "spec.outlierDetection.interval", "positive duration"},
	{"ejection time negative", foObj, func(o v1alpha1.Object) { fo(o).OutlierDetection.BaseEjectionTime = dur("-1s") }, "spec.outlierDetection.baseEjectionTime", "positive duration"},
	{"max ejection over 100", foObj, func(o v1alpha1.Object) { fo(o).OutlierDetection.MaxEjectionPercent = i32(101) }, "spec.outlierDetection.maxEjectionPercent", "between 0 and 100"},

	// FailoverPolicy.
	{"empty spec", fpObj, func(o v1alpha1.Object) { fo(o).FailoverPriority = nil }, "spec", "set at least one of"},
	{"failover and priority", foObj, func(o v1alpha1.Object) { fo(o).FailoverPriority = []string{"region"} }, "spec.failoverPriority", "use one"},
	{"from required", foObj, func(o v1alpha1.Object) { fo(o).Failover[0].From = "" }, "spec.failover[0].from", "Required"},
	{"from invalid", foObj, func(o v1alpha1.Object) { fo(o).Failover[0].From = "us east" }, "spec.failover[0].from", "valid label"},
	{"from duplicate", foObj, func(o v1alpha1.Object) { fo(o).Failover[1].From = "us-east-1" }, "spec.failover[1].from", "Duplicate"},
	{"to required", foObj, func(o v1alpha1.Object) { fo(o).Failover[1].To = nil }, "spec.failover[1].to", "list the regions"},
	{"to invalid", foObj, func(o v1alpha1.Object) { fo(o).Failover[0].To[0] = "-x" }, "spec.failover[0].to[0]", "valid label"},
	{"cycle", foObj, func(o v1alpha1.Object) { fo(o).Failover[1].To = []string{"us-east-1", "onprem-east"} }, "spec.failover[1].to[1]", "cycle"},
	{"to duplicate", foObj, func(o v1alpha1.Object) { fo(o).Failover[0].To[1] = "onprem-east" }, "spec.failover[0].to[1]", "Duplicate"},
	{"priority label invalid", fpObj, func(o v1alpha1.Object) { fo(o).FailoverPriority[0] = "bad label!" }, "spec.failoverPriority[0]", "name part must consist"},
	{"priority alias duplicate", fpObj, func(o v1alpha1.Object) { fo(o).FailoverPriority[0] = "region" }, "spec.failoverPriority[1]", "Duplicate"},
	{"distribute from required", foObj, func(o v1alpha1.Object) { fo(o).Distribute[0].From = "" }, "spec.distribute[0].from", "Required"},
	{"distribute from too long", foObj, func(o v1alpha1.Object) { fo(o).Distribute[0].From = "a/b/c/d" }, "spec.distribute[0].from", "at most three parts"},
	{"distribute wildcard inside", foObj, func(o v1alpha1.Object) { fo(o).Distribute[0].From = "*/use1-az1" }, "spec.distribute[0].from", "only the last part"},
	{"distribute empty part", foObj, func(o v1alpha1.Object) { fo(o).Distribute[0].From = "us-east-1//x" }, "spec.distribute[0].from", "part 2 is empty"},
	{"distribute bad part", foObj, func(o v1alpha1.Object) { fo(o).Distribute[0].From = "us_east_1!" }, "spec.distribute[0].from", "valid label"},
	{"distribute from duplicate", foObj, func(o v1alpha1.Object) {
		fo(o).Distribute = append(fo(o).Distribute, fo(o).Distribute[0])
	}, "spec.distribute[1].from", "Duplicate"},
	{"distribute to required", foObj, func(o v1alpha1.Object) { fo(o).Distribute[0].To = nil }, "spec.distribute[0].to", "list the target"},
	{"distribute target invalid", foObj, func(o v1alpha1.Object) { fo(o).Distribute[0].To[0].Locality = "" }, "spec.distribute[0].to[0].locality", "Required"},
	{"distribute target duplicate", foObj, func(o v1alpha1.Object) { fo(o).Distribute[0].To[1].Locality = "us-east-1/use1-az1/*" }, "spec.distribute[0].to[1].locality", "Duplicate"},
	{"distribute weight zero", foObj, func(o v1alpha1.Object) { fo(o).Distribute[0].To[1].Weight = 0 }, "spec.distribute[0].to[1].weight", "between 1 and 100"},
	{"distribute weights sum", foObj, func(o v1alpha1.Object) { fo(o).Distribute[0].To[1].Weight = 30 }, "spec.distribute[0].to", "sum to 100"},

	// ResidencyRule.
	{"residency empty", rrObj, func(o v1alpha1.Object) { rr(o).AllowedRegions, rr(o).ClusterSelector = nil, nil }, "spec", "set allowedRegions, clusterSelector or both"},
	{"allowed region invalid", rrObj, func(o v1alpha1.Object) { rr(o).AllowedRegions[0] = "EU West" }, "spec.allowedRegions[0]", "valid label"},
	{"allowed region duplicate", rrObj, func(o v1alpha1.Object) { rr(o).AllowedRegions = []string{"eu-west-1", "eu-west-1"} }, "spec.allowedRegions[1]", "Duplicate"},
	{"cluster selector invalid", rrObj, func(o v1alpha1.Object) { rr(o).ClusterSelector.MatchLabels = map[string]string{"jurisdiction": "e u"} }, "spec.clusterSelector.matchLabels", "valid label"},
	{"cluster selector empty", rrObj, func(o v1alpha1.Object) { rr(o).ClusterSelector.MatchLabels = nil }, "spec.clusterSelector", "matches every cluster"},
	{"mode", rrObj, func(o v1alpha1.Object) { rr(o).Mode = "warn" }, "spec.mode", `supported values: "enforce", "audit"`},

	// TrafficRoute.
	{"hosts required", trObj, func(o v1alpha1.Object) { tr(o).Hosts = nil }, "spec.hosts", "Required"},
	{"host invalid", trObj, func(o v1alpha1.Object) { tr(o).Hosts[0] = "web_1" }, "spec.hosts[0]", "RFC 1123"},
	{"host duplicate", trObj, func(o v1alpha1.Object) { tr(o).Hosts = []string{"web", "web"} }, "spec.hosts[1]", "Duplicate"},
	{"gateway invalid", trObj, func(o v1alpha1.Object) { tr(o).Gateways = []string{"Ingress!"} }, "spec.gateways[0]", "RFC 1123"},
	{"gateway duplicate", trObj, func(o v1alpha1.Object) { tr(o).Gateways = []string{"mesh", "mesh"} }, "spec.gateways[1]", "Duplicate"},
	{"no routes", trObj, func(o v1alpha1.Object) { tr(o).HTTP = nil }, "spec", "set http or tcp"},
	{"route name duplicate", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Name = "canary" }, "spec.http[1].name", "Duplicate"},
	{"route name invalid", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Name = "Default Route" }, "spec.http[1].name", "RFC 1123"},
	{"path match empty", trObj, func(o v1alpha1.Object) { tr(o).HTTP[0].Match[1].Path.Prefix = "" }, "spec.http[0].match[1].path", "exactly one of"},
	{"path match two", trObj, func(o v1alpha1.Object) { tr(o).HTTP[0].Match[1].Path.Exact = "/x" }, "spec.http[0].match[1].path", "exactly one of"},
	{"path relative", trObj, func(o v1alpha1.Object) { tr(o).HTTP[0].Match[1].Path.Prefix = "beta/" }, "spec.http[0].match[1].path.prefix", "starts with /"},
	{"regex invalid", trObj, func(o v1alpha1.Object) { *tr(o).HTTP[0].Match[1].Path = v1alpha1.StringMatch{Regex: "/(a"} }, "spec.http[0].match[1].path.regex", "missing closing )"},
	{"method lower case", trObj, func(o v1alpha1.Object) { tr(o).HTTP[0].Match[1].Method = "get" }, "spec.http[0].match[1].method", "upper-case"},
	{"header name required", trObj, func(o v1alpha1.Object) { tr(o).HTTP[0].Match[0].Headers[0].Name = "" }, "spec.http[0].match[0].headers[0].name", "Required"},
	{"header name invalid", trObj, func(o v1alpha1.Object) { tr(o).HTTP[0].Match[0].Headers[0].Name = "x canary" }, "spec.http[0].match[0].headers[0].name", "valid HTTP header"},
	{"header match empty", trObj, func(o v1alpha1.Object) { tr(o).HTTP[0].Match[0].Headers[0].Exact = "" }, "spec.http[0].match[0].headers[0]", "exactly one of"},
	{"route required", trObj, func(o v1alpha1.Object) { tr(o).HTTP[0].Route = nil }, "spec.http[0].route", "at least one destination"},
	{"destination host required", trObj, func(o v1alpha1.Object) { tr(o).HTTP[0].Route[0].Host = "" }, "spec.http[0].route[0].host", "Required"},
	{"destination wildcard", trObj, func(o v1alpha1.Object) { tr(o).HTTP[0].Route[0].Host = "*.example.com" }, "spec.http[0].route[0].host", "not a wildcard"},
	{"destination port", trObj, func(o v1alpha1.Object) { tr(o).HTTP[0].Route[0].Port = 70000 }, "spec.http[0].route[0].port", "between 1 and 65535"},
	{"destination subset", trObj, func(o v1alpha1.Object) { tr(o).HTTP[0].Route[0].Subset = "V2" }, "spec.http[0].route[0].subset", "RFC 1123"},
	{"destination cluster", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Route[1].Cluster = "eks.euw1" }, "spec.http[1].route[1].cluster", "must not contain dots"},
	{"destination duplicate", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Route[1].Destination = tr(o).HTTP[1].Route[0].Destination }, "spec.http[1].route[1]", "Duplicate"},
	{"weight negative", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Route[1].Weight = -10 }, "spec.http[1].route[1].weight", "between 0 and 100"},
	{"weights sum", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Route[1].Weight = 20 }, "spec.http[1].route", "sum to 100"},
	{"single weight partial", trObj, func(o v1alpha1.Object) { tr(o).HTTP[0].Route[0].Weight = 50 }, "spec.http[0].route", "sum to 100"},
	{"mirror percent", trObj, func(o v1alpha1.Object) { tr(o).HTTP[0].Mirror.Percent = f64(150) }, "spec.http[0].mirror.percent", "between 0 and 100"},
	{"mirror percent NaN", trObj, func(o v1alpha1.Object) { tr(o).HTTP[0].Mirror.Percent = f64(math.NaN()) }, "spec.http[0].mirror.percent", "between 0 and 100"},
	{"mirror host", trObj, func(o v1alpha1.Object) { tr(o).HTTP[0].Mirror.Host = "" }, "spec.http[0].mirror.host", "Required"},
	{"fault empty", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Fault = &v1alpha1.Fault{} }, "spec.http[1].fault", "abort, delay or both"},
	{"abort status", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Fault.Abort.Status = 99 }, "spec.http[1].fault.abort.status", "between 200 and 599"},
	{"abort percent zero", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Fault.Abort.Percent = 0 }, "spec.http[1].fault.abort.percent", "does nothing"},
	{"delay percent over", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Fault.Delay.Percent = 101 }, "spec.http[1].fault.delay.percent", "between 0 and 100"},
	{"delay zero", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Fault.Delay.Delay = metav1.Duration{} }, "spec.http[1].fault.delay.delay", "positive duration"},
	{"attempts negative", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Retries.Attempts = -1 }, "spec.http[1].retries.attempts", "negative"},
	{"per-try timeout zero", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Retries.PerTryTimeout = dur("0s") }, "spec.http[1].retries.perTryTimeout", "positive duration"},
	{"per-try beyond timeout", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Retries.PerTryTimeout = dur("3s") }, "spec.http[1].retries.perTryTimeout", "no retry could ever run"},
	{"retry on unknown", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Retries.RetryOn[0] = "500" }, "spec.http[1].retries.retryOn[0]", "Unsupported value"},
	{"retry on duplicate", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Retries.RetryOn[1] = "5xx" }, "spec.http[1].retries.retryOn[1]", "Duplicate"},
	{"budget percent", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Retries.Budget.Percent = -1 }, "spec.http[1].retries.budget.percent", "between 0 and 100"},
	{"budget concurrency", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Retries.Budget.MinRetryConcurrency = -1 }, "spec.http[1].retries.budget.minRetryConcurrency", "negative"},
	{"timeout zero", trObj, func(o v1alpha1.Object) { tr(o).HTTP[1].Timeout = dur("0s") }, "spec.http[1].timeout", "positive duration"},
	{"tcp port", trObj, func(o v1alpha1.Object) {
		tr(o).TCP = []v1alpha1.TCPRoute{{Match: []v1alpha1.TCPMatch{{Port: 0x10000}}, Route: []v1alpha1.RouteDestination{{Destination: v1alpha1.Destination{Host: "db"}}}}}
	}, "spec.tcp[0].match[0].port", "between 1 and 65535"},
	{"tcp sni", trObj, func(o v1alpha1.Object) {
		tr(o).TCP = []v1alpha1.TCPRoute{{Match: []v1alpha1.TCPMatch{{SNIHosts: []string{"*"}}}, Route: []v1alpha1.RouteDestination{{Destination: v1alpha1.Destination{Host: "db"}}}}}
	}, "spec.tcp[0].match[0].sniHosts[0]", "bare *"},
	{"tcp route required", trObj, func(o v1alpha1.Object) { tr(o).TCP = []v1alpha1.TCPRoute{{}} }, "spec.tcp[0].route", "at least one destination"},

	// DestinationPolicy.
	{"host required", dpObj, func(o v1alpha1.Object) { dp(o).Host = "" }, "spec.host", "Required"},
	{"lb policy", dpObj, func(o v1alpha1.Object) { dp(o).LoadBalancer.Policy = "ring-hash" }, "spec.loadBalancer.policy", "Unsupported value"},
	{"pool negative", dpObj, func(o v1alpha1.Object) { dp(o).ConnectionPool.MaxPendingRequests = -5 }, "spec.connectionPool.maxPendingRequests", "negative"},
	{"connect timeout", dpObj, func(o v1alpha1.Object) { dp(o).ConnectionPool.ConnectTimeout = dur("-1s") }, "spec.connectionPool.connectTimeout", "positive duration"},
	{"destination outlier", dpObj, func(o v1alpha1.Object) {
		dp(o).OutlierDetection = &v1alpha1.OutlierDetection{MaxEjectionPercent: i32(-1)}
	}, "spec.outlierDetection.maxEjectionPercent", "between 0 and 100"},
	{"tls mode required", dpObj, func(o v1alpha1.Object) { dp(o).TLS.Mode = "" }, "spec.tls.mode", "want one of"},
	{"tls mode unknown", dpObj, func(o v1alpha1.Object) { dp(o).TLS.Mode = "strict" }, "spec.tls.mode", "Unsupported value"},
	{"tls disable with sni", dpObj, func(o v1alpha1.Object) { *dp(o).TLS = v1alpha1.ClientTLS{Mode: "disable", SNI: "web"} }, "spec.tls", "takes no sni"},
	{"tls mutual without cert", dpObj, func(o v1alpha1.Object) { dp(o).TLS.Mode = "mutual" }, "spec.tls.credentialName", "client certificate"},
	{"tls mesh with cert", dpObj, func(o v1alpha1.Object) { dp(o).TLS.CredentialName = "cert" }, "spec.tls.credentialName", "SPIFFE"},
	{"tls sni invalid", dpObj, func(o v1alpha1.Object) { *dp(o).TLS = v1alpha1.ClientTLS{Mode: "simple", SNI: "a b"} }, "spec.tls.sni", "RFC 1123"},
	{"tls credential invalid", dpObj, func(o v1alpha1.Object) { *dp(o).TLS = v1alpha1.ClientTLS{Mode: "mutual", CredentialName: "Cert!"} }, "spec.tls.credentialName", "RFC 1123"},
	{"subset name required", dpObj, func(o v1alpha1.Object) { dp(o).Subsets[0].Name = "" }, "spec.subsets[0].name", "Required"},
	{"subset name invalid", dpObj, func(o v1alpha1.Object) { dp(o).Subsets[0].Name = "V1" }, "spec.subsets[0].name", "RFC 1123"},
	{"subset duplicate", dpObj, func(o v1alpha1.Object) { dp(o).Subsets[1].Name = "v1" }, "spec.subsets[1].name", "Duplicate"},
	{"subset labels required", dpObj, func(o v1alpha1.Object) { dp(o).Subsets[0].Labels = nil }, "spec.subsets[0].labels", "whole host"},
	{"subset labels invalid", dpObj, func(o v1alpha1.Object) { dp(o).Subsets[0].Labels = map[string]string{"version": "v 1"} }, "spec.subsets[0].labels", "valid label"},

	// ServiceEntry.
	{"entry hosts required", seObj, func(o v1alpha1.Object) { se(o).Hosts = nil }, "spec.hosts", "Required"},
	{"entry host star", seObj, func(o v1alpha1.Object) { se(o).Hosts = []string{"*"} }, "spec.hosts[0]", "bare *"},
	{"entry host duplicate", seObj, func(o v1alpha1.Object) { se(o).Hosts = append(se(o).Hosts, se(o).Hosts[0]) }, "spec.hosts[1]", "Duplicate"},
	{"resolution required", seObj, func(o v1alpha1.Object) { se(o).Resolution = "" }, "spec.resolution", "want one of"},
	{"resolution unknown", seObj, func(o v1alpha1.Object) { se(o).Resolution = "magic" }, "spec.resolution", "Unsupported value"},
	{"entry ports required", seObj, func(o v1alpha1.Object) { se(o).Ports = nil }, "spec.ports", "Required"},
	{"entry port number", seObj, func(o v1alpha1.Object) { se(o).Ports[0].Number = 0 }, "spec.ports[0].number", "between 1 and 65535"},
	{"entry port duplicate", seObj, func(o v1alpha1.Object) {
		se(o).Ports = append(se(o).Ports, v1alpha1.ServiceEntryPort{Number: 443, Name: "other"})
	}, "spec.ports[1].number", "Duplicate"},
	{"entry port name required", seObj, func(o v1alpha1.Object) {
		se(o).Ports = append(se(o).Ports, v1alpha1.ServiceEntryPort{Number: 80})
	}, "spec.ports[1].name", "multi-port"},
	{"entry port name invalid", seObj, func(o v1alpha1.Object) { se(o).Ports[0].Name = "HTTPS!" }, "spec.ports[0].name", "must contain only"},
	{"entry port name duplicate", seObj, func(o v1alpha1.Object) {
		se(o).Ports = append(se(o).Ports, v1alpha1.ServiceEntryPort{Number: 80, Name: "https"})
	}, "spec.ports[1].name", "Duplicate"},
	{"entry protocol", seObj, func(o v1alpha1.Object) { se(o).Ports[0].Protocol = "QUIC" }, "spec.ports[0].protocol", "unknown protocol"},
	{"entry target port", seObj, func(o v1alpha1.Object) { se(o).Ports[0].TargetPort = -1 }, "spec.ports[0].targetPort", "between 1 and 65535"},
	{"wildcard needs none", seObj, func(o v1alpha1.Object) { se(o).Hosts = []string{"*.payments.example.com"} }, "spec.hosts[0]", "resolution none"},
	{"none with endpoints", seObj, func(o v1alpha1.Object) { se(o).Resolution = "none" }, "spec.endpoints", "not used"},
	{"static without endpoints", seObj, func(o v1alpha1.Object) { se(o).Resolution, se(o).Endpoints = "static", nil }, "spec.endpoints", "needs endpoints"},
	{"static needs IP", seObj, func(o v1alpha1.Object) { se(o).Resolution = "static" }, "spec.endpoints[0].address", "IP address"},
	{"dns name invalid", seObj, func(o v1alpha1.Object) { se(o).Endpoints[0].Address = "not a host" }, "spec.endpoints[0].address", "RFC 1123"},
	{"endpoint port unknown", seObj, func(o v1alpha1.Object) { se(o).Endpoints[0].Ports = map[string]int32{"http": 8080} }, "spec.endpoints[0].ports[http]", "Not found"},
	{"endpoint port invalid", seObj, func(o v1alpha1.Object) { se(o).Endpoints[0].Ports = map[string]int32{"https": 0} }, "spec.endpoints[0].ports[https]", "between 1 and 65535"},
	{"endpoint locality", seObj, func(o v1alpha1.Object) { se(o).Endpoints[0].Locality = "a/b/c/d" }, "spec.endpoints[0].locality", "at most three parts"},
	{"endpoint labels", seObj, func(o v1alpha1.Object) { se(o).Endpoints[0].Labels = map[string]string{"-x": "y"} }, "spec.endpoints[0].labels", "name part must consist"},
	{"endpoint weight", seObj, func(o v1alpha1.Object) { se(o).Endpoints[0].Weight = -1 }, "spec.endpoints[0].weight", "negative"},

	// Gateway.
	{"type required", gwObj, func(o v1alpha1.Object) { gw(o).Type = "" }, "spec.type", "want one of"},
	{"type unknown", gwObj, func(o v1alpha1.Object) { gw(o).Type = "north-south" }, "spec.type", "Unsupported value"},
	{"gateway selector", gwObj, func(o v1alpha1.Object) { gw(o).Selector = map[string]string{"app": "in gress"} }, "spec.selector", "valid label"},
	{"listeners required", gwObj, func(o v1alpha1.Object) { gw(o).Listeners = nil }, "spec.listeners", "Required"},
	{"listener name", gwObj, func(o v1alpha1.Object) { gw(o).Listeners[0].Name = "HTTPS" }, "spec.listeners[0].name", "RFC 1123"},
	{"listener name duplicate", gwObj, func(o v1alpha1.Object) { gw(o).Listeners[1].Name = "https" }, "spec.listeners[1].name", "Duplicate"},
	{"listener port", gwObj, func(o v1alpha1.Object) { gw(o).Listeners[1].Port = 0 }, "spec.listeners[1].port", "between 1 and 65535"},
	{"listener protocol required", gwObj, func(o v1alpha1.Object) { gw(o).Listeners[1].Protocol = "" }, "spec.listeners[1].protocol", "want one of"},
	{"listener protocol unknown", gwObj, func(o v1alpha1.Object) { gw(o).Listeners[1].Protocol = "http" }, "spec.listeners[1].protocol", "Unsupported value"},
	{"https needs tls", gwObj, func(o v1alpha1.Object) { gw(o).Listeners[0].TLS = nil }, "spec.listeners[0].tls", "need tls settings"},
	{"http refuses tls", gwObj, func(o v1alpha1.Object) {
		gw(o).Listeners[1].TLS = &v1alpha1.ServerTLS{Mode: "simple", CredentialName: "c"}
	}, "spec.listeners[1].tls", "use protocol HTTPS"},
	{"tls mode", gwObj, func(o v1alpha1.Object) { gw(o).Listeners[0].TLS.Mode = "" }, "spec.listeners[0].tls.mode", "want one of"},
	{"simple needs cert", gwObj, func(o v1alpha1.Object) { gw(o).Listeners[0].TLS.CredentialName = "" }, "spec.listeners[0].tls.credentialName", "needs a certificate"},
	{"passthrough needs TLS protocol", gwObj, func(o v1alpha1.Object) { gw(o).Listeners[0].TLS = &v1alpha1.ServerTLS{Mode: "passthrough"} }, "spec.listeners[0].tls.mode", "must be TLS"},
	{"passthrough refuses cert", gwObj, func(o v1alpha1.Object) {
		gw(o).Listeners[0].Protocol = "TLS"
		gw(o).Listeners[0].TLS.Mode = "passthrough"
	}, "spec.listeners[0].tls.credentialName", "not terminated here"},
	{"east-west terminates", gwObj, func(o v1alpha1.Object) { gw(o).Type = "east-west"; gw(o).Listeners = gw(o).Listeners[:1] }, "spec.listeners[0].tls.mode", "use mesh or passthrough"},
	{"east-west needs tls", gwObj, func(o v1alpha1.Object) { gw(o).Type = "east-west"; gw(o).Listeners = gw(o).Listeners[1:] }, "spec.listeners[0].tls", "need tls settings"},
	{"credential invalid", gwObj, func(o v1alpha1.Object) { gw(o).Listeners[0].TLS.CredentialName = "Shop Cert" }, "spec.listeners[0].tls.credentialName", "RFC 1123"},
	{"min version", gwObj, func(o v1alpha1.Object) { gw(o).Listeners[0].TLS.MinVersion = "1.0" }, "spec.listeners[0].tls.minVersion", "Unsupported value"},
	{"hosts required", gwObj, func(o v1alpha1.Object) { gw(o).Listeners[1].Hosts = nil }, "spec.listeners[1].hosts", `or "*"`},
	{"hosts invalid", gwObj, func(o v1alpha1.Object) { gw(o).Listeners[1].Hosts = []string{"shop..example.com"} }, "spec.listeners[1].hosts[0]", "RFC 1123"},
	{"shared port protocols", gwObj, func(o v1alpha1.Object) { gw(o).Listeners[1].Port = 443 }, "spec.listeners[1].protocol", "already serves this port"},
	{"shared TCP port", gwObj, func(o v1alpha1.Object) {
		gw(o).Listeners = []v1alpha1.Listener{{Name: "a", Port: 5432, Protocol: "TCP"}, {Name: "b", Port: 5432, Protocol: "TCP"}}
	}, "spec.listeners[1].port", "Duplicate"},
	{"shared port same host", gwObj, func(o v1alpha1.Object) {
		l := gw(o).Listeners[0]
		l.Name = "again"
		gw(o).Listeners = append(gw(o).Listeners, l)
	}, "spec.listeners[2].hosts", "already serves this host"},
}

func TestValidateEveryError(t *testing.T) {
	for key, o := range labObjects(t) {
		if errs := o.Validate(); len(errs) > 0 {
			t.Fatalf("%s: the base object is invalid: %v", key, errs)
		}
	}
	for _, c := range validationCases {
		t.Run(c.name, func(t *testing.T) {
			o := labObjects(t)[c.object]
			c.mutate(o)
			errs := o.Validate()
			for _, e := range errs {
				if e.Field == c.field && strings.Contains(e.Error(), c.says) {
					return
				}
			}
			t.Errorf("want an error on %s saying %q, got %v", c.field, c.says, errs)
		})
	}
}

func TestOutlierDefaults(t *testing.T) {
	od := v1alpha1.OutlierDetection{Consecutive5xxErrors: i32(0)}.WithDefaults()
	if *od.Consecutive5xxErrors != 0 || *od.ConsecutiveGatewayErrors != 3 || od.Interval.Duration.String() != "1s" || *od.MaxEjectionPercent != 100 {
		t.Fatalf("%+v", od)
	}
	if w := v1alpha1.Weights([]v1alpha1.RouteDestination{{}}); w[0] != 100 {
		t.Fatalf("single destination weight %v", w)
	}
}
