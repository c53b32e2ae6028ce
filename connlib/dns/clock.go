package dns

import "time"

// Clock tells the time. Everything in this package that expires state takes
// one so tests can drive time without sleeping. Implementations must be safe
// for concurrent use.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

var _ Clock = systemClock{}

// SystemClock is the wall clock (time.Now, with its monotonic reading).
var SystemClock Clock = systemClock{}

func clockOrSystem(c Clock) Clock {
	if c == nil {
		return SystemClock
	}
	return c
}
