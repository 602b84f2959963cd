package traffic

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Report summarizes the calls a generator started in [From, To).
type Report struct {
	Caller  string         `json:"caller"`
	From    time.Time      `json:"from"`
	To      time.Time      `json:"to"`
	Targets []TargetReport `json:"targets"`
}

// TargetReport is one target's part of a Report.
type TargetReport struct {
	Target   string `json:"target"`
	Requests int    `json:"requests"`
	OK       int    `json:"ok"`
	// Errors counts failures by reason (gRPC code, or "overloaded").
	Errors map[string]int `json:"errors,omitempty"`
	// Served counts successes by the cluster of the first hop.
	Served map[string]int `json:"served,omitempty"`
	// Paths counts successes by the whole path (see Path).
	Paths map[string]int `json:"paths,omitempty"`
	// LastError is the message of the last failure, for the curious.
	LastError string `json:"lastError,omitempty"`
}

// Target returns the report of one target, and whether there is one.
func (r Report) Target(name string) (TargetReport, bool) {
	for _, t := range r.Targets {
		if t.Target == name {
			return t, true
		}
	}
	return TargetReport{Target: name}, false
}

// SuccessRate is OK/Requests, or 0 without requests.
func (t TargetReport) SuccessRate() float64 {
	if t.Requests == 0 {
		return 0
	}
	return float64(t.OK) / float64(t.Requests)
}

// Share is one destination's part of the successes.
type Share struct {
	Name     string  `json:"name"`
	Count    int     `json:"count"`
	Fraction float64 `json:"fraction"`
}

// Shares returns counts (Served, Paths or Errors) as shares of their sum,
// the largest first.
func Shares(counts map[string]int) []Share {
	total := 0
	for _, n := range counts {
		total += n
	}
	out := make([]Share, 0, len(counts))
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		out = append(out, Share{Name: k, Count: counts[k], Fraction: float64(counts[k]) / float64(total)})
	}
	slices.SortStableFunc(out, func(a, b Share) int { return b.Count - a.Count })
	return out
}

// Summary renders a target's report on one line: "ok 99.5% (200) │
// eks-use1 80% onprem-dc1 20% │ Unavailable 1".
func (t TargetReport) Summary() string {
	if t.Requests == 0 {
		return "no requests"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ok %5.1f%% (%d)", 100*t.SuccessRate(), t.Requests)
	if len(t.Served) > 0 {
		b.WriteString("  served by")
		for _, s := range Shares(t.Served) {
			fmt.Fprintf(&b, " %s %.0f%%", s.Name, 100*s.Fraction)
		}
	}
	if len(t.Errors) > 0 {
		b.WriteString("  failed:")
		for _, s := range Shares(t.Errors) {
			fmt.Fprintf(&b, " %s %d", s.Name, s.Count)
		}
	}
	return b.String()
}

// Settled is the time before which every call has ended: calls are filed
// under their start and last at most Timeout.
func (g *Generator) Settled() time.Time { return g.cfg.Now().Add(-g.cfg.Timeout - Bucket) }

// Window reports the settled calls of the last d.
func (g *Generator) Window(d time.Duration) Report {
	to := g.Settled()
	return g.Between(to.Add(-d), to)
}

// Between reports the calls started in [from, to), at bucket resolution.
func (g *Generator) Between(from, to time.Time) Report {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := Report{Caller: g.cfg.Caller, From: from, To: to}
	a, e := g.index(from), g.index(to)
	for _, t := range g.cfg.Targets {
		tr := TargetReport{Target: t.Name}
		h := g.history[t.Name]
		for i := max(a, g.first); i < e && i-g.first < len(h); i++ {
			s := h[i-g.first]
			tr.Requests += s.ok + s.failed
			tr.OK += s.ok
			addAll(&tr.Errors, s.errors)
			addAll(&tr.Served, s.served)
			addAll(&tr.Paths, s.paths)
			if s.lastError != "" {
				tr.LastError = s.lastError
			}
		}
		r.Targets = append(r.Targets, tr)
	}
	return r
}

func addAll(dst *map[string]int, src map[string]int) {
	if len(src) == 0 {
		return
	}
	if *dst == nil {
		*dst = map[string]int{}
	}
	for k, v := range src {
		(*dst)[k] += v
	}
}

func (g *Generator) index(t time.Time) int {
	d := t.Sub(g.origin)
	if d < 0 {
		return -1
	}
	return int(d / Bucket)
}

// Recovery is how a target came through an event (a cut, a drill).
type Recovery struct {
	// After is the time from the event until the success rate held at or
	// above the threshold in every window since. Zero when it never fell.
	After time.Duration `json:"after"`
	// Failed counts failed calls between the event and recovery.
	Failed int `json:"failed"`
	// Requests counts calls between the event and recovery.
	Requests int `json:"requests"`
	// Recovered is false when the threshold did not hold for one full
	// window before the settled end of the history.
	Recovered bool `json:"recovered"`
}

// Recovery measures target after an event at t: the earliest moment r
// such that, in every window of length w starting at r or later (up to
// the settled end), at least rate of the calls succeeded.
func (g *Generator) Recovery(target string, t time.Time, rate float64, w time.Duration) Recovery {
	end := g.index(g.Settled())
	g.mu.Lock()
	defer g.mu.Unlock()
	h := g.history[target]
	at := func(i int) *slot {
		if i < g.first || i-g.first >= len(h) {
			return &slot{}
		}
		return h[i-g.first]
	}
	a, n := g.index(t), int(w/Bucket)
	r := a
	for j := a; j+n <= end; j++ {
		ok, all := 0, 0
		for i := j; i < j+n; i++ {
			s := at(i)
			ok, all = ok+s.ok, all+s.ok+s.failed
		}
		if all > 0 && float64(ok) < rate*float64(all) {
			r = j + 1
		}
	}
	rec := Recovery{After: time.Duration(r-a) * Bucket, Recovered: r+n <= end}
	for i := a; i < r; i++ {
		s := at(i)
		rec.Failed += s.failed
		rec.Requests += s.ok + s.failed
	}
	return rec
}

// Moved measures a shift of target's traffic after since: how long until
// every call succeeded by a path match accepts (see Path), and kept doing
// so until the settled end of the history. It is false when that never
// held, or held only for the last bucket.
func (g *Generator) Moved(target string, since time.Time, match func(path string) bool) (time.Duration, bool) {
	end := g.index(g.Settled())
	g.mu.Lock()
	defer g.mu.Unlock()
	h := g.history[target]
	a := g.index(since)
	r, matched := a, false
	for i := max(a, g.first); i < end && i-g.first < len(h); i++ {
		s := h[i-g.first]
		if s.failed > 0 {
			r, matched = i+1, false
			continue
		}
		for p := range s.paths {
			if !match(p) {
				r, matched = i+1, false
				break
			}
			matched = true
		}
	}
	return time.Duration(r-a) * Bucket, matched && r < end-1
}
