package gcpace

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

const (
	// DecodePercent is GOGC while a large push is decoded.
	DecodePercent = 20
	// maxPercent bounds what the floor sets when the live heap is tiny.
	maxPercent = 1000
)

// interval is how often Run reads the live heap; tests shorten it.
var interval = time.Second

// pace is the process's pacing state; mu guards it and every SetGCPercent
// this package makes, so Run and Hold never undo each other.
var pace struct {
	mu      sync.Mutex
	running bool
	base    int    // the operator's GOGC; -1 is off
	floor   uint64 // bytes; 0: none
	live    uint64 // bytes marked live by the last collection
	holds   int
}

// Percent is the GOGC to use: base raised so that the heap goal,
// live·(1+GOGC/100), reaches floor, then lowered to DecodePercent while
// holding. Off (base < 0) stays off. It is pure, for tests.
func Percent(base int, floor, live uint64, holding bool) int {
	if base < 0 {
		return base
	}
	p := base
	if floor > live && live > 0 {
		want := (floor - live) * 100 / live
		if want > maxPercent {
			want = maxPercent
		}
		if int(want) > p {
			p = int(want)
		}
	}
	if holding && p > DecodePercent {
		p = DecodePercent
	}
	return p
}

// apply sets GOGC from the state; the caller holds mu.
func apply() int {
	p := Percent(pace.base, pace.floor, pace.live, pace.holds > 0)
	debug.SetGCPercent(p)
	return p
}

// currentPercent reads GOGC (the runtime has no getter).
func currentPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// Hold collects harder until release is called (a large push being
// decoded). Holds nest; release is idempotent.
func Hold() (release func()) {
	pace.mu.Lock()
	if pace.holds == 0 && !pace.running {
		pace.base = currentPercent()
	}
	pace.holds++
	apply()
	pace.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			pace.mu.Lock()
			pace.holds--
			apply()
			pace.mu.Unlock()
		})
	}
}

// Run keeps the heap goal at or above floor bytes until ctx ends, then
// puts the operator's GOGC back. A floor of 0, or GOGC=off, makes it
// return at once. One Run at a time per process.
func Run(ctx context.Context, floor uint64, log *slog.Logger) {
	pace.mu.Lock()
	if pace.running {
		pace.mu.Unlock()
		return
	}
	if pace.holds == 0 {
		pace.base = currentPercent()
	}
	if floor == 0 || pace.base < 0 {
		pace.mu.Unlock()
		return
	}
	pace.running, pace.floor = true, floor
	pace.mu.Unlock()
	defer func() {
		pace.mu.Lock()
		pace.running, pace.floor, pace.live = false, 0, 0
		apply()
		pace.mu.Unlock()
	}()

	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	last := -2
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		metrics.Read(sample)
		pace.mu.Lock()
		if sample[0].Value.Kind() == metrics.KindUint64 {
			pace.live = sample[0].Value.Uint64()
		}
		p := apply()
		live := pace.live
		pace.mu.Unlock()
		if p != last {
			log.Debug("gcpace: GOGC set", "percent", p, "live_bytes", live, "floor_bytes", floor)
			last = p
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
