package policy

import (
	"fmt"
	"sync"
	"time"
)

// Timestamp is a hybrid-logical-clock value: milliseconds of wall time in
// the high 48 bits, a logical counter in the low 16. It orders events like a
// Lamport clock (a write that saw another is stamped after it) while staying
// close to wall time, so "last writer wins" means what people expect. Being
// one integer, it compares with < and travels as a uint64.
type Timestamp uint64

const logicalBits = 16

// MakeTimestamp builds a timestamp from wall time and a logical counter.
func MakeTimestamp(wall time.Time, logical uint16) Timestamp {
	return Timestamp(uint64(wall.UnixMilli())<<logicalBits | uint64(logical))
}

// Wall returns the wall-clock part.
func (t Timestamp) Wall() time.Time { return time.UnixMilli(int64(t >> logicalBits)).UTC() }

// Logical returns the logical counter.
func (t Timestamp) Logical() uint16 { return uint16(t) }

func (t Timestamp) String() string {
	if t == 0 {
		return "0"
	}
	return fmt.Sprintf("%s+%d", t.Wall().Format("2006-01-02T15:04:05.000Z"), t.Logical())
}

// Clock is a hybrid logical clock. It is safe for concurrent use.
type Clock struct {
	now  func() time.Time
	mu   sync.Mutex
	last Timestamp
}

// NewClock returns a clock reading wall time from now (time.Now if nil).
func NewClock(now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now}
}

// Now returns a timestamp greater than every timestamp the clock returned
// or observed before.
func (c *Clock) Now() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	pt := MakeTimestamp(c.now(), 0)
	if pt > c.last {
		c.last = pt
	} else {
		// Same millisecond, or the wall clock went back: count on. The
		// counter carries into the wall part after 65,535 events in one
		// millisecond, which keeps the order total.
		c.last++
	}
	return c.last
}

// Observe moves the clock past a timestamp received from elsewhere, so that
// local writes after it are stamped later.
func (c *Clock) Observe(t Timestamp) {
	c.mu.Lock()
	if t > c.last {
		c.last = t
	}
	c.mu.Unlock()
}
