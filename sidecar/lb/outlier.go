package lb

import (
	"math/rand/v2"
	"time"
)

// Outcome is what one request (or connection attempt) to a host ended in.
type Outcome uint8

// Outcomes, as Envoy's outlier detection sees them.
const (
	// Success is any response below 500.
	Success Outcome = iota
	// Error5xx is a 5xx response other than 502, 503, 504.
	Error5xx
	// ErrorGateway is a 502, 503 or 504 response.
	ErrorGateway
	// ErrorLocal is a connect failure, reset or timeout: the proxy's own
	// view, with no response.
	ErrorLocal
)

// OutcomeOf classifies an HTTP status.
func OutcomeOf(status int) Outcome {
	switch {
	case status == 502 || status == 503 || status == 504:
		return ErrorGateway
	case status >= 500:
		return Error5xx
	}
	return Success
}

// Report feeds a request's outcome to outlier detection.
func (b *Balancer) Report(h *Host, o Outcome) {
	od := b.p.Load().outlier
	if od == nil || h == nil {
		return
	}
	if o == ErrorLocal {
		if od.SplitLocalOrigin {
			if n := h.consLocal.Add(1); n == od.ConsecutiveLocalOrigin {
				b.maybeEject(h, od.EnforcingLocalOrigin, "consecutive local-origin failures")
			}
			return
		}
		o = ErrorGateway // Envoy counts it as a 503
	}
	switch o {
	case Success:
		// Stores only when needed: a hot path of successes should not
		// write shared cache lines.
		if h.cons5xx.Load() != 0 {
			h.cons5xx.Store(0)
		}
		if h.consGateway.Load() != 0 {
			h.consGateway.Store(0)
		}
		if h.consLocal.Load() != 0 {
			h.consLocal.Store(0)
		}
	case Error5xx:
		h.consGateway.Store(0)
		if n := h.cons5xx.Add(1); n == od.Consecutive5xx {
			b.maybeEject(h, od.Enforcing5xx, "consecutive 5xx")
		}
	case ErrorGateway:
		n5 := h.cons5xx.Add(1)
		ng := h.consGateway.Add(1)
		switch {
		case ng == od.ConsecutiveGateway && od.EnforcingGateway > 0:
			b.maybeEject(h, od.EnforcingGateway, "consecutive gateway errors")
		case n5 == od.Consecutive5xx:
			b.maybeEject(h, od.Enforcing5xx, "consecutive 5xx")
		}
	}
}

// maybeEject ejects a host that reached a threshold, if the enforcing
// percentage draws it and max_ejection_percent allows it.
func (b *Balancer) maybeEject(h *Host, enforcing uint32, reason string) {
	if enforcing == 0 || rand.Uint32N(100) >= enforcing {
		return
	}
	b.mu.Lock()
	od := b.cfg.Outlier
	if od == nil || h.ejected.Load() || !b.member(h) {
		b.mu.Unlock()
		return
	}
	ejected := 0
	for _, x := range b.hosts {
		if x.ejected.Load() {
			ejected++
		}
	}
	// Envoy's rule: no ejection once the ejected share reaches the
	// maximum; with none ejected one always may be (always_eject_one, or
	// any non-zero maximum).
	if (ejected == 0 && !od.AlwaysEjectOne && od.MaxEjectionPercent == 0) ||
		(ejected > 0 && uint32(ejected*100/len(b.hosts)) >= od.MaxEjectionPercent) {
		b.mu.Unlock()
		return
	}
	now := b.cfg.Now()
	h.ejected.Store(true)
	h.ejectedAt = now
	h.numEjections++
	h.cons5xx.Store(0)
	h.consGateway.Store(0)
	h.consLocal.Store(0)
	if b.lastSweep.IsZero() {
		b.lastSweep = now
	}
	b.scheduleSweep(now)
	b.rebuild()
	onEject := b.cfg.OnEject
	b.mu.Unlock()
	if onEject != nil {
		onEject(h, true, reason)
	}
}

// member reports whether h is one of the current hosts. Callers hold b.mu.
func (b *Balancer) member(h *Host) bool {
	for _, x := range b.hosts {
		if x == h {
			return true
		}
	}
	return false
}

// ejectionTime is how long a host stays out after its n-th ejection.
func ejectionTime(base, maxTime time.Duration, n uint32) time.Duration {
	return min(base*time.Duration(n), max(base, maxTime))
}

// scheduleSweep sets when outlier state next needs attention: the next
// interval boundary, or the earliest end of an ejection if sooner.
// Callers hold b.mu.
func (b *Balancer) scheduleSweep(now time.Time) {
	od := b.cfg.Outlier
	next := time.Time{}
	pending := false
	for _, h := range b.hosts {
		if h.ejected.Load() {
			end := h.ejectedAt.Add(ejectionTime(od.BaseEjection, od.MaxEjection, h.numEjections))
			if !pending || end.Before(next) {
				next = end
			}
			pending = true
		} else if h.numEjections > 0 {
			pending = true
		}
	}
	if !pending {
		b.nextCheck.Store(0)
		return
	}
	if tick := b.lastSweep.Add(od.Interval); next.IsZero() || tick.Before(next) {
		next = tick
	}
	if !next.After(now) {
		next = now.Add(time.Millisecond)
	}
	b.nextCheck.Store(next.UnixNano())
}

// maybeSweep ends ejections that are over and decays ejection counts,
// when due. It runs on whichever request finds it due; the others go on.
func (b *Balancer) maybeSweep() {
	due := b.nextCheck.Load()
	if due == 0 {
		return
	}
	now := b.p.Load().now()
	if now.UnixNano() < due || !b.mu.TryLock() {
		return
	}
	od := b.cfg.Outlier
	if od == nil {
		b.nextCheck.Store(0)
		b.mu.Unlock()
		return
	}
	interval := now.Sub(b.lastSweep) >= od.Interval
	if interval {
		b.lastSweep = now
	}
	var ended []*Host
	for _, h := range b.hosts {
		switch {
		case h.ejected.Load():
			if !now.Before(h.ejectedAt.Add(ejectionTime(od.BaseEjection, od.MaxEjection, h.numEjections))) {
				h.ejected.Store(false)
				ended = append(ended, h)
			}
		case interval && h.numEjections > 0:
			h.numEjections--
		}
	}
	if len(ended) > 0 {
		b.rebuild()
	}
	b.scheduleSweep(now)
	onEject := b.cfg.OnEject
	b.mu.Unlock()
	if onEject != nil {
		for _, h := range ended {
			onEject(h, false, "ejection time over")
		}
	}
}
