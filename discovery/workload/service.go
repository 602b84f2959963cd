package workload

import (
	"cmp"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meridian-mesh/meridian/registry"
)

// The registrations of one service must agree, pairwise, so that a service
// definition follows from them whatever their order, and stays valid when
// any of them goes away:
//
//   - one port name, one protocol;
//   - one port number, one port name (a number is never two ports);
//   - an unnamed port only while the service has a single port name.
//
// The definition has one port per port name, numbered by the lowest number
// registered under that name: workloads may listen on different numbers
// for one named port, as pods may behind a named targetPort.

// checkFits reports how rec disagrees with the other registrations of its
// service, naming rec's field at fault.
func checkFits(rec *record, others []*entry) *field.Error {
	names := map[string]bool{rec.PortName: true}
	for _, o := range others {
		switch {
		case o.rec.PortName == rec.PortName && o.rec.Protocol != rec.Protocol:
			return field.Invalid(field.NewPath("protocol"), string(rec.Protocol),
				fmt.Sprintf("port %s of service %s is %s in workload %s", portLabel(o.rec.PortName), rec.Service, o.rec.Protocol, o.rec.ID))
		case o.rec.Port == rec.Port && o.rec.PortName != rec.PortName:
			return field.Invalid(field.NewPath("port_name"), rec.PortName,
				fmt.Sprintf("port %d of service %s is port %s in workload %s", rec.Port, rec.Service, portLabel(o.rec.PortName), o.rec.ID))
		}
		names[o.rec.PortName] = true
	}
	if len(names) > 1 && names[""] {
		return field.Invalid(field.NewPath("port_name"), rec.PortName,
			fmt.Sprintf("service %s would have %d ports, and then every port needs a name: name them all with port_name", rec.Service, len(names)))
	}
	return nil
}

// deriveService builds a service's definition from registrations that
// agree (see checkFits). It returns nil when there are none.
func deriveService(k registry.ServiceKey, entries []*entry) *registry.Service {
	if len(entries) == 0 {
		return nil
	}
	byName := map[string]registry.ServicePort{}
	for _, e := range entries {
		if p, ok := byName[e.rec.PortName]; !ok || e.rec.Port < p.Port {
			byName[e.rec.PortName] = registry.ServicePort{Name: e.rec.PortName, Port: e.rec.Port, Protocol: e.rec.Protocol}
		}
	}
	svc := &registry.Service{Namespace: k.Namespace, Name: k.Name}
	for _, p := range byName {
		svc.Ports = append(svc.Ports, p)
	}
	slices.SortFunc(svc.Ports, func(a, b registry.ServicePort) int { return cmp.Compare(a.Port, b.Port) })
	return svc
}

func portLabel(name string) string {
	if name == "" {
		return "(unnamed)"
	}
	return fmt.Sprintf("%q", name)
}
