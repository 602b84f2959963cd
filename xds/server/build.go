package server

import (
	"runtime"
	"sync"

	"github.com/meridian-mesh/meridian/registry"
	"github.com/meridian-mesh/meridian/xds/translate"
)

// The builder computes plans on Run's goroutine (and workers it waits
// for), reading groups without the lock: only Run writes them.

// planFull rebuilds every resource of a group.
func (s *Server) planFull(in translate.Input, g *group) *plan {
	if g.scope.Type == translate.SecretType {
		return s.planSecrets(in, g)
	}
	p := &plan{g: g, full: true, byService: map[registry.ServiceKey][]string{}}
	seen := map[string]bool{}
	if g.scope.Type == translate.EndpointType {
		for _, k := range in.View.ServiceKeys() {
			names := s.planResources(p, translate.LoadAssignments(in, g.scope, k), seen)
			if len(names) > 0 {
				p.byService[k] = names
			}
		}
	} else {
		s.planResources(p, translate.Build(in, g.scope), seen)
	}
	for name := range g.res {
		if !seen[name] {
			p.changes = append(p.changes, change{name: name})
		}
	}
	return p
}

// planServices rebuilds the load assignments of some services.
func (s *Server) planServices(in translate.Input, g *group, keys map[registry.ServiceKey]struct{}) *plan {
	p := &plan{g: g, byService: map[registry.ServiceKey][]string{}}
	for k := range keys {
		seen := map[string]bool{}
		p.byService[k] = s.planResources(p, translate.LoadAssignments(in, g.scope, k), seen)
		for _, name := range g.byService[k] {
			if !seen[name] {
				p.changes = append(p.changes, change{name: name})
			}
		}
	}
	return p
}

// planResources adds the changed resources of a result to the plan and
// returns the names it produced. A resource that fails validation keeps
// its previous version: proxies never get it, so they never NACK it.
func (s *Server) planResources(p *plan, res translate.Result, seen map[string]bool) []string {
	s.warn(res.Warnings)
	names := make([]string, 0, len(res.Resources))
	for _, r := range res.Resources {
		old := p.g.res[r.Name]
		e, err := newEntry(p.g.scope.Type, r)
		if err != nil {
			s.metrics.invalid.WithLabelValues(typeLabel(p.g.scope.Type)).Inc()
			s.warn([]string{err.Error() + " (keeping the previous version)"})
			if old != nil {
				seen[r.Name] = true
				names = append(names, r.Name)
			}
			continue
		}
		seen[r.Name] = true
		names = append(names, r.Name)
		if old == nil || old.version != e.version {
			p.changes = append(p.changes, change{name: r.Name, e: e})
		}
	}
	return names
}

// parallel runs fn for every item on up to GOMAXPROCS workers and waits.
func parallel[T any](items []T, fn func(T)) {
	n := min(runtime.GOMAXPROCS(0), len(items))
	if n <= 1 {
		for _, it := range items {
			fn(it)
		}
		return
	}
	ch := make(chan T)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				fn(it)
			}
		}()
	}
	for _, it := range items {
		ch <- it
	}
	close(ch)
	wg.Wait()
}

// warn logs each distinct translation warning once; the set is bounded so
// that a flood of distinct warnings cannot grow memory without end.
func (s *Server) warn(ws []string) {
	if len(ws) == 0 {
		return
	}
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	for _, w := range ws {
		if _, ok := s.warned[w]; ok {
			continue
		}
		if len(s.warned) >= 10_000 {
			clear(s.warned)
		}
		s.warned[w] = struct{}{}
		s.log.Warn("xds: translation", "warning", w)
	}
}
