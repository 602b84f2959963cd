package xdsconfig

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meridian-mesh/meridian/sidecar/fieldrules"
	"github.com/meridian-mesh/meridian/sidecar/xdsclient"
)

// maxResourceBytes bounds one resource. gRPC already bounds a message; this
// keeps a single resource from claiming all of it.
const maxResourceBytes = 8 << 20

// Options configure a Decoder.
type Options struct {
	// Authz compiles the HTTP and network RBAC filters. Nil refuses
	// resources that carry RBAC.
	Authz AuthzFactory
	// JWT compiles the jwt_authn filter. Nil refuses resources that carry
	// it.
	JWT JWTFactory
}

// Decoder decodes resources; its Decode method is an xdsclient.Decoder.
type Decoder struct {
	opts Options
}

// NewDecoder returns a Decoder.
func NewDecoder(opts Options) *Decoder { return &Decoder{opts: opts} }

var _ xdsclient.Decoder = (*Decoder)(nil).Decode

// Decode decodes and validates one resource of the given type.
func (d *Decoder) Decode(typeURL string, a *anypb.Any) (string, xdsclient.Resource, error) {
	if len(a.GetValue()) > maxResourceBytes {
		return "", nil, fmt.Errorf("resource of %d bytes exceeds the %d byte limit", len(a.GetValue()), maxResourceBytes)
	}
	switch typeURL {
	case xdsclient.ListenerType:
		return decodeAs(a, d.listener)
	case xdsclient.RouteType:
		return decodeAs(a, d.routeConfig)
	case xdsclient.ClusterType:
		return decodeAs(a, cluster)
	case xdsclient.EndpointType:
		return decodeAs(a, endpoints)
	case xdsclient.SecretType:
		return decodeAs(a, secret)
	}
	return "", nil, fmt.Errorf("unsupported resource type %q", typeURL)
}

// decodeAs unmarshals a resource, applies Envoy's own field rules, then
// compiles it. Errors carry the resource name when it is known.
func decodeAs[M any, PM interface {
	*M
	proto.Message
}, R xdsclient.Resource](a *anypb.Any, compile func(PM) (R, error)) (string, xdsclient.Resource, error) {
	m := PM(new(M))
	if err := a.UnmarshalTo(m); err != nil {
		return "", nil, fmt.Errorf("decode: %w", err)
	}
	var name string
	switch n := any(m).(type) {
	case interface{ GetName() string }:
		name = n.GetName()
	case interface{ GetClusterName() string }:
		name = n.GetClusterName()
	}
	if name == "" {
		return "", nil, errors.New("resource has no name")
	}
	if err := checkRules(m); err != nil {
		return name, nil, err
	}
	r, err := compile(m)
	if err != nil {
		return name, nil, err
	}
	return name, r, nil
}

// unmarshalTyped decodes a typed_config and applies its field rules.
func unmarshalTyped(a *anypb.Any, m proto.Message) error {
	if a == nil {
		return errors.New("typed_config is missing")
	}
	if err := a.UnmarshalTo(m); err != nil {
		return fmt.Errorf("typed_config %s: %w", a.GetTypeUrl(), err)
	}
	return checkRules(m)
}

// checkRules applies the field rules Envoy's API declares (as Envoy does
// before using a resource), read from the descriptors by fieldrules rather
// than by the generated validators, which would be most of the proxy's
// binary.
func checkRules(m proto.Message) error {
	if err := fieldrules.Check(m); err != nil {
		return fmt.Errorf("invalid: %w", err)
	}
	return nil
}

// duration converts an optional proto duration; def when unset.
func duration(d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.AsDuration()
}

// fieldErr names the field an error is about.
func fieldErr(field string, err error) error {
	return fmt.Errorf("%s: %w", field, err)
}
