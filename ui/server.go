package ui

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/locality"
	"github.com/meridian-mesh/meridian/policyapi"
	"github.com/meridian-mesh/meridian/registry"
)

//go:embed static
var static embed.FS

var index = template.Must(template.ParseFS(static, "static/index.html"))

// Policies is what the dashboard reads of the policy pipeline: the engine
// in force (policies and live drills' drains) and the stored objects.
// *policyapi.Server implements it.
type Policies interface {
	Engine() *locality.Engine
	List(kind, namespace string) []policyapi.Stored
}

// Config configures New.
type Config struct {
	// Registry is the global registry. Required.
	Registry *registry.Registry
	// Cluster is this control plane's cluster.
	Cluster string
	// Policies returns the policy pipeline, or nil while there is none;
	// it is asked on every request, so wiring order does not matter.
	// Without it the dashboard shows Meridian's default failover order.
	Policies func() Policies
	// Traffic supplies live request rates; nil shows none.
	Traffic *Traffic
	Logger  *slog.Logger
}

// Handler serves the dashboard under /ui/: the page, its assets, and the
// JSON it polls.
type Handler struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// New returns the dashboard's handler; mount it at "/ui/".
func New(cfg Config) (*Handler, error) {
	if cfg.Registry == nil {
		return nil, errors.New("ui: Config.Registry is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, log: cfg.Logger.With("component", "ui"), mux: http.NewServeMux()}
	assets, err := fs.Sub(static, "static")
	if err != nil {
		return nil, fmt.Errorf("ui: %w", err)
	}
	h.mux.HandleFunc("GET /ui/{$}", h.serveIndex)
	h.mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(assets)))
	h.mux.HandleFunc("GET /ui/api/mesh", h.serveMesh)
	h.mux.HandleFunc("GET /ui/api/drill", h.serveDrill)
	h.mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			apiError(w, http.StatusMethodNotAllowed, fmt.Errorf("ui: %s %s: the dashboard is read-only (GET)", r.Method, r.URL.Path))
			return
		}
		apiError(w, http.StatusNotFound, fmt.Errorf("ui: no %s %s here: the dashboard is /ui/, its API /ui/api/mesh and /ui/api/drill?kind=region|zone|cluster&name=NAME", r.Method, r.URL.Path))
	})
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// mesh builds the current picture.
func (h *Handler) mesh() Mesh {
	var e *locality.Engine
	var pols []policyapi.Stored
	var p Policies
	if h.cfg.Policies != nil {
		p = h.cfg.Policies()
	}
	if p != nil {
		e, pols = p.Engine(), p.List("", "")
	}
	m := build(h.cfg.Registry.View(), e, h.cfg.Cluster, time.Now())
	if p == nil {
		m.PoliciesNote = "the policy API is not running in this control plane: failover follows Meridian's default order"
	}
	for _, s := range pols {
		m.Policies = append(m.Policies, Policy{Kind: v1alpha1.KindOf(s.Object), Namespace: s.Object.GetNamespace(), Name: s.Object.GetName(), Source: s.Source})
	}
	if h.cfg.Traffic != nil {
		m.Edges, m.TrafficNote = h.cfg.Traffic.Edges()
	} else {
		m.TrafficNote = "live request rates are off"
	}
	return m
}

func (h *Handler) serveIndex(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := index.Execute(w, h.mesh()); err != nil {
		h.log.Debug("writing /ui/", "err", err)
	}
}

func (h *Handler) serveMesh(w http.ResponseWriter, r *http.Request) {
	if err := onlyParams(r.URL.Query()); err != nil {
		apiError(w, http.StatusBadRequest, err)
		return
	}
	h.writeJSON(w, h.mesh())
}

// serveDrill answers "what happens if this target goes down?" with the
// policy engine in force, without touching traffic.
func (h *Handler) serveDrill(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "kind", "name"); err != nil {
		apiError(w, http.StatusBadRequest, err)
		return
	}
	if !q.Has("kind") || !q.Has("name") {
		apiError(w, http.StatusBadRequest, errors.New("ui: drill: kind and name are required, e.g. ?kind=region&name=us-east-1"))
		return
	}
	t, err := locality.ParseTarget(q.Get("kind"), q.Get("name"))
	if err != nil {
		apiError(w, http.StatusBadRequest, fmt.Errorf("ui: %w", err))
		return
	}
	var e *locality.Engine
	if h.cfg.Policies != nil {
		if p := h.cfg.Policies(); p != nil {
			e = p.Engine()
		}
	}
	h.writeJSON(w, e.WhatIf(h.cfg.Registry.View(), t, nil))
}

// onlyParams refuses query parameters other than allowed, and repeated
// ones, naming them.
func onlyParams(q url.Values, allowed ...string) error {
	for name, vals := range q {
		if !slices.Contains(allowed, name) {
			want := "none"
			if len(allowed) > 0 {
				want = strings.Join(allowed, ", ")
			}
			return fmt.Errorf("ui: unknown parameter %q (this call takes %s)", name, want)
		}
		if len(vals) > 1 {
			return fmt.Errorf("ui: parameter %q given %d times", name, len(vals))
		}
	}
	return nil
}

func (h *Handler) writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		h.log.Debug("writing dashboard JSON", "err", err)
	}
}

// apiError answers with {"error": "..."} so that the page and scripts
// read the reason the same way.
func apiError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
