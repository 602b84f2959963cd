package workload

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meridian-mesh/meridian/discovery/workload/workloadpb"
	"github.com/meridian-mesh/meridian/registry"
)

// FuzzParseRequest checks that any registration request is either rejected
// with field errors or turned into a record that the registry accepts,
// whose ID follows from its canonical form, and that parses to itself.
func FuzzParseRequest(f *testing.F) {
	f.Add("web", "shop", "10.0.0.1:8080", "http", "HTTP", "onprem-east/rack1/a", "version", "v1", "web", int64(30e9))
	f.Add("web", "shop", "[fd00::1]:443", "", "", "eu-west-1", "", "", "", int64(0))
	f.Add("web", "shop", "[::ffff:10.0.0.1]:80", "grpc", "grpc", "us-east-1/us-east-1a", "app.kubernetes.io/name", "web", "sa.team", int64(1e9))
	f.Add("Web", "shop_ns", "10.0.0.256:0", "http-port-name-x", "smtp", "a/b/c/d", "-x", "y", "Bad_SA", int64(-1))
	f.Add("web", "shop", "[fe80::1%eth0]:80", "http", "tcp", "a//c", "k", "v", "", int64(25*time.Hour))
	f.Add("web", "shop", "10.0.0.1:65536", "http", "udp", "", "", "", "", int64(999e6))
	f.Fuzz(func(t *testing.T, service, namespace, address, portName, protocol, locality, labelKey, labelValue, sa string, ttl int64) {
		req := &workloadpb.RegisterRequest{
			Service: service, Namespace: namespace, Address: address, PortName: portName, Protocol: protocol,
			Locality: locality, ServiceAccount: sa, Ttl: durationpb.New(time.Duration(ttl)),
		}
		if labelKey != "" {
			req.Labels = map[string]string{labelKey: labelValue}
		}
		rec, errs := parseRequest(req, 30*time.Second)
		if len(errs) > 0 {
			for _, e := range errs {
				if e.Field == "" {
					t.Fatalf("an error names no field: %v", e)
				}
			}
			return
		}
		if err := rec.validate(); err != nil {
			t.Fatalf("accepted %v, but the record is invalid: %v", req, err)
		}
		if svc := deriveService(rec.Service, []*entry{{rec: rec}}); len(registry.ValidateService(svc, nil)) > 0 {
			t.Fatalf("accepted %v, but its service is invalid: %v", req, registry.ValidateService(svc, nil))
		}
		// The canonical form parses to the same record.
		req.Address, req.Locality, req.Protocol = rec.addrPort().String(), rec.Locality.String(), string(rec.Protocol)
		again, errs := parseRequest(req, 30*time.Second)
		if len(errs) > 0 || again.ID != rec.ID || again.Address != rec.Address || again.Locality != rec.Locality {
			t.Fatalf("canonical form %v parses to %+v (%v), want %+v", req, again, errs, rec)
		}
	})
}
