//go:build !linux

package sched

import (
	"errors"
	"time"
)

const (
	MinSlice = 100 * time.Microsecond
	MaxSlice = 100 * time.Millisecond
)

// SetSlice is for Linux only.
func SetSlice(d time.Duration) (int, error) {
	if d == 0 {
		return 0, nil
	}
	return 0, errors.New("a scheduling slice can be requested on Linux only")
}
