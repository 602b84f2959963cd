package workload

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"time"

	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/discovery/workload/workloadpb"
	"github.com/meridian-mesh/meridian/registry"
)

// Bounds of a registration's TTL and labels. A TTL under a second would turn
// heartbeats into load; one over a day would keep dead workloads for a day.
const (
	minTTL    = time.Second
	maxTTL    = 24 * time.Hour
	maxLabels = 64
)

// record is one registration in its validated, canonical form: what is kept
// in memory and persisted in etcd as JSON.
type record struct {
	ID             string              `json:"id"`
	Service        registry.ServiceKey `json:"service"`
	Address        string              `json:"address"` // canonical IP, no port
	Port           uint32              `json:"port"`
	PortName       string              `json:"portName,omitempty"`
	Protocol       registry.Protocol   `json:"protocol"`
	Locality       registry.Locality   `json:"locality"`
	Labels         map[string]string   `json:"labels,omitempty"`
	ServiceAccount string              `json:"serviceAccount,omitempty"`
	TTL            time.Duration       `json:"ttl"`
	RegisteredAt   time.Time           `json:"registeredAt"`
}

// parseRequest validates a registration request and returns its canonical
// record (RegisteredAt unset). Every problem is reported with the request's
// field name, as the proto spells it.
func parseRequest(req *workloadpb.RegisterRequest, defaultTTL time.Duration) (record, field.ErrorList) {
	rec := record{
		Service:        registry.ServiceKey{Namespace: req.GetNamespace(), Name: req.GetService()},
		PortName:       req.GetPortName(),
		Labels:         req.GetLabels(),
		ServiceAccount: req.GetServiceAccount(),
		TTL:            defaultTTL,
	}
	// ValidateServiceKey calls the service name "name"; the request calls it
	// "service".
	errs := renameField(registry.ValidateServiceKey(rec.Service, nil), "name", "service")

	errs = append(errs, parseAddress(req.GetAddress(), &rec)...)
	if rec.PortName != "" {
		for _, msg := range validation.IsValidPortName(rec.PortName) {
			errs = append(errs, field.Invalid(field.NewPath("port_name"), rec.PortName, msg))
		}
	}
	p, err := registry.ParseProtocol(req.GetProtocol())
	if err != nil {
		errs = append(errs, field.Invalid(field.NewPath("protocol"), req.GetProtocol(), err.Error()))
	}
	rec.Protocol = p
	if loc, err := registry.ParseLocality(req.GetLocality()); err != nil {
		errs = append(errs, fieldErrors(err, field.NewPath("locality"), req.GetLocality())...)
	} else {
		rec.Locality = loc
	}
	if len(rec.Labels) > maxLabels {
		errs = append(errs, field.TooMany(field.NewPath("labels"), len(rec.Labels), maxLabels))
	}
	errs = append(errs, metav1validation.ValidateLabels(rec.Labels, field.NewPath("labels"))...)
	if rec.ServiceAccount != "" {
		for _, msg := range validation.IsDNS1123Subdomain(rec.ServiceAccount) {
			errs = append(errs, field.Invalid(field.NewPath("service_account"), rec.ServiceAccount, msg))
		}
	}
	if d := req.GetTtl(); d != nil {
		ttl := field.NewPath("ttl")
		if err := d.CheckValid(); err != nil {
			errs = append(errs, field.Invalid(ttl, d.String(), err.Error()))
		} else if rec.TTL = d.AsDuration(); rec.TTL < minTTL || rec.TTL > maxTTL {
			errs = append(errs, field.Invalid(ttl, rec.TTL.String(), fmt.Sprintf("must be between %v and %v", minTTL, maxTTL)))
		}
	}
	if len(errs) > 0 {
		return record{}, errs
	}
	rec.ID = rec.workloadID()
	return rec, nil
}

// parseAddress fills rec.Address and rec.Port from "IP:PORT". The address
// is stored in canonical form (an IPv4-mapped IPv6 address becomes IPv4), so
// that every spelling of one address gives one workload.
func parseAddress(s string, rec *record) field.ErrorList {
	path := field.NewPath("address")
	if s == "" {
		return field.ErrorList{field.Required(path, "want IP:PORT ([IPv6]:PORT)")}
	}
	ip, port, err := registry.ParseAddrPort(s)
	switch {
	case err != nil:
		return field.ErrorList{field.Invalid(path, s, err.Error())}
	case ip.Zone() != "":
		return field.ErrorList{field.Invalid(path, s, "an IPv6 zone means nothing to other hosts")}
	case ip.IsUnspecified() || ip.IsMulticast():
		return field.ErrorList{field.Invalid(path, s, "must be a unicast address other hosts can reach")}
	}
	rec.Address, rec.Port = ip.Unmap().String(), port
	return nil
}

// workloadID derives a workload's ID from what identifies it (namespace,
// service, address and port), so that registering again gives the same ID
// without any lookup. It reads like a pod name: the service name and a hash.
func (r *record) workloadID() string {
	sum := sha256.Sum256([]byte(r.Service.Namespace + "/" + r.Service.Name + "/" + r.addrPort().String()))
	return r.Service.Name + "-" + hex.EncodeToString(sum[:6])
}

// addrPort returns "IP:PORT" of a valid record, IPv6 in brackets.
func (r *record) addrPort() netip.AddrPort {
	ip, _ := netip.ParseAddr(r.Address)
	return netip.AddrPortFrom(ip, uint16(r.Port))
}

// endpoint returns the registry endpoint of a registration.
func (r *record) endpoint(network string, h registry.Health) *registry.Endpoint {
	return &registry.Endpoint{
		Service:        r.Service,
		ID:             r.ID,
		PortName:       r.PortName,
		Addresses:      []string{r.Address},
		Port:           r.Port,
		Locality:       r.Locality,
		Network:        network,
		ServiceAccount: r.ServiceAccount,
		Labels:         r.Labels,
		Health:         h,
	}
}

// validate checks a record read back from etcd, which may have been written
// by another version or by hand.
func (r *record) validate() error {
	errs := registry.ValidateEndpoint(r.endpoint("", registry.Healthy), nil)
	if _, err := registry.ParseProtocol(string(r.Protocol)); err != nil {
		errs = append(errs, field.Invalid(field.NewPath("protocol"), r.Protocol, err.Error()))
	}
	if r.TTL < minTTL || r.TTL > maxTTL {
		errs = append(errs, field.Invalid(field.NewPath("ttl"), r.TTL.String(), "out of range"))
	}
	if len(errs) == 0 && r.ID != r.workloadID() {
		errs = append(errs, field.Invalid(field.NewPath("id"), r.ID, "does not match service, namespace and address"))
	}
	return errs.ToAggregate()
}

// fieldErrors recovers the field errors of an aggregate the registry
// helpers return, so that each keeps its own path; anything else becomes
// one error at path.
func fieldErrors(err error, path *field.Path, value string) field.ErrorList {
	var agg utilerrors.Aggregate
	if errors.As(err, &agg) {
		var out field.ErrorList
		for _, e := range agg.Errors() {
			var fe *field.Error
			if !errors.As(e, &fe) {
				return field.ErrorList{field.Invalid(path, value, err.Error())}
			}
			out = append(out, fe)
		}
		return out
	}
	return field.ErrorList{field.Invalid(path, value, err.Error())}
}

func renameField(errs field.ErrorList, from, to string) field.ErrorList {
	for _, e := range errs {
		if e.Field == from {
			e.Field = to
		}
	}
	return errs
}
