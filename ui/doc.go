// Package ui is the mesh dashboard meridiand serves at /ui/: clusters
// grouped by region with their federation state, live request and error
// rates on the edges between them, services with their localities and
// the failover state each cluster's clients are in, residency boundaries,
// drill what-ifs, live drills, and the policy list.
//
//	registry view ─┐
//	policy engine ─┼─ build (pure) ──► Mesh ──► /ui/api/mesh (JSON) ──► ui.js renders, polls every 2s
//	Traffic ───────┘                         └► /ui/ (html/template: the page with the first Mesh inlined)
//	  ▲ scrapes meridian-proxy /metrics (meridian_requests_total, reporter="source")
//
// One renderer: the page is a shell with the current Mesh inlined as JSON,
// and ui.js draws it and every update, so the first paint and later ones
// cannot disagree. Everything is embedded (go:embed): no CDN, no npm build,
// it works offline. The failover state is the Envoy model the proxies use
// (locality.Assignment.Distribution, overprovisioning 1.4) for a client in
// each cluster's region; the drill what-if is the policy engine's WhatIf.
//
// Bad input to the API (unknown or repeated parameters, a bad drill
// target) is answered 400 with {"error": "..."} naming it.
//
// Why scrape the proxies rather than query Prometheus: the lab runs without
// Prometheus, and the dashboard must show traffic there. Where Prometheus
// runs, the Grafana dashboard in deploy/observability shows the same
// series with history.
//
// It must not decide anything: it reads the registry, the engine the xDS
// server pushes from, and the proxies' counters.
package ui
