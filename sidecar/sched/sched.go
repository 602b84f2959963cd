package sched

import (
	"fmt"
	"time"
)

// The kernel's bounds on a requested slice.
const (
	MinSlice = 100 * time.Microsecond
	MaxSlice = 100 * time.Millisecond
)

// Check refuses a slice the kernel would not take; 0 (its default) is
// fine.
func Check(d time.Duration) error {
	if d != 0 && (d < MinSlice || d > MaxSlice) {
		return fmt.Errorf("%v: want 0 or %v to %v", d, MinSlice, MaxSlice)
	}
	return nil
}
