// Package metrics registers the trust packages' Prometheus collectors on an
// injected Registerer. Several components of one process (two Authorities in
// a test, a rotated one in meridiand) may ask for the same collector: the
// second one gets the collector already registered instead of a panic.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// CounterVec registers (or finds) a counter vector. A nil Registerer gives an
// unregistered vector, so that components built without metrics still count.
func CounterVec(reg prometheus.Registerer, opts prometheus.CounterOpts, labels ...string) *prometheus.CounterVec {
	return register(reg, prometheus.NewCounterVec(opts, labels))
}

// GaugeVec registers (or finds) a gauge vector, as CounterVec does.
func GaugeVec(reg prometheus.Registerer, opts prometheus.GaugeOpts, labels ...string) *prometheus.GaugeVec {
	return register(reg, prometheus.NewGaugeVec(opts, labels))
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a name clash between two different collectors is a programming error
	}
	return c
}

// Counter is CounterVec without labels.
func Counter(reg prometheus.Registerer, opts prometheus.CounterOpts) prometheus.Counter {
	return CounterVec(reg, opts).WithLabelValues()
}
