//go:build !linux

package sched

import (
	"errors"
	"time"
)

// SetSlice is for Linux only.
func SetSlice(d time.Duration) (int, error) {
	if err := Check(d); err != nil || d == 0 {
		return 0, err
	}
	return 0, errors.New("a scheduling slice can be requested on Linux only")
}
