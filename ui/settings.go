package ui

import (
	"net/url"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Settings are the dashboard's part of meridiand's configuration file
// ("ui:"). The dashboard itself is always served on the admin port.
type Settings struct {
	// MetricsTargets are meridian-proxy metrics URLs
	// (http://10.0.0.5:15090/metrics) scraped for live request rates.
	// Empty: the dashboard shows no rates.
	MetricsTargets []string `json:"metricsTargets,omitempty"`
	// PrometheusURL is a Prometheus that scrapes the proxies
	// (http://prometheus.monitoring:9090), asked for the rates instead: in
	// Kubernetes, where proxies come and go. Exclusive with MetricsTargets.
	PrometheusURL string `json:"prometheusURL,omitempty"`
}

// Validate reports every target that is not an http(s) URL.
func (s *Settings) Validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, t := range s.MetricsTargets {
		if u, err := url.Parse(t); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, field.Invalid(path.Child("metricsTargets").Index(i), t, "want a URL such as http://10.0.0.5:15090/metrics"))
		}
	}
	if s.PrometheusURL != "" {
		if u, err := url.Parse(s.PrometheusURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, field.Invalid(path.Child("prometheusURL"), s.PrometheusURL, "want a URL such as http://prometheus.monitoring:9090"))
		}
		if len(s.MetricsTargets) > 0 {
			errs = append(errs, field.Forbidden(path.Child("metricsTargets"), "give metricsTargets (scrape the proxies) or prometheusURL (ask Prometheus), not both"))
		}
	}
	return errs
}
