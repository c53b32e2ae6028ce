package devportal

import "time"

// Clock is the portal's time source: the authorization timeout (15 s) and
// authorization expiry run on it, so tests can step time. Implementations
// must be safe for concurrent use; AfterFunc runs f on its own goroutine.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) Stopper
}

// Stopper cancels an AfterFunc; Stop reports whether it prevented the call.
type Stopper interface{ Stop() bool }

// SystemClock is the real clock.
type SystemClock struct{}

var _ Clock = SystemClock{}

func (SystemClock) Now() time.Time { return time.Now() }

func (SystemClock) AfterFunc(d time.Duration, f func()) Stopper { return time.AfterFunc(d, f) }
