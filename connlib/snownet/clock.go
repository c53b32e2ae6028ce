package snownet

import "time"

// Clock is the time source of the connection lifecycle, injected so the
// timers can be tested without sleeping.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
