package gcpace

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

const mib = 1 << 20

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		name        string
		base        int
		floor, live uint64
		holding     bool
		want        int
	}{
		{"no floor", 100, 0, 4 * mib, false, 100},
		{"floor raises a small heap's goal", 100, 16 * mib, 4 * mib, false, 300},
		{"a large heap's goal is above the floor", 100, 16 * mib, 11 * mib, false, 100},
		{"live above the floor", 100, 16 * mib, 40 * mib, false, 100},
		{"operator's higher GOGC stays", 400, 16 * mib, 4 * mib, false, 400},
		{"tiny heap is capped", 100, 16 * mib, 1024, false, maxPercent},
		{"nothing marked yet", 100, 16 * mib, 0, false, 100},
		{"off stays off", -1, 16 * mib, 4 * mib, false, -1},
		{"off stays off while holding", -1, 0, 0, true, -1},
		{"holding lowers", 100, 0, 0, true, DecodePercent},
		{"holding lowers a raised GOGC", 100, 16 * mib, 4 * mib, true, DecodePercent},
		{"operator's lower GOGC stays while holding", 10, 16 * mib, 40 * mib, true, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percent(tc.base, tc.floor, tc.live, tc.holding); got != tc.want {
				t.Errorf("Percent(%d, %d, %d, %v) = %d, want %d", tc.base, tc.floor, tc.live, tc.holding, got, tc.want)
			}
		})
	}
}

// TestHold: GOGC is lowered while held and restored after; an operator's
// lower setting, or GOGC=off, is left alone; holds nest.
func TestHold(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	for _, tc := range []struct{ before, during int }{{100, DecodePercent}, {400, DecodePercent}, {10, 10}, {-1, -1}} {
		debug.SetGCPercent(tc.before)
		outer := Hold()
		inner := Hold()
		inner()
		inner() // idempotent
		if got := currentPercent(); got != tc.during {
			t.Errorf("GOGC %d: %d while held, want %d", tc.before, got, tc.during)
		}
		outer()
		if got := currentPercent(); got != tc.before {
			t.Errorf("GOGC %d: %d after, want it back", tc.before, got)
		}
	}
}

// TestRun: with a floor far above the live heap, Run raises GOGC; a hold
// lowers it while Run runs and gives the raised value back; when Run
// stops the operator's GOGC is back.
func TestRun(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	interval = 10 * time.Millisecond
	defer func() { interval = time.Second }()
	runtime.GC() // so the live heap is measured

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, 1<<40, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	waitFor(t, "GOGC raised to the cap", func() bool { return currentPercent() == maxPercent })
	release := Hold()
	if got := currentPercent(); got != DecodePercent {
		t.Errorf("held while running: GOGC %d, want %d", got, DecodePercent)
	}
	time.Sleep(5 * interval) // Run's polls must not undo the hold
	if got := currentPercent(); got != DecodePercent {
		t.Errorf("held across polls: GOGC %d, want %d", got, DecodePercent)
	}
	release()
	if got := currentPercent(); got != maxPercent {
		t.Errorf("released while running: GOGC %d, want %d", got, maxPercent)
	}
	cancel()
	<-done
	if got := currentPercent(); got != 100 {
		t.Errorf("after Run: GOGC %d, want the operator's 100", got)
	}
}

// TestRunLeavesOffAlone: with GOGC=off Run returns at once; without a
// floor it leaves GOGC as it is.
func TestRunLeavesOffAlone(t *testing.T) {
	orig := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(orig)
	interval = 10 * time.Millisecond
	defer func() { interval = time.Second }()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	Run(context.Background(), 16*mib, log) // returns: off
	if got := currentPercent(); got != -1 {
		t.Errorf("GOGC=off: %d after Run, want -1", got)
	}
	debug.SetGCPercent(150)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	Run(ctx, 0, log)
	if got := currentPercent(); got != 150 {
		t.Errorf("no floor: %d after Run, want 150", got)
	}
}

var sink [][]byte

// TestIdleCollection: after a burst of garbage, once allocation stops, Run
// collects (two forced cycles) and returns the free pages, once.
func TestIdleCollection(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	interval = 20 * time.Millisecond
	defer func() { interval = time.Second }()
	var released atomic.Int32
	release = func() { released.Add(1); debug.FreeOSMemory() }
	defer func() { release = debug.FreeOSMemory }()
	forced := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
	read := func() uint64 {
		metrics.Read(forced)
		return forced[0].Value.Uint64()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	defer func() { cancel(); <-done }()
	time.Sleep(3 * interval) // the start counts as a burst: let it pass
	before, releasedBefore := read(), released.Load()
	for range 64 { // 8 MB of garbage, in 128 KB pieces
		sink = append(sink, make([]byte, 128<<10))
	}
	sink = nil
	// Two forced cycles: the second empties the sync.Pools the first
	// moved aside; then the pages are returned.
	waitFor(t, "an idle collection", func() bool { return read() >= before+2 && released.Load() > releasedBefore })
	// Once per burst: idle on, no more collections.
	n, r := read(), released.Load()
	time.Sleep(10 * interval)
	if again := read(); again != n {
		t.Errorf("%d more forced collections while idle, want none", again-n)
	}
	if again := released.Load(); again != r {
		t.Errorf("free memory returned %d more times while idle, want none", again-r)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting: %s", what)
}
