package daemon

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readyTimeout bounds each readiness check.
const readyTimeout = 2 * time.Second

func (d *Daemon) registerAdmin() {
	d.Admin.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	d.Admin.HandleFunc("GET /readyz", d.serveReadyz)
	d.Admin.Handle("GET /metrics", promhttp.HandlerFor(d.Metrics, promhttp.HandlerOpts{Registry: d.Metrics}))
	d.Admin.HandleFunc("GET /debug/registry", d.serveRegistry)
	d.Admin.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "meridiand admin\n\n"+
			"/healthz          the process is up\n"+
			"/readyz           every component is ready (?verbose lists the checks)\n"+
			"/metrics          Prometheus metrics\n"+
			"/debug/registry   the global registry as JSON (?service=NAME.NAMESPACE, ?namespace=, ?cluster=, ?endpoints=false)\n"+
			"/ui/              the mesh dashboard\n")
	})
}

// serveReadyz answers as the Kubernetes API server's /readyz does: 200 "ok"
// when every check passes, else 503 listing each check as [+] or [-];
// ?verbose lists them on success too.
func (d *Daemon) serveReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	var b strings.Builder
	failed := false
	for _, c := range d.checks {
		if err := c.check(ctx); err != nil {
			failed = true
			fmt.Fprintf(&b, "[-]%s failed: %v\n", c.name, err)
		} else {
			fmt.Fprintf(&b, "[+]%s ok\n", c.name)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	switch {
	case failed:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, b.String()+"readyz check failed\n")
	case r.URL.Query().Has("verbose"):
		fmt.Fprint(w, b.String()+"readyz check passed\n")
	default:
		fmt.Fprintln(w, "ok")
	}
}
