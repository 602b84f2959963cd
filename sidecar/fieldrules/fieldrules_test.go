package fieldrules_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	jwt "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hrbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	nrbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	lr "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	rr "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	wrr "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/wrr_locality/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/protoc-gen-validate/validate"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meridian-mesh/meridian/sidecar/fieldrules"
	// The typed configs the golden resources carry (listener filters and
	// the rest), registered for protojson.
	_ "github.com/meridian-mesh/meridian/xds/translate"
)

// roots are the messages meridian-proxy decodes: the five resource types
// and every typed_config it unpacks (sidecar/xdsconfig).
func roots() []proto.Message {
	return []proto.Message{&listener.Listener{}, &route.RouteConfiguration{}, &cluster.Cluster{}, &endpoint.ClusterLoadAssignment{}, &tlsv3.Secret{},
		&hcm.HttpConnectionManager{}, &faultv3.HTTPFault{}, &jwt.JwtAuthentication{}, &jwt.PerRouteConfig{}, &hrbac.RBAC{}, &hrbac.RBACPerRoute{},
		&routerv3.Router{}, &nrbac.RBAC{}, &tcp.TcpProxy{}, &lr.LeastRequest{}, &rr.RoundRobin{}, &wrr.WrrLocality{},
		&tlsv3.DownstreamTlsContext{}, &tlsv3.UpstreamTlsContext{}, &tlsv3.SPIFFECertValidatorConfig{}, &httpv3.HttpProtocolOptions{}}
}

type validator interface{ ValidateAll() error }

// generated is the verdict of protoc-gen-validate's generated code.
func generated(m proto.Message) error { return m.(validator).ValidateAll() }

// golden loads the control plane's golden resources (every proxy mode,
// with policies: RBAC, JWT, faults, retries, TLS), and the typed configs
// inside them, as messages of their own.
func golden(t testing.TB) []proto.Message {
	t.Helper()
	files, err := filepath.Glob("../../xds/translate/testdata/golden/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden resources: %v", err)
	}
	types := map[string]func() proto.Message{
		"CDS": func() proto.Message { return &cluster.Cluster{} },
		"EDS": func() proto.Message { return &endpoint.ClusterLoadAssignment{} },
		"LDS": func() proto.Message { return &listener.Listener{} },
		"RDS": func() proto.Message { return &route.RouteConfiguration{} },
		"SDS": func() proto.Message { return &tlsv3.Secret{} },
	}
	var out []proto.Message
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for key, section := range doc {
			mk := types[strings.Fields(key)[0]]
			if mk == nil {
				continue
			}
			var resources map[string]json.RawMessage
			if json.Unmarshal(section, &resources) != nil {
				continue // a list of names, not resources
			}
			for name, raw := range resources {
				m := mk()
				if err := protojson.Unmarshal(raw, m); err != nil {
					t.Fatalf("%s %s %s: %v", f, key, name, err)
				}
				out = append(out, m)
				out = append(out, unpacked(m.ProtoReflect())...)
			}
		}
	}
	return out
}

// unpacked returns the messages inside m's Any fields, recursively.
func unpacked(m protoreflect.Message) []proto.Message {
	var out []proto.Message
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		visit := func(x protoreflect.Message) {
			if a, ok := x.Interface().(*anypb.Any); ok {
				if inner, err := a.UnmarshalNew(); err == nil {
					if _, ok := inner.(validator); ok {
						out = append(out, inner)
					}
					out = append(out, unpacked(inner.ProtoReflect())...)
				}
				return
			}
			out = append(out, unpacked(x)...)
		}
		switch {
		case fd.IsList():
			for i := range v.List().Len() {
				visit(v.List().Get(i).Message())
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool { visit(mv.Message()); return true })
			}
		default:
			visit(v.Message())
		}
		return true
	})
	return out
}

// TestGoldenResourcesPass: what the control plane sends passes both.
func TestGoldenResourcesPass(t *testing.T) {
	ms := golden(t)
	if len(ms) < 100 {
		t.Fatalf("only %d golden messages", len(ms))
	}
	for _, m := range ms {
		if err := fieldrules.Check(m); err != nil {
			t.Errorf("%T: %v", m, err)
		}
		if err := generated(m); err != nil {
			t.Errorf("%T fails the generated rules: %v", m, err)
		}
	}
}

// TestAgreesWithGeneratedCode mutates real resources a few fields at a
// time — empty and oversized strings, header names with colons and
// newlines, out-of-range numbers, NaN, undefined enums, invalid and
// negative durations, cleared required fields — and requires the same
// verdict from Check as from the generated validators.
func TestAgreesWithGeneratedCode(t *testing.T) {
	ms := golden(t)
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	rounds := 20000
	if testing.Short() {
		rounds = 2000
	}
	refused, disagreements := 0, 0
	for range rounds {
		m := proto.Clone(ms[rng.IntN(len(ms))])
		for range 1 + rng.IntN(3) {
			mutate(rng, m.ProtoReflect(), 0)
		}
		ours, theirs := fieldrules.Check(m), generated(m)
		if theirs != nil {
			refused++
		}
		if (ours == nil) != (theirs == nil) {
			disagreements++
			if disagreements <= 5 {
				t.Errorf("%T: Check says %v, the generated code %v\n%s", m, ours, theirs, prototext.Format(m))
			}
		}
	}
	if refused < rounds/10 {
		t.Fatalf("only %d of %d mutations were invalid: the mutator does not reach the rules", refused, rounds)
	}
	t.Logf("%d mutations, %d refused by both", rounds, refused)
}

var (
	nastyStrings = []string{"", "a", "x-envoy-foo", ":authority", "Bad Header", "bad\nvalue", "tab\tvalue", "nul\x00", "é", strings.Repeat("h", 300), strings.Repeat("v", 20000), "127.0.0.1", "::1", "*", "/path", "outbound|80||web"}
	nastyInts    = []int64{0, 1, 2, 3, 99, 100, 101, 127, 128, 129, 600, 65535, 65536, -1, math.MaxInt32, math.MinInt32, math.MaxInt64}
	nastyFloats  = []float64{0, 1, -1, 0.5, 99.9, 100, 100.1, math.NaN(), math.Inf(1), -math.Inf(1), 1e9}
)

// mutate changes one field somewhere in m: it descends into a set message
// field two times in three, else rewrites a field of m.
func mutate(rng *rand.Rand, m protoreflect.Message, depth int) {
	md := m.Descriptor()
	if md.FullName() == "google.protobuf.Any" {
		return // the generated code does not look inside
	}
	var inner []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() != nil && (!fd.IsMap() || fd.MapValue().Message() != nil) {
			inner = append(inner, fd)
		}
		return true
	})
	if len(inner) > 0 && depth < 12 && rng.IntN(3) > 0 {
		fd := inner[rng.IntN(len(inner))]
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			mutate(rng, l.Get(rng.IntN(l.Len())).Message(), depth+1)
		case fd.IsMap():
			var keys []protoreflect.MapKey
			mp := m.Mutable(fd).Map()
			mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool { keys = append(keys, k); return true })
			mutate(rng, mp.Mutable(keys[rng.IntN(len(keys))]).Message(), depth+1)
		default:
			mutate(rng, m.Mutable(fd).Message(), depth+1)
		}
		return
	}
	if md.Fields().Len() == 0 {
		return
	}
	fd := md.Fields().Get(rng.IntN(md.Fields().Len()))
	switch {
	case rng.IntN(4) == 0:
		m.Clear(fd)
	case fd.IsList():
		l := m.Mutable(fd).List()
		switch {
		case rng.IntN(3) == 0 && l.Len() > 0:
			l.Truncate(0)
		case rng.IntN(2) == 0 && l.Len() > 0 && fd.Message() == nil:
			l.Append(l.Get(0)) // a duplicate, for unique
		default:
			l.Append(nasty(rng, fd, m.NewField(fd).List().NewElement()))
		}
	case fd.IsMap():
		mp := m.Mutable(fd).Map()
		k := nasty(rng, fd.MapKey(), fd.MapKey().Default()).MapKey()
		if fd.MapValue().Message() != nil {
			mv := mp.NewValue()
			if rng.IntN(2) == 0 {
				mutate(rng, mv.Message(), depth+1)
			}
			mp.Set(k, mv)
		} else {
			mp.Set(k, nasty(rng, fd.MapValue(), fd.MapValue().Default()))
		}
	case fd.Message() != nil:
		v := m.NewField(fd)
		if rng.IntN(2) == 0 {
			mutate(rng, v.Message(), depth+1)
		}
		m.Set(fd, nasty(rng, fd, v))
	default:
		m.Set(fd, nasty(rng, fd, fd.Default()))
	}
}

// nasty returns a troublesome value for a field (or list element) of fd's
// kind; messages get theirs inside (durations, wrappers) or stay as given.
func nasty(rng *rand.Rand, fd protoreflect.FieldDescriptor, v protoreflect.Value) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(nastyStrings[rng.IntN(len(nastyStrings))])
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(nastyStrings[rng.IntN(len(nastyStrings))]))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(rng.IntN(2) == 0)
	case protoreflect.EnumKind:
		n := fd.Enum().Values().Len()
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(rng.IntN(n+3) - 1))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(nastyInts[rng.IntN(len(nastyInts))]))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(nastyInts[rng.IntN(len(nastyInts))])
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(nastyInts[rng.IntN(len(nastyInts))]))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(nastyInts[rng.IntN(len(nastyInts))]))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(nastyFloats[rng.IntN(len(nastyFloats))]))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(nastyFloats[rng.IntN(len(nastyFloats))])
	}
	switch x := v.Message().Interface().(type) {
	case *durationpb.Duration:
		x.Seconds = []int64{0, 1, -1, 30, 315576000001, -315576000001}[rng.IntN(6)]
		x.Nanos = []int32{0, 1, -1, 999999999, 1000000000}[rng.IntN(5)]
	case *wrapperspb.UInt32Value:
		x.Value = uint32(nastyInts[rng.IntN(len(nastyInts))])
	case *wrapperspb.DoubleValue:
		x.Value = nastyFloats[rng.IntN(len(nastyFloats))]
	case *wrapperspb.StringValue:
		x.Value = nastyStrings[rng.IntN(len(nastyStrings))]
	case *anypb.Any:
		x.TypeUrl = []string{"", "type.googleapis.com/envoy.config.core.v3.Address", "nonsense"}[rng.IntN(3)]
	}
	return v
}

// FuzzAgreesWithGeneratedCode: any bytes that decode as one of the roots
// get the same verdict from Check as from the generated validators.
func FuzzAgreesWithGeneratedCode(f *testing.F) {
	rs := roots()
	for _, m := range golden(f) {
		for i, r := range rs {
			if r.ProtoReflect().Descriptor() == m.ProtoReflect().Descriptor() {
				b, _ := proto.Marshal(m)
				f.Add(uint8(i), b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		m := rs[int(which)%len(rs)].ProtoReflect().New().Interface()
		if proto.Unmarshal(b, m) != nil {
			return
		}
		ours, theirs := fieldrules.Check(m), generated(m)
		if (ours == nil) != (theirs == nil) {
			t.Fatalf("%T: Check says %v, the generated code %v", m, ours, theirs)
		}
	})
}

// TestReasons: the error names the field path and the rule, as a NACK
// should.
func TestReasons(t *testing.T) {
	for _, tc := range []struct {
		msg  proto.Message
		want string
	}{
		{&cluster.Cluster{}, "name: value length must be at least 1 runes"},
		{&route.RouteConfiguration{VirtualHosts: []*route.VirtualHost{{Name: "v"}}}, "virtual_hosts[0].domains: value must contain at least 1 item(s)"},
		{&route.RouteConfiguration{VirtualHosts: []*route.VirtualHost{{Name: "v", Domains: []string{"*"}, Routes: []*route.Route{{Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}}}}}}},
			"virtual_hosts[0].routes[0].action: value is required"},
		{&route.RouteConfiguration{RequestHeadersToAdd: []*core.HeaderValueOption{{Header: &core.HeaderValue{Key: "bad\nkey", Value: "v"}}}}, "request_headers_to_add[0].header.key: value does not match regex pattern"},
		{&endpoint.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpoint.LocalityLbEndpoints{{LoadBalancingWeight: wrapperspb.UInt32(0)}}}, "endpoints[0].load_balancing_weight: value must be greater than or equal to 1"},
		{&cluster.Cluster{Name: "c", ConnectTimeout: durationpb.New(-time.Second)}, "connect_timeout: value must be greater than 0s"},
		{&cluster.Cluster{Name: "c", LbPolicy: 99}, "lb_policy: value must be one of the defined enum values"},
		{&faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 700}}}, "abort.http_status: value must be inside range [200, 600)"},
		{&cluster.Cluster{Name: ""}, "name:"},
	} {
		err := fieldrules.Check(tc.msg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%T: %v, want %q", tc.msg, err, tc.want)
		}
		if generated(tc.msg) == nil {
			t.Errorf("%T: the generated code accepts it", tc.msg)
		}
	}
	many := &route.RouteConfiguration{VirtualHosts: []*route.VirtualHost{{}, {}, {}, {}}}
	if err := fieldrules.Check(many); err == nil || !strings.Contains(err.Error(), "and 5 more") {
		t.Errorf("many violations: %v", err)
	}
}

// supported lists, per rule type, the rules Check implements.
var supported = map[protoreflect.Name][]protoreflect.Name{
	"string":    {"const", "len", "min_len", "max_len", "len_bytes", "min_bytes", "max_bytes", "pattern", "prefix", "suffix", "contains", "not_contains", "in", "not_in", "ip", "ipv4", "ipv6", "well_known_regex", "strict", "ignore_empty"},
	"bytes":     {"const", "len", "min_len", "max_len", "pattern", "prefix", "suffix", "contains", "ignore_empty"},
	"bool":      {"const"},
	"enum":      {"const", "defined_only", "in", "not_in"},
	"repeated":  {"min_items", "max_items", "unique", "items", "ignore_empty"},
	"map":       {"min_pairs", "max_pairs", "no_sparse", "keys", "values", "ignore_empty"},
	"any":       {"required", "in", "not_in"},
	"duration":  {"required", "const", "lt", "lte", "gt", "gte", "in", "not_in"},
	"timestamp": {"required"},
	"message":   {"skip", "required"},
}

var numeric = []protoreflect.Name{"const", "lt", "lte", "gt", "gte", "in", "not_in", "ignore_empty"}

// TestEveryRuleKindIsImplemented walks every message type the proxy can
// decode and fails on a rule Check does not implement — the day Envoy's
// API starts using one.
func TestEveryRuleKindIsImplemented(t *testing.T) {
	seen := map[protoreflect.FullName]bool{}
	used := 0
	var rules func(where string, r protoreflect.Message)
	rules = func(where string, r protoreflect.Message) {
		r.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			kind := fd.Name()
			allowed, ok := supported[kind]
			if !ok {
				allowed = numeric
			}
			v.Message().Range(func(rfd protoreflect.FieldDescriptor, rv protoreflect.Value) bool {
				used++
				name := rfd.Name()
				if !contains(allowed, name) {
					t.Errorf("%s: rule %s.%s is not implemented", where, kind, name)
				}
				if (name == "items" || name == "keys" || name == "values") && rv.Message().IsValid() {
					rules(where+"."+string(name), rv.Message())
				}
				return true
			})
			return true
		})
	}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			if fo, ok := fd.Options().(*descriptorpb.FieldOptions); ok && fo != nil && proto.HasExtension(fo, validate.E_Rules) {
				rules(string(fd.FullName()), proto.GetExtension(fo, validate.E_Rules).(*validate.FieldRules).ProtoReflect())
			}
			if fd.Message() != nil {
				walk(fd.Message())
			}
			if fd.IsMap() && fd.MapValue().Message() != nil {
				walk(fd.MapValue().Message())
			}
		}
	}
	for _, m := range roots() {
		walk(m.ProtoReflect().Descriptor())
	}
	if len(seen) < 300 || used < 500 {
		t.Fatalf("walked %d message types and %d rules: the walk is broken", len(seen), used)
	}
}

func contains(list []protoreflect.Name, n protoreflect.Name) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

// BenchmarkCheck: Check beside the generated validators on the golden
// resources; ratio is Check's time over theirs.
func BenchmarkCheck(b *testing.B) {
	ms := golden(b)
	var ours, theirs time.Duration
	for b.Loop() {
		t0 := time.Now()
		for _, m := range ms {
			_ = fieldrules.Check(m)
		}
		t1 := time.Now()
		for _, m := range ms {
			_ = generated(m)
		}
		ours, theirs = ours+t1.Sub(t0), theirs+time.Since(t1)
	}
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N*len(ms)), "ns/msg")
	b.ReportMetric(float64(theirs.Nanoseconds())/float64(b.N*len(ms)), "generated_ns/msg")
	b.ReportMetric(float64(ours)/float64(theirs), "ratio")
}
