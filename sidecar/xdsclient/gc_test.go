package xdsclient

import (
	"runtime/debug"
	"testing"
)

// TestCollectHarder: GOGC is lowered for a large decode and restored
// after; an operator's lower setting, or GOGC=off, is left alone.
func TestCollectHarder(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	for _, tc := range []struct{ before, during int }{{100, decodeGCPercent}, {400, decodeGCPercent}, {10, 10}, {-1, -1}} {
		debug.SetGCPercent(tc.before)
		restore := collectHarder()
		if got := debug.SetGCPercent(tc.during); got != tc.during {
			t.Errorf("GOGC %d: %d while decoding, want %d", tc.before, got, tc.during)
		}
		restore()
		if got := debug.SetGCPercent(100); got != tc.before {
			t.Errorf("GOGC %d: %d after, want it back", tc.before, got)
		}
	}
}
