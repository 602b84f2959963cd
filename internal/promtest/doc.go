// Package promtest runs a real Prometheus (Debian's, installed by
// scripts/apt.sh when missing) for tests: it scrapes the targets a test
// gives every 500ms and answers queries, so that dashboards' PromQL and
// Prometheus-backed code are checked against the real thing. For tests
// only.
package promtest
