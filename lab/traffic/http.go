package traffic

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Handler serves the generator's figures as JSON: GET /stats?window=5s
// is the Report of the last window (default 5s).
func (g *Generator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		d, err := duration(r.URL.Query(), "window", 5*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, g.Window(d))
	})
	return mux
}

func duration(q url.Values, name string, def time.Duration) (time.Duration, error) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < Bucket || d > time.Hour {
		return 0, fmt.Errorf("%s: want a duration between 100ms and 1h", name)
	}
	return d, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// FetchReport asks a generator's Handler at addr (host:port) for the
// report of the last window.
func FetchReport(ctx context.Context, addr string, window time.Duration) (Report, error) {
	var r Report
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/stats?window="+window.String(), nil)
	if err != nil {
		return r, fmt.Errorf("traffic: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return r, fmt.Errorf("traffic: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("traffic: %s: %s", addr, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return r, fmt.Errorf("traffic: %s: %w", addr, err)
	}
	return r, nil
}
