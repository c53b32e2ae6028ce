package phoenix

import (
	"math/rand/v2"
	"time"
)

// Reconnect policy (reference §4.1):
//   - until the first successful join: a constant 1 s between attempts, and
//     after 15 s of failing the client gives up (ErrMaxRetriesReached);
//   - after a successful join: exponential from 500 ms, ×1.5 per attempt,
//     ±50 % jitter, at most 60 s between attempts, giving up once the
//     partition has lasted MaxPartitionTime (0 = never);
//   - a successful join resets it; a Retry-After from the portal replaces
//     the computed delay for that attempt.
const (
	firstConnectInterval = time.Second
	firstConnectBudget   = 15 * time.Second
	backoffInitial       = 500 * time.Millisecond
	backoffMultiplier    = 1.5
	backoffJitter        = 0.5
	backoffMaxInterval   = 60 * time.Second
)

// backoff computes reconnect delays. It is not safe for concurrent use;
// the client's Run goroutine owns it.
type backoff struct {
	// everJoined selects the exponential policy.
	everJoined bool
	// maxElapsed is the budget (0 = unlimited).
	maxElapsed time.Duration
	// start is when the current run of failures began.
	start    time.Time
	interval time.Duration
	// jitter returns a value in [0,1); nil means math/rand/v2.
	jitter func() float64
}

// reset is called after a successful join: later failures use the
// exponential policy with a fresh budget, started at the first failure.
func (b *backoff) reset() {
	b.everJoined = true
	b.start = time.Time{}
	b.interval = 0
}

// next returns the delay before the next attempt, or ok=false when the
// budget is spent. now is the time of the failure.
func (b *backoff) next(now time.Time) (time.Duration, bool) {
	if b.start.IsZero() {
		b.start = now
	}
	elapsed := now.Sub(b.start)
	if !b.everJoined {
		if elapsed+firstConnectInterval > firstConnectBudget {
			return 0, false
		}
		return firstConnectInterval, true
	}
	if b.interval == 0 {
		b.interval = backoffInitial
	}
	r := 0.5
	if b.jitter != nil {
		r = b.jitter()
	} else {
		r = rand.Float64()
	}
	// Uniform in [interval·(1-j), interval·(1+j)], like the backoff crate.
	delta := backoffJitter * float64(b.interval)
	d := time.Duration(float64(b.interval) - delta + r*(2*delta+1))
	if next := time.Duration(float64(b.interval) * backoffMultiplier); next < backoffMaxInterval {
		b.interval = next
	} else {
		b.interval = backoffMaxInterval
	}
	if b.maxElapsed > 0 && elapsed+d > b.maxElapsed {
		return 0, false
	}
	return d, true
}
