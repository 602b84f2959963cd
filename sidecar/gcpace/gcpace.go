package gcpace

import (
	"context"
	"log/slog"
	"runtime"
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

// release returns the free heap to the system after an idle collection;
// tests count its calls (how many pages stay free after it is the
// runtime's affair: it returns freed large spans itself, and keeps some
// in per-processor caches).
var release = debug.FreeOSMemory

// pace is the process's pacing state; mu guards it and every SetGCPercent
// this package makes, so Run and Hold never undo each other.
var pace struct {
	mu      sync.Mutex
	running bool
	base    int    // the operator's GOGC; -1 is off
	floor   uint64 // bytes; 0: none
	live    uint64 // bytes marked live by the last collection
	holds   int
	set     int // what this package last gave SetGCPercent (valid if setOK)
	setOK   bool
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

// apply sets GOGC from the state, when it changes; the caller holds mu.
// It reports the percent and whether it changed.
func apply() (int, bool) {
	p := Percent(pace.base, pace.floor, pace.live, pace.holds > 0)
	if pace.setOK && pace.set == p {
		return p, false
	}
	debug.SetGCPercent(p)
	pace.set, pace.setOK = p, true
	return p, true
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
		pace.setOK = false // GOGC may have been set outside this package
	}
	pace.holds++
	apply()
	pace.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			pace.mu.Lock()
			pace.holds--
			if pace.running {
				// The live heap has grown while held: the floor's percent
				// is for the heap as it is now, not as at the last poll.
				var m gcMetrics
				m.read()
				pace.live = m.live
			}
			apply()
			pace.mu.Unlock()
		})
	}
}

// After a burst of allocation (idleGarbage since the last idle
// collection), once allocation nearly stops (less than idleAllocs in an
// interval), Run collects once and returns the free pages to the system:
// an idle proxy otherwise keeps what its last burst (a push, a wave of
// requests) left until its heap goal is reached again, which idle it
// never is.
const (
	idleAllocs  = 256 << 10
	idleGarbage = 1 << 20
)

// Run paces the collector until ctx ends, then puts the operator's GOGC
// back: it keeps the heap goal at or above floor bytes (0: GOGC alone),
// and collects once when the proxy goes idle after a burst. With GOGC=off
// it returns at once, and so does a second Run while one runs (several
// proxies in one process, as in tests): the first paces the process.
func Run(ctx context.Context, floor uint64, log *slog.Logger) {
	pace.mu.Lock()
	if pace.running {
		pace.mu.Unlock()
		return
	}
	if pace.holds == 0 {
		pace.base = currentPercent()
		pace.setOK = false
	}
	if pace.base < 0 {
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

	var m gcMetrics
	m.read()
	prevAllocs, allocsAtReturn := m.allocs, uint64(0)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.read()
		idle := m.allocs-prevAllocs < idleAllocs
		burst := m.allocs-allocsAtReturn >= idleGarbage
		if idle && burst {
			// Two collections: what sync.Pools hold (encoding buffers of an
			// admin dump, say) is only dropped by the second.
			runtime.GC()
			release()
			m.read()
			allocsAtReturn = m.allocs
			log.Debug("gcpace: idle: collected and returned free memory", "live_bytes", m.live)
		}
		prevAllocs = m.allocs
		pace.mu.Lock()
		pace.live = m.live
		p, changed := apply()
		pace.mu.Unlock()
		if changed {
			log.Debug("gcpace: GOGC set", "percent", p, "live_bytes", m.live, "floor_bytes", floor)
		}
	}
}

// gcMetrics are what Run reads of the runtime.
type gcMetrics struct {
	samples [2]metrics.Sample
	live    uint64 // marked live by the last collection
	allocs  uint64 // allocated since the start
}

func (m *gcMetrics) read() {
	if m.samples[0].Name == "" {
		m.samples[0].Name, m.samples[1].Name = "/gc/heap/live:bytes", "/gc/heap/allocs:bytes"
	}
	metrics.Read(m.samples[:])
	v := func(i int) uint64 {
		if m.samples[i].Value.Kind() == metrics.KindUint64 {
			return m.samples[i].Value.Uint64()
		}
		return 0
	}
	m.live, m.allocs = v(0), v(1)
}
