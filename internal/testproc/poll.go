package testproc

import (
	"errors"
	"testing"
	"time"
)

// PollInterval is how often Eventually asks its condition.
const PollInterval = 50 * time.Millisecond

// errNotYet stands in for a nil error given to Abort.
var errNotYet = errors.New("condition not met")

// abort marks an error that ends Poll at once.
type abort struct{ err error }

func (a abort) Error() string { return a.err.Error() }
func (a abort) Unwrap() error { return a.err }

// Abort wraps err so that Poll and Eventually stop at once and report it
// instead of asking again (e.g. the process that should answer exited).
func Abort(err error) error {
	if err == nil {
		err = errNotYet
	}
	return abort{err}
}

// Poll asks cond every interval until it returns nil, returns an error
// made by Abort, or timeout has passed since the first call, and returns
// nil or cond's last error (unwrapped from Abort). cond is always asked
// at least once, and once more after the deadline passed.
func Poll(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var a abort
		if errors.As(err, &a) {
			return a.err
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(min(interval, max(time.Until(deadline), time.Millisecond)))
	}
}

// Eventually polls cond every PollInterval for up to timeout (see Poll)
// and fails the test with cond's last error if it never returned nil.
// Make that error say what did not happen: it is the whole message.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := Poll(timeout, PollInterval, cond); err != nil {
		t.Fatal(err)
	}
}
