// Package lb picks an endpoint for each request or connection, the way
// Envoy does, so that meridian-proxy and Envoy behave the same under the
// same load assignment:
//
//	Endpoints (EDS) ──Balancer.Update──► hosts (kept by address: stats and ejections survive updates)
//	                                       │ health = EDS health minus outlier ejections
//	                                       ▼
//	        priority load (priority.PriorityLoad: overprovisioning 1.4, panic threshold)
//	        ─► a priority, by a uniform draw against the load
//	        ─► a locality, by weight × availability (priority.LocalityWeight, Envoy's locality-weighted LB)
//	        ─► a host: round robin (weighted), least request (power of N choices), random
//
// The priority load and locality weights are package locality/priority's
// functions, the ones package locality uses, not copies, so drills,
// meridianctl explain and the proxy agree on where traffic goes.
//
// Picking is lock-free: each health change builds an immutable picker
// (schedules for weighted round robin, cumulative loads) published through
// an atomic pointer; requests only read it and bump counters. Health
// changes are rare (an EDS update, an ejection), requests are not.
//
// Outlier detection follows Envoy's consecutive-error detectors: 5xx and
// gateway errors (502, 503, 504), with local-origin failures (connect
// errors, resets, timeouts) counted as 503 unless split. An endpoint that
// reaches a threshold is ejected at once (subject to the enforcing
// percentage and max_ejection_percent) for base_ejection_time × the
// number of times it has been ejected, capped by max_ejection_time. There
// is no timer goroutine per cluster: ejections end, and the ejection
// multiplier decays, when a pick or a report finds the interval elapsed —
// so a thousand idle clusters cost no goroutines.
//
// Retries ask for a host other than the ones already tried (Envoy's
// previous_hosts predicate) and, once every endpoint of a priority has
// been tried, count those endpoints as unhealthy for the priority load
// (previous_priorities), so that a retry after a whole zone died goes to
// the next priority at once.
package lb
