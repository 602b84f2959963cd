package lab

import (
	"context"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meridian-mesh/meridian/lab/traffic"
)

func fetchUsers(ctx context.Context, addr string, window time.Duration) (traffic.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return traffic.FetchReport(ctx, addr, window)
}

// Traffic is what one cluster's users saw in the last window.
type Traffic struct {
	Cluster string `json:"cluster"`
	// Error is set when the generator could not be asked (its cluster is
	// cut, or it stopped).
	Error   string                 `json:"error,omitempty"`
	Targets []traffic.TargetReport `json:"targets,omitempty"`
}

// Traffic asks every cluster's traffic generator for the last window.
func (s *State) Traffic(ctx context.Context, window time.Duration) []Traffic {
	out := make([]Traffic, len(s.Clusters))
	done := make(chan struct{}, len(s.Clusters))
	for i, c := range s.Clusters {
		go func() {
			defer func() { done <- struct{}{} }()
			out[i].Cluster = c.Name
			r, err := fetchUsers(ctx, c.Users, window)
			if err != nil {
				out[i].Error = "no answer from its traffic generator"
				return
			}
			out[i].Targets = r.Targets
		}()
	}
	for range s.Clusters {
		<-done
	}
	return out
}

// row is one line of the traffic table: one cluster's users calling one
// target.
type row struct {
	key, users, target, ok, served, failures string
	// fingerprint sums the row up coarsely — shares to 10 points, success
	// to 1 point — so that the watcher prints when something moved, not
	// on every jitter.
	fingerprint string
}

func rows(ts []Traffic) []row {
	var out []row
	for _, t := range ts {
		if t.Error != "" {
			out = append(out, row{key: t.Cluster, users: t.Cluster, target: "-", ok: "-", served: t.Error, fingerprint: t.Error})
			continue
		}
		for _, tr := range t.Targets {
			fp := fmt.Sprintf("%d", int(math.Floor(100*tr.SuccessRate())))
			for _, s := range traffic.Shares(tr.Served) {
				fp += fmt.Sprintf(",%s:%d", s.Name, int(math.Round(10*s.Fraction)))
			}
			served := shareList(traffic.Shares(tr.Served))
			if tr.Requests == 0 {
				served = "no call ended in the window (is the machine busy?)"
			}
			out = append(out, row{key: t.Cluster + "/" + tr.Target, users: t.Cluster, target: tr.Target, ok: okRate(tr),
				served: served, failures: shareCounts(traffic.Shares(tr.Errors)), fingerprint: fp})
		}
	}
	return out
}

func writeRows(w io.Writer, rs []row) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USERS IN\tCALLING\tOK\tSERVED BY\tFAILURES")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.users, r.target, r.ok, r.served, r.failures)
	}
	tw.Flush()
}

// WriteTraffic prints traffic as a table: one line per cluster's users
// and target, with the success rate and where answers came from.
func WriteTraffic(w io.Writer, ts []Traffic) { writeRows(w, rows(ts)) }

func okRate(tr traffic.TargetReport) string {
	if tr.Requests == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*tr.SuccessRate())
}

func shareList(ss []traffic.Share) string {
	if len(ss) == 0 {
		return "-"
	}
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = fmt.Sprintf("%s %.0f%%", s.Name, 100*s.Fraction)
	}
	return strings.Join(parts, ", ")
}

func shareCounts(ss []traffic.Share) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = fmt.Sprintf("%s %d", s.Name, s.Count)
	}
	return strings.Join(parts, ", ")
}

// Watch prints the lab's traffic until ctx ends: every interval, the rows
// whose destinations or success rate moved, and the whole table at least
// every 30s; and once about any process that exited on its own.
func (l *Lab) Watch(ctx context.Context, w io.Writer, interval, window time.Duration) {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	last, lastAll := map[string]string{}, time.Time{}
	reported := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		for name, p := range l.procs {
			if p.exited() && !reported[name] {
				reported[name] = true
				fmt.Fprintf(w, "%s  %s exited on its own (%v); see %s\n", time.Now().Format(time.TimeOnly), name, p.err, l.logFile(name))
			}
		}
		l.mu.Unlock()
		if l.opts.Rate < 0 {
			continue
		}
		rs := rows(l.State.Traffic(ctx, window))
		if ctx.Err() != nil {
			return
		}
		// Every 30s the whole table; in between, the rows that moved.
		all := time.Since(lastAll) >= 30*time.Second
		var show []row
		for _, r := range rs {
			// A cluster's users switch between one error row and a row
			// per target: forget the other kind, so that it prints again.
			if r.target == "-" {
				for k := range last {
					if strings.HasPrefix(k, r.users+"/") {
						delete(last, k)
					}
				}
			} else {
				delete(last, r.users)
			}
			if all || last[r.key] != r.fingerprint {
				show = append(show, r)
			}
			last[r.key] = r.fingerprint
		}
		if len(show) == 0 {
			continue
		}
		if all {
			lastAll = time.Now()
		}
		fmt.Fprintf(w, "\n%s  traffic, last %v:\n", time.Now().Format(time.TimeOnly), window)
		writeRows(w, show)
	}
}
